/* stats.c: t quantiles, intervals, percentiles and bootstraps for reports (see stats.h). */
#include "reports/stats.h"
#include "util/rng.h"
#include "util/util.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

/* The continued fraction of I_x(a, b) (Numerical Recipes' betacf with modified Lentz). */
static double incbeta_cf(double a, double b, double x) {
    const double tiny = 1e-300, eps = 1e-16;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps) break;
    }
    return h;
}

/* log Γ(a+b) − log Γ(a) without the cancellation of two large lgamma values (Stirling series for a ≥ 10). */
static double lgamma_diff(double a, double b) {
    if (a < 10) return lgamma(a + b) - lgamma(a);
    double c = a + b;
    double corr_c = 1 / (12 * c) - 1 / (360 * c * c * c) + 1 / (1260 * pow(c, 5)) - 1 / (1680 * pow(c, 7));
    double corr_a = 1 / (12 * a) - 1 / (360 * a * a * a) + 1 / (1260 * pow(a, 5)) - 1 / (1680 * pow(a, 7));
    return (c - 0.5) * log1p(b / a) + b * log(a) - b + (corr_c - corr_a);
}

/* I_x(a, b) with y = 1 − x given separately, so that x near 1 keeps its precision. */
static double incbeta_xy(double a, double b, double x, double y) {
    assert(a > 0 && b > 0);
    if (x <= 0) return 0;
    if (y <= 0) return 1;
    /* log(x^a y^b / (a B(a,b))) pieces: −log B(a,b) = lgamma(a+b) − lgamma(a) − lgamma(b) */
    double nlbeta = a >= b ? lgamma_diff(a, b) - lgamma(b) : lgamma_diff(b, a) - lgamma(a);
    double lbt = nlbeta + a * log(x) + b * log(y);
    /* The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 − I_y(b,a) otherwise. */
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(lbt) * incbeta_cf(a, b, x) / a;
    return 1.0 - exp(lbt) * incbeta_cf(b, a, y) / b;
}

double stats_incbeta(double a, double b, double x) { return incbeta_xy(a, b, x, 1.0 - x); }

double stats_t_cdf(double t, double df) {
    assert(df > 0);
    if (isinf(t)) return t > 0 ? 1.0 : 0.0;
    /* P(|T| > |t|) = I_x(df/2, 1/2) with x = df/(df+t²), 1 − x = t²/(df+t²) */
    double x = df / (df + t * t), y = t * t / (df + t * t);
    double tail = 0.5 * incbeta_xy(0.5 * df, 0.5, x, y);
    return t >= 0 ? 1.0 - tail : tail;
}

double stats_t_quantile(double p, double df) {
    assert(p > 0 && p < 1 && df > 0);
    if (p == 0.5) return 0;
    if (p < 0.5) return -stats_t_quantile(1.0 - p, df);
    double lo = 0, hi = 1;
    while (stats_t_cdf(hi, df) < p) {
        lo = hi;
        hi *= 2;
        if (hi > 1e300) return INFINITY;
    }
    for (int i = 0; i < 200; i++) {   /* bisection to the last bit */
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (stats_t_cdf(mid, df) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

double stats_mean(const double *x, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

double stats_sd(const double *x, size_t n) {
    if (n < 2) return 0;
    double m = stats_mean(x, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (double)(n - 1));
}

void stats_t_interval(const double *x, size_t n, double alpha, double *lo, double *hi, double *tq) {
    assert(n >= 2);
    double m = stats_mean(x, n), se = stats_sd(x, n) / sqrt((double)n);
    double q = stats_t_quantile(1.0 - alpha / 2, (double)(n - 1));
    *lo = m - q * se;
    *hi = m + q * se;
    if (tq) *tq = q;
}

double stats_percentile_sorted(const double *x, size_t n, double p) {
    if (n == 0) return NAN;
    double h = (double)(n - 1) * p;
    size_t i = (size_t)floor(h);
    if (i + 1 >= n) return x[n - 1];
    return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

uint64_t stats_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts the finite replicates and takes the 2.5 % / 97.5 % percentiles. */
static void percentile_interval(double *reps, int B, double *lo, double *hi) {
    size_t n = 0;
    for (int b = 0; b < B; b++)
        if (isfinite(reps[b])) reps[n++] = reps[b];
    qsort(reps, n, sizeof *reps, cmp_double);
    *lo = stats_percentile_sorted(reps, n, 0.025);
    *hi = stats_percentile_sorted(reps, n, 0.975);
}

void stats_boot_questions(const unsigned char *const *cols, size_t nq, int stat, int B,
                          uint64_t seed, const char *label, double *lo, double *hi) {
    assert(nq > 0 && nq < UINT32_MAX && B > 0);
    cg_rng rng;
    cg_rng_seed2(&rng, seed, stats_fnv1a64(label));
    double *reps = cg_malloc((size_t)B * sizeof *reps);
    int ncols = stat == STATS_MEAN ? 1 : 2;
    for (int b = 0; b < B; b++) {
        long sum[2] = {0, 0};
        for (size_t i = 0; i < nq; i++) {
            uint32_t k = cg_rng_below(&rng, (uint32_t)nq);
            for (int c = 0; c < ncols; c++) sum[c] += cols[c][k];
        }
        double m0 = (double)sum[0] / (double)nq, m1 = (double)sum[1] / (double)nq;
        reps[b] = stat == STATS_MEAN ? m0 : stat == STATS_RATIO ? m0 / m1 : m0 - m1;
    }
    percentile_interval(reps, B, lo, hi);
    free(reps);
}

void stats_boot_ratio_seeds(const double *a, size_t na, const double *b, size_t nb, int B,
                            uint64_t seed, const char *label, double *lo, double *hi) {
    assert(na > 0 && nb > 0 && B > 0);
    cg_rng rng;
    cg_rng_seed2(&rng, seed, stats_fnv1a64(label));
    double *reps = cg_malloc((size_t)B * sizeof *reps);
    for (int r = 0; r < B; r++) {
        double sa = 0, sb = 0;
        for (size_t i = 0; i < na; i++) sa += a[cg_rng_below(&rng, (uint32_t)na)];
        for (size_t i = 0; i < nb; i++) sb += b[cg_rng_below(&rng, (uint32_t)nb)];
        reps[r] = (sa / (double)na) / (sb / (double)nb);
    }
    percentile_interval(reps, B, lo, hi);
    free(reps);
}
