/* gpu.h: what the rest of cgvlm may ask of the CUDA part. Built from the .cu files in kernels/cuda when nvcc
 * is found, otherwise from the _stub.c files there, which answer "no GPU". */
#ifndef CG_GPU_H
#define CG_GPU_H

#include "util/util.h"

/* 1 when this binary was built with CUDA. */
int cg_gpu_built(void);
/* Number of usable CUDA devices (0 when none, or when the driver is missing). */
int cg_gpu_count(void);
/* Appends one line per device ("0: NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, driver 13.0") or a
 * line saying why there is none. */
void cg_gpu_describe(cg_buf *out);

#endif
