/* device_stub.c: the CUDA interface when the build has no CUDA: there is never a GPU. */
#include "kernels/gpu.h"

int cg_gpu_built(void) { return 0; }
int cg_gpu_count(void) { return 0; }
void cg_gpu_describe(cg_buf *out) { cg_buf_adds(out, "no GPU (built without CUDA)\n"); }
