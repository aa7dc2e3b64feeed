/* gradcheck.h: finite-difference helpers for the training-core tests. The loss of a check is
 * L = Σ w·out with fixed random weights w (so dout = w); numerical gradients are central
 * differences (L(x+ε) - L(x-ε)) / 2ε with L accumulated in double. */
#ifndef CG_GRADCHECK_H
#define CG_GRADCHECK_H

#include "tests/test.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef double (*gc_loss_fn)(void *ctx);

static inline void gc_fill(float *x, long n, cg_rng *r, float scale) {
    for (long i = 0; i < n; i++) x[i] = scale * cg_rng_normal(r);
}

static inline double gc_dot(const float *a, const float *b, long n) {
    double s = 0.0;
    for (long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Checks analytic[i] against the central difference for every i (n <= max_all) or for a seeded
 * sample of max_all indices; |a - num| <= atol + rtol·|num|. Prints the worst error. */
static inline void gc_check(const char *name, float *x, long n, const float *analytic, gc_loss_fn f,
                            void *ctx, float eps, double atol, double rtol, long max_all) {
    cg_rng r;
    cg_rng_seed(&r, 99);
    double worst = 0.0;
    long nchk = n < max_all ? n : max_all;
    int bad = 0;
    for (long k = 0; k < nchk; k++) {
        long i = n <= max_all ? k : (long)cg_rng_below(&r, (uint32_t)n);
        float save = x[i];
        x[i] = save + eps;
        double lp = f(ctx);
        x[i] = save - eps;
        double lm = f(ctx);
        x[i] = save;
        double num = (lp - lm) / (2.0 * (double)eps), a = analytic[i];
        double err = fabs(a - num) / (atol + rtol * fabs(num));
        if (err > worst) worst = err;
        if (err > 1.0 && bad++ < 5)
            fprintf(stderr, "  %s[%ld]: analytic %.6g numeric %.6g\n", name, i, a, num);
    }
    test_checks++;
    if (worst > 1.0) test_failures++;
    printf("  %-28s n=%-6ld checked=%-5ld worst err/tol = %.3f%s\n", name, n, nchk, worst,
           worst > 1.0 ? "  FAIL" : "");
}

#endif
