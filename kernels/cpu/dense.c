/* dense.c: CPU kernels for the dense layers (matmul via OpenBLAS sgemm, layernorm, GELU,
 * residual, encoder, patchify). See kernels/kernels.h for the conventions. */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu_internal.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

void blas_single_thread(void) {
    static int done;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

/* rows [lo, hi) of C = op(A)·op(B) + beta·C (+ bias on every row when bias != NULL) */
static void gemm_rows(int trans_a, int trans_b, long lo, long hi, int N, int K, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc,
                      const float *bias) {
    if (hi <= lo) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)(hi - lo), N, K, 1.0f,
                trans_a ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc, ldc);
    if (bias)
        for (long r = lo; r < hi; r++) { /* while the rows are still in cache */
            float *c = C + r * ldc;
            for (int j = 0; j < N; j++) c[j] += bias[j];
        }
}

/* The rows of one chunk of a split matrix product: a function of M alone, never of the thread
 * count. OpenBLAS's result for a row depends on the other rows of the same sgemm call (which
 * micro-kernel, full or edge tile, computes it, and more: one call per thread over an aligned range
 * of whole chunks still differed), so the rows are cut into the same calls at any thread count
 * and the threads share out whole chunks: the same bits for 1 or 16 threads (tests/train/
 * test_threads.c). Each call packs the whole other operand again, so chunks are as large as the
 * split allows: M/4 rows (4 chunks, an even share for 1, 2 or 4 threads) rounded up to 32, at least
 * 64 and at most 256 rows. Fixed 32- or 64-row chunks cost a tiny step 5-13 % at 1 thread; these
 * cost no measurable time (docs/PERFORMANCE.md). */
static long gemm_chunk_rows(long M) {
    long c = ((M + 3) / 4 + 31) / 32 * 32;
    return c < 64 ? 64 : c > 256 ? 256 : c;
}

/* C = op(A)·op(B) + beta·C (+ bias), row chunks of gemm_chunk_rows(M) shared out over the threads */
static void gemm_chunked(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc,
                         const float *bias) {
    blas_single_thread();
    long ch = gemm_chunk_rows(M), nch = (M + ch - 1) / ch;
#pragma omp parallel if (nch > 1 && CG_PAR((long)M * N * K / 64))
    {
        long c0, c1;
        thread_range(nch, &c0, &c1);
        for (long c = c0; c < c1; c++) {
            long lo = c * ch, hi = lo + ch < M ? lo + ch : M;
            gemm_rows(trans_a, trans_b, lo, hi, N, K, A, lda, B, ldb, beta, C, ldc, bias);
        }
    }
}

void gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B,
          int ldb, float beta, float *C, int ldc) {
    gemm_chunked(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, NULL);
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC) {
    gemm_chunked(0, 1, N, OC, C, inp, C, weight, C, 0.0f, out, OC, bias);
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int C, int OC) {
    if (dinp) gemm(0, 0, N, C, OC, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) gemm(1, 0, OC, C, N, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) {
        /* each thread owns a range of output channels and sums over rows in order */
#pragma omp parallel if (CG_PAR((long)N * OC))
        {
            long lo, hi;
            thread_range(OC, &lo, &hi);
            for (int n = 0; n < N; n++) {
                const float *d = dout + (long)n * OC;
                for (long j = lo; j < hi; j++) dbias[j] += d[j];
            }
        }
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float m = 0.0f;
#pragma omp simd reduction(+ : m)
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + 1e-5f);
        float *o = out + (long)n * C;
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int N, int C) {
    if (dinp) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * C))
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *d = dout + (long)n * C;
            float m = mean[n], s = rstd[n];
            float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
            for (int i = 0; i < C; i++) {
                float norm = (x[i] - m) * s, dnorm = weight[i] * d[i];
                dnorm_mean += dnorm;
                dnorm_norm_mean += dnorm * norm;
            }
            dnorm_mean /= C;
            dnorm_norm_mean /= C;
            float *di = dinp + (long)n * C;
            for (int i = 0; i < C; i++) {
                float norm = (x[i] - m) * s, dnorm = weight[i] * d[i];
                di[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel if (CG_PAR((long)N * C))
        {
            long lo, hi;
            thread_range(C, &lo, &hi);
            for (int n = 0; n < N; n++) {
                const float *x = inp + (long)n * C, *d = dout + (long)n * C;
                float m = mean[n], s = rstd[n];
                for (long i = lo; i < hi; i++) {
                    if (dweight) dweight[i] += (x[i] - m) * s * d[i];
                    if (dbias) dbias[i] += d[i];
                }
            }
        }
    }
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

SIMD_CLONES static void gelu_forward_range(float *out, const float *inp, long lo, long hi) {
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

SIMD_CLONES static void gelu_backward_range(float *dinp, const float *inp, const float *dout,
                                            long lo, long hi) {
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = tanh_fast(u);
        float sech2 = 1.0f - th * th;
        float g =
            0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += g * dout[i];
    }
}

void gelu_forward(float *out, const float *inp, int N) {
#pragma omp parallel if (CG_PAR(N))
    {
        long lo, hi;
        thread_range(N, &lo, &hi);
        gelu_forward_range(out, inp, lo, hi);
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int N) {
#pragma omp parallel if (CG_PAR(N))
    {
        long lo, hi;
        thread_range(N, &lo, &hi);
        gelu_backward_range(dinp, inp, dout, lo, hi);
    }
}

void residual_forward(float *out, const float *a, const float *b, int N) {
#pragma omp parallel for simd schedule(static) if (CG_PAR(N))
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void encoder_forward(float *out, const float *vis, const int *tokens, const float *wte,
                     const float *wpe, int B, int T, int P, int C) {
    assert(P == 0 || vis);
    assert(P == T || (tokens && wte));
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * T * C))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((long)b * T + t) * C;
            const float *src = t < P ? vis + ((long)b * P + t) * C
                                     : wte + (long)tokens[(long)b * (T - P) + (t - P)] * C;
            const float *pos = wpe + (long)t * C;
            for (int i = 0; i < C; i++) o[i] = src[i] + pos[i];
        }
}

void encoder_backward(float *dvis, float *dwte, float *dwpe, const float *dout, const int *tokens,
                      int B, int T, int P, int C) {
    if (dvis) {
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * P * C))
        for (int b = 0; b < B; b++)
            for (int t = 0; t < P; t++) {
                float *dv = dvis + ((long)b * P + t) * C;
                const float *d = dout + ((long)b * T + t) * C;
                for (int i = 0; i < C; i++) dv[i] += d[i];
            }
    }
    if (!dwte && !dwpe) return;
        /* scatter-adds: each thread owns a channel range and visits rows in order (deterministic) */
#pragma omp parallel if (CG_PAR((long)B * T * C))
    {
        long lo, hi;
        thread_range(C, &lo, &hi);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *d = dout + ((long)b * T + t) * C;
                if (dwpe) {
                    float *dp = dwpe + (long)t * C;
                    for (long i = lo; i < hi; i++) dp[i] += d[i];
                }
                if (dwte && t >= P) {
                    float *dw = dwte + (long)tokens[(long)b * (T - P) + (t - P)] * C;
                    for (long i = lo; i < hi; i++) dw[i] += d[i];
                }
            }
    }
}

void patchify_forward(float *out, const uint8_t *img_u8, const float *img_f32, int B, int S,
                      int p) {
    assert((img_u8 != NULL) != (img_f32 != NULL));
    int g = S / p, P = g * g, K = p * p * 3;
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * P * K))
    for (int b = 0; b < B; b++)
        for (int q = 0; q < P; q++) {
            int gy = q / g, gx = q % g;
            float *o = out + ((long)b * P + q) * K;
            for (int y = 0; y < p; y++) {
                long src = (((long)b * S + gy * p + y) * S + gx * p) * 3;
                float *row = o + y * p * 3;
                if (img_u8)
                    for (int i = 0; i < p * 3; i++)
                        row[i] = img_u8[src + i] / 255.0f - 0.5f; /* as numpy: x / 255 - 0.5 */
                else
                    memcpy(row, img_f32 + src, sizeof(float) * p * 3);
            }
        }
}
