/* optim.c: CPU kernels of the optimizer: the AdamW update, the squared norm used by global-norm
 * clipping (summed in a fixed order, so it is the same for any thread count) and scaling. */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"

#include <math.h>

SIMD_CLONES static void adamw_range(float *param, const float *grad, float *m, float *v, long lo,
                                    long hi, float lr, float beta1, float beta2, float eps,
                                    float weight_decay, float bc1, float bc2) {
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

void adamw_update(float *param, const float *grad, float *m, float *v, long n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel if (CG_PAR(n))
    {
        long lo, hi;
        thread_range(n, &lo, &hi);
        adamw_range(param, grad, m, v, lo, hi, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
    }
}

#define SUMSQ_CHUNKS 64

double sumsq(const float *x, long n) {
    double part[SUMSQ_CHUNKS];
#pragma omp parallel for schedule(static) if (CG_PAR(n))
    for (int c = 0; c < SUMSQ_CHUNKS; c++) {
        long lo = n * c / SUMSQ_CHUNKS, hi = n * (c + 1) / SUMSQ_CHUNKS;
        double s = 0.0;
        for (long i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < SUMSQ_CHUNKS; c++) s += part[c];
    return s;
}

void scale_inplace(float *x, long n, float s) {
#pragma omp parallel for simd schedule(static) if (CG_PAR(n))
    for (long i = 0; i < n; i++) x[i] *= s;
}
