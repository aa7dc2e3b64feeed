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

/* ------------------------------------------------------------------ tests and power */

double stats_t_p2(double t, double df) {
    assert(df > 0);
    if (isnan(t)) return NAN;
    return fmin(1.0, 2.0 * stats_t_cdf(-fabs(t), df));   /* the lower tail keeps small p exact */
}

void stats_holm(const double *p, size_t k, double *adj) {
    size_t *ord = cg_malloc((k + 1) * sizeof *ord), m = 0;
    for (size_t i = 0; i < k; i++) {
        adj[i] = NAN;
        if (!isnan(p[i])) ord[m++] = i;
    }
    for (size_t i = 1; i < m; i++)   /* insertion sort by p, stable: ties keep their order */
        for (size_t j = i; j > 0 && p[ord[j - 1]] > p[ord[j]]; j--) {
            size_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    double run = 0;
    for (size_t j = 0; j < m; j++) {
        double v = fmin(1.0, (double)(m - j) * p[ord[j]]);
        if (v > run) run = v;
        adj[ord[j]] = run;
    }
    free(ord);
}

double stats_signflip_p2(int b, int c) {
    assert(b >= 0 && c >= 0);
    int n = b + c, k = b < c ? b : c;
    if (b == c) return 1.0;
    /* P(X <= k), X ~ Binomial(n, 1/2), = I_{1/2}(n − k, k + 1) */
    double lower = incbeta_xy((double)(n - k), (double)k + 1.0, 0.5, 0.5);
    return fmin(1.0, 2.0 * lower);
}

#define STATS_PI 3.14159265358979323846

/* Standard normal upper tail Φ(−x). */
static double norm_sf(double x) { return 0.5 * erfc(x / sqrt(2.0)); }

/* Lenth's AS 243 for t >= 0 (any delta), with the Poisson weights kept in logs so that a large
 * noncentrality does not underflow them. */
static double nct_cdf_pos(double t, double df, double delta) {
    const double errmax = 1e-14;
    double tt = t * t, x = tt / (tt + df), y = df / (tt + df), sum = 0;
    if (x > 0) {
        double lambda = delta * delta, a = 0.5, b = 0.5 * df;
        double rxb = pow(y, b);
        double albeta = 0.5 * log(STATS_PI) + lgamma(b) - lgamma(0.5 + b);
        double xodd = incbeta_xy(a, b, x, y);
        double godd = 2.0 * rxb * exp(a * log(x) - albeta);
        double xeven = 1.0 - rxb, geven = b * x * rxb;
        double lp = log(0.5) - 0.5 * lambda, lq = lp + 0.5 * log(2.0 / STATS_PI) + (delta != 0 ? log(fabs(delta)) : -INFINITY);
        double qsign = delta < 0 ? -1.0 : 1.0;
        double p = exp(lp), q = qsign * exp(lq), s = 0.5 - p;
        sum = p * xodd + q * xeven;
        int itmax = 2000 + (int)(2 * lambda);
        for (int en = 1; en <= itmax; en++) {
            a += 1.0;
            xodd -= godd;
            xeven -= geven;
            godd *= x * (a + b - 1.0) / a;
            geven *= x * (a + b - 0.5) / (a + 0.5);
            lp += log(lambda / (2.0 * en));
            lq += log(lambda / (2.0 * en + 1.0));
            p = exp(lp);
            q = qsign * exp(lq);
            s -= p;
            sum += p * xodd + q * xeven;
            /* the bound holds once the Poisson weights are past their mode */
            if (en > 0.5 * lambda && fabs(2.0 * s * (xodd - godd)) <= errmax) break;
        }
    }
    sum += norm_sf(delta);
    return fmin(1.0, fmax(0.0, sum));
}

double stats_nct_cdf(double t, double df, double delta) {
    assert(df > 0);
    if (isinf(t)) return t > 0 ? 1.0 : 0.0;
    if (t >= 0) return nct_cdf_pos(t, df, delta);
    return 1.0 - nct_cdf_pos(-t, df, -delta);
}

double stats_t_power(double ncp, double df, double alpha) {
    double tc = stats_t_quantile(1.0 - alpha / 2, df);
    return (1.0 - stats_nct_cdf(tc, df, ncp)) + stats_nct_cdf(-tc, df, ncp);
}

double stats_mde_ncp(int n, double alpha, double power) {
    assert(n >= 2 && alpha > 0 && alpha < 1 && power > alpha && power < 1);
    double df = (double)(n - 1), lo = 0, hi = 1;
    while (stats_t_power(hi, df, alpha) < power) {
        lo = hi;
        hi *= 2;
        if (hi > 1e6) return INFINITY;
    }
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (stats_t_power(mid, df, alpha) < power) lo = mid;
        else hi = mid;
        if (hi - lo <= 1e-12 * hi) break;
    }
    return 0.5 * (lo + hi);
}

double stats_mde(double sd, int n, double alpha, double power) {
    if (n < 2 || isnan(sd)) return NAN;
    return stats_mde_ncp(n, alpha, power) * sd / sqrt((double)n);
}

int stats_n_needed(double effect, double sd, double alpha, double power, int nmax) {
    assert(effect > 0 && nmax >= 2);
    if (isnan(sd)) return -1;
    if (sd == 0) return 2;
    double z = effect / sd;
    /* power grows with n: double until it is reached, then bisect */
    int lo = 1, hi = 2;
    while (stats_t_power(z * sqrt((double)hi), (double)(hi - 1), alpha) < power) {
        lo = hi;
        if (hi >= nmax) return -1;
        hi = hi * 2 > nmax ? nmax : hi * 2;
    }
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (stats_t_power(z * sqrt((double)mid), (double)(mid - 1), alpha) < power) lo = mid;
        else hi = mid;
    }
    return hi;
}
