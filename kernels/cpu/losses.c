/* losses.c: CPU kernels for the losses and what feeds them: the fused tied-head classifier
 * (logits + softmax + cross-entropy), k×k average pooling, L2 normalisation, masked means,
 * embedding lookups and the symmetric InfoNCE of L_con and CLIP. See kernels/kernels.h. */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void classifier_forward(float *losses, float *probs, const float *x, const float *wte,
                        const int *targets, int N, int C, int V) {
    if (N == 0) return;
    gemm(0, 1, N, V, C, x, C, wte, C, 0.0f, probs, V);
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * V))
    for (int n = 0; n < N; n++) {
        float *p = probs + (long)n * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = p[j] > mx ? p[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < V; j++) {
            p[j] = expf(p[j] - mx);
            sum += p[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < V; j++) p[j] *= inv;
        assert(targets[n] >= 0 && targets[n] < V);
        losses[n] = -logf(p[targets[n]]);
    }
}

void classifier_backward(float *dx, float *dwte, float *probs, const float *x, const float *wte,
                         const int *targets, float scale, int N, int C, int V) {
    if (N == 0) return;
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * V))
    for (int n = 0; n < N; n++) {
        float *p = probs + (long)n * V;
        p[targets[n]] -= 1.0f;
        for (int j = 0; j < V; j++) p[j] *= scale;
    }
    if (dx) gemm(0, 0, N, C, V, probs, V, wte, C, 1.0f, dx, C);
    if (dwte) gemm(1, 0, V, C, N, probs, V, x, C, 1.0f, dwte, C);
}

void avgpool_forward(float *out, const float *inp, int B, int gh, int gw, int k, int C) {
    assert(gh % k == 0 && gw % k == 0);
    int oh = gh / k, ow = gw / k, P = gh * gw, Q = oh * ow;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * P * C))
    for (int b = 0; b < B; b++)
        for (int q = 0; q < Q; q++) {
            int oy = q / ow, ox = q % ow;
            float *o = out + ((long)b * Q + q) * C;
            for (int i = 0; i < C; i++) o[i] = 0.0f;
            for (int dy = 0; dy < k; dy++)
                for (int dx = 0; dx < k; dx++) {
                    const float *x = inp + ((long)b * P + (oy * k + dy) * gw + ox * k + dx) * C;
                    for (int i = 0; i < C; i++) o[i] += x[i];
                }
            for (int i = 0; i < C; i++) o[i] *= inv;
        }
}

void avgpool_backward(float *dinp, const float *dout, int B, int gh, int gw, int k, int C) {
    int ow = gw / k, P = gh * gw, Q = (gh / k) * ow;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for collapse(2) schedule(static) if (CG_PAR((long)B * P * C))
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++) {
            int q = (p / gw / k) * ow + (p % gw) / k;
            const float *d = dout + ((long)b * Q + q) * C;
            float *di = dinp + ((long)b * P + p) * C;
            for (int i = 0; i < C; i++) di[i] += d[i] * inv;
        }
}

#define L2_EPS 1e-12f

void l2norm_forward(float *out, float *rnorm, const float *inp, int N, int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float nrm = sqrtf(ss);
        float r = 1.0f / (nrm > L2_EPS ? nrm : L2_EPS);
        float *o = out + (long)n * C;
        for (int i = 0; i < C; i++) o[i] = x[i] * r;
        rnorm[n] = r;
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *rnorm, int N,
                     int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * C))
    for (int n = 0; n < N; n++) {
        const float *y = out + (long)n * C, *d = dout + (long)n * C;
        float r = rnorm[n];
        float dot = 0.0f;
        if (r < 1.0f / L2_EPS) { /* not clamped: d(x/|x|) = (d - y (y·d)) / |x| */
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < C; i++) dot += y[i] * d[i];
        }
        float *di = dinp + (long)n * C;
        for (int i = 0; i < C; i++) di[i] += r * (d[i] - y[i] * dot);
    }
}

void masked_mean_forward(float *out, const float *inp, const uint8_t *mask, int B, int T, int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)B * T * C))
    for (int b = 0; b < B; b++) {
        float *o = out + (long)b * C;
        for (int i = 0; i < C; i++) o[i] = 0.0f;
        int cnt = 0;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(long)b * T + t]) continue;
            const float *x = inp + ((long)b * T + t) * C;
            for (int i = 0; i < C; i++) o[i] += x[i];
            cnt++;
        }
        float inv = cnt ? 1.0f / (float)cnt : 0.0f;
        for (int i = 0; i < C; i++) o[i] *= inv;
    }
}

void masked_mean_backward(float *dinp, const float *dout, const uint8_t *mask, int B, int T,
                          int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)B * T * C))
    for (int b = 0; b < B; b++) {
        int cnt = 0;
        for (int t = 0; t < T; t++) cnt += !mask || mask[(long)b * T + t];
        if (!cnt) continue;
        float inv = 1.0f / (float)cnt;
        const float *d = dout + (long)b * C;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(long)b * T + t]) continue;
            float *di = dinp + ((long)b * T + t) * C;
            for (int i = 0; i < C; i++) di[i] += d[i] * inv;
        }
    }
}

void embedding_forward(float *out, const int *tokens, const float *table, int N, int C) {
#pragma omp parallel for schedule(static) if (CG_PAR((long)N * C))
    for (int n = 0; n < N; n++)
        memcpy(out + (long)n * C, table + (long)tokens[n] * C, sizeof(float) * C);
}

void embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C) {
#pragma omp parallel if (CG_PAR((long)N * C))
    {
        long lo, hi;
        thread_range(C, &lo, &hi);
        for (int n = 0; n < N; n++) {
            float *dt = dtable + (long)tokens[n] * C;
            const float *d = dout + (long)n * C;
            for (long i = lo; i < hi; i++) dt[i] += d[i];
        }
    }
}

/* s_ij = a_i · b_j */
static float dot(const float *x, const float *y, int D) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < D; i++) s += x[i] * y[i];
    return s;
}

float contrastive_forward(float *probs, const float *a, const float *b, float logit_scale, int B,
                          int D) {
    float sc = expf(logit_scale);
    float *p1 = probs, *p2 = probs + (long)B * B;
    /* logits into p1 (row i = image i) and transposed into p2 (row j = caption j) */
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float l = sc * dot(a + (long)i * D, b + (long)j * D, D);
            p1[i * B + j] = l;
            p2[j * B + i] = l;
        }
    double loss = 0.0;
    for (int r = 0; r < 2 * B; r++) {
        float *p = probs + (long)r * B;
        int diag = r % B;
        float mx = -INFINITY;
        for (int j = 0; j < B; j++) mx = p[j] > mx ? p[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < B; j++) sum += expf(p[j] - mx);
        loss += -(p[diag] - mx - logf(sum));
        for (int j = 0; j < B; j++) p[j] = expf(p[j] - mx) / sum;
    }
    return (float)(loss / (2.0 * B));
}

void contrastive_backward(float *da, float *db, float *dlogit_scale, const float *probs,
                          const float *a, const float *b, float logit_scale, float scale, int B,
                          int D) {
    float sc = expf(logit_scale);
    const float *p1 = probs, *p2 = probs + (long)B * B;
    float w = scale / (2.0f * B);
    double dls = 0.0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float dl = w * (p1[i * B + j] + p2[j * B + i] - 2.0f * (i == j)); /* d/dlogits_ij */
            float ds = dl * sc;
            if (dlogit_scale) dls += (double)dl * sc * dot(a + (long)i * D, b + (long)j * D, D);
            if (da)
                for (int k = 0; k < D; k++) da[(long)i * D + k] += ds * b[(long)j * D + k];
            if (db)
                for (int k = 0; k < D; k++) db[(long)j * D + k] += ds * a[(long)i * D + k];
        }
    if (dlogit_scale) *dlogit_scale += (float)dls;
}
