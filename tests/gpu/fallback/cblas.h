/* cblas.h (fallback): the CBLAS routine (and the OpenBLAS call) the CPU kernels use, for bench/gpu_check.sh's minimal
 * build on a GPU machine without OpenBLAS headers. Used only when <cblas.h> is missing there. */
#ifndef CG_FALLBACK_CBLAS_H
#define CG_FALLBACK_CBLAS_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
/* OpenBLAS's thread count (kernels/cpu/dense.c sets 1): a no-op here, this sgemm uses OpenMP */
void openblas_set_num_threads(int num_threads);

#endif
