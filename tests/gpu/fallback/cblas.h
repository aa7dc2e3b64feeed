/* cblas.h (fallback): the one CBLAS routine the CPU kernels use, for bench/gpu_check.sh's minimal
 * build on a GPU machine without OpenBLAS headers. Used only when <cblas.h> is missing there. */
#ifndef CG_FALLBACK_CBLAS_H
#define CG_FALLBACK_CBLAS_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);

#endif
