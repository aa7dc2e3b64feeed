/* attention.c: CPU multi-head attention, causal or bidirectional. One (batch, head) pair is one
 * unit of parallel work; its outputs and gradients are disjoint slices, so no two threads write
 * the same value. Head sizes here are small (32-64), where plain loops with `omp simd` beat
 * many tiny sgemm calls. */
#include "kernels/kernels.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#define ATT_MAX_T 4096

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long C3 = 3L * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (long)b * T * C3;
            for (int t = 0; t < T; t++) {
                const float *q = base + t * C3 + h * hs;
                float *a = att + (((long)b * NH + h) * T + t) * T;
                int n = causal ? t + 1 : T;
                float mx = -INFINITY;
                for (int t2 = 0; t2 < n; t2++) {
                    const float *k = base + t2 * C3 + C + h * hs;
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < hs; i++) s += q[i] * k[i];
                    s *= scale;
                    a[t2] = s;
                    if (s > mx) mx = s;
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 < n; t2++) {
                    a[t2] = expf(a[t2] - mx);
                    sum += a[t2];
                }
                float inv = 1.0f / sum;
                for (int t2 = 0; t2 < n; t2++) a[t2] *= inv;
                for (int t2 = n; t2 < T; t2++) a[t2] = 0.0f;
                float *o = out + ((long)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int t2 = 0; t2 < n; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * hs;
                    float w = a[t2];
#pragma omp simd
                    for (int i = 0; i < hs; i++) o[i] += w * v[i];
                }
            }
        }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B,
                        int T, int C, int NH, int causal) {
    assert(T <= ATT_MAX_T);
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long C3 = 3L * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float dpre[ATT_MAX_T];
            const float *base = qkv + (long)b * T * C3;
            float *dbase = dqkv + (long)b * T * C3;
            for (int t = 0; t < T; t++) {
                const float *a = att + (((long)b * NH + h) * T + t) * T;
                const float *dy = dout + ((long)b * T + t) * C + h * hs;
                const float *q = base + t * C3 + h * hs;
                float *dq = dbase + t * C3 + h * hs;
                int n = causal ? t + 1 : T;
                /* through out = Σ a v: datt and dv */
                float dot = 0.0f;
                for (int t2 = 0; t2 < n; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * hs;
                    float *dv = dbase + t2 * C3 + 2 * C + h * hs;
                    float s = 0.0f, w = a[t2];
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < hs; i++) {
                        s += dy[i] * v[i];
                        dv[i] += w * dy[i];
                    }
                    dpre[t2] = s;
                    dot += w * s;
                }
                /* through the softmax, then the scaled q·k */
                for (int t2 = 0; t2 < n; t2++) {
                    const float *k = base + t2 * C3 + C + h * hs;
                    float *dk = dbase + t2 * C3 + C + h * hs;
                    float g = a[t2] * (dpre[t2] - dot) * scale;
#pragma omp simd
                    for (int i = 0; i < hs; i++) {
                        dq[i] += g * k[i];
                        dk[i] += g * q[i];
                    }
                }
            }
        }
}
