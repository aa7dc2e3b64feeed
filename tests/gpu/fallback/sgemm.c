/* sgemm.c (fallback): a plain OpenMP cblas_sgemm for bench/gpu_check.sh's minimal build on a GPU
 * machine without a BLAS library: the CPU oracle of the GPU tests needs it to be right (row and
 * column major, both transposes, alpha and beta) and tolerably fast. op(A) and op(B)ᵀ are packed
 * into contiguous rows, so each output is one vectorised dot product. Linked only when no CBLAS
 * links there. */
#include "cblas.h"

#include <stdlib.h>

/* element (i, j) of op(X) for a matrix stored with leading dimension ld in `order` */
static inline float at(const float *X, int ld, int trans, int colmajor, int i, int j) {
    if (trans) {
        int t = i;
        i = j;
        j = t;
    }
    return colmajor ? X[(long)j * ld + i] : X[(long)i * ld + j];
}

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
    int cm = order == CblasColMajor, tA = ta == CblasTrans, tB = tb == CblasTrans;
    float *Ap = malloc(sizeof(float) * ((size_t)M * K + 1)), *Bt = malloc(sizeof(float) * ((size_t)N * K + 1));
    if (!Ap || !Bt) abort();
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) Ap[(long)i * K + k] = at(A, lda, tA, cm, i, k);
#pragma omp parallel for schedule(static)
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++) Bt[(long)j * K + k] = at(B, ldb, tB, cm, k, j);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const float *a = Ap + (long)i * K, *b = Bt + (long)j * K;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < K; k++) s += a[k] * b[k];
            float *c = cm ? &C[(long)j * ldc + i] : &C[(long)i * ldc + j];
            *c = alpha * s + (beta == 0.0f ? 0.0f : beta * *c);
        }
    free(Ap);
    free(Bt);
}

void openblas_set_num_threads(int num_threads) { (void)num_threads; }
