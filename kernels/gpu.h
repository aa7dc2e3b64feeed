/* gpu.h: what the rest of cgvlm may ask of the CUDA part. Implemented by kernels/gpu_loader.c, which
 * loads the CUDA plugin libcgvlm_cuda.so (kernels/cuda/plugin.h; built when nvcc is found) on the
 * first call of cg_gpu_count or cg_gpu_describe and answers "no GPU" when there is none. */
#ifndef CG_GPU_H
#define CG_GPU_H

#include "util/util.h"

/* 1 when this binary was built with CUDA (whether or not the plugin loads; loads nothing). */
int cg_gpu_built(void);
/* Number of usable CUDA devices (0 when none, when the driver is missing, or when the plugin does
 * not load). */
int cg_gpu_count(void);
/* Appends one line per device ("0: NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, driver 13.0") or a
 * line saying why there is none ("no GPU (cannot load libcgvlm_cuda.so: ...)"). */
void cg_gpu_describe(cg_buf *out);

#endif
