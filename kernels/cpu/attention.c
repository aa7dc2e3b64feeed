/* attention.c: CPU multi-head attention, causal or bidirectional. One (batch, head) pair is one
 * unit of parallel work, computed with single-threaded sgemm calls on strided views of qkv (the
 * causal mask's zeros are multiplied too: at these sizes whole products beat triangular loops);
 * its outputs and gradients are disjoint slices, so no two threads write the same value. */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    blas_single_thread();
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * NH * T * T * hs / 64))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (long)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            float *a = att + ((long)b * NH + h) * T * T;
            /* scores = scale · q kᵀ, then a row-wise softmax over the visible positions */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
                        0.0f, a, T);
            for (int t = 0; t < T; t++) {
                float *row = a + (long)t * T;
                int n = causal ? t + 1 : T;
                float mx = -INFINITY, sum = 0.0f;
                for (int t2 = 0; t2 < n; t2++) mx = row[t2] > mx ? row[t2] : mx;
#pragma omp simd reduction(+ : sum)
                for (int t2 = 0; t2 < n; t2++) {
                    row[t2] = exp_fast(row[t2] - mx);
                    sum += row[t2];
                }
                float inv = 1.0f / sum;
                for (int t2 = 0; t2 < n; t2++) row[t2] *= inv;
                for (int t2 = n; t2 < T; t2++) row[t2] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, v, C3,
                        0.0f, out + (long)b * T * C + h * hs, C);
        }
}

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH, int causal) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    blas_single_thread();
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * NH * T * T * hs / 64))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            long off = (long)b * T * C3 + h * hs;
            const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((long)b * NH + h) * T * T;
            const float *dy = dout + (long)b * T * C + h * hs;
            float *da = datt + ((long)b * NH + h) * T * T;
            /* out = a v: da = dy vᵀ, dv += aᵀ dy */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, C, v, C3, 0.0f,
                        da, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, dy, C, 1.0f,
                        dv, C3);
            /* softmax: ds = a (da - Σ a·da), times the score scale */
            for (int t = 0; t < T; t++) {
                const float *ar = a + (long)t * T;
                float *dr = da + (long)t * T;
                int n = causal ? t + 1 : T;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int t2 = 0; t2 < n; t2++) dot += ar[t2] * dr[t2];
                for (int t2 = 0; t2 < n; t2++) dr[t2] = ar[t2] * (dr[t2] - dot) * scale;
                for (int t2 = n; t2 < T; t2++) dr[t2] = 0.0f;
            }
            /* scores = q kᵀ: dq += ds k, dk += dsᵀ q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, da, T, k, C3,
                        1.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, da, T, q, C3, 1.0f,
                        dk, C3);
        }
}
