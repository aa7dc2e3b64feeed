/* stubs.c: kernels/gpu.h for the SIMT build (gpu_simt_ops): one "device", the emulation. */
#include "kernels/gpu.h"

int cg_gpu_built(void) { return 1; }
int cg_gpu_count(void) { return 1; }
void cg_gpu_describe(cg_buf *out) { cg_buf_adds(out, "0: SIMT emulation on the CPU\n"); }
