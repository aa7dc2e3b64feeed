/* stats.h: the statistics behind reports: Student's t quantile (own implementation through the
 * regularized incomplete beta function), mean / standard deviation / t-intervals, percentiles,
 * and percentile bootstraps with a documented deterministic random scheme.
 *
 * Bootstrap scheme (reproducible from outside, e.g. by the tests' Python oracle):
 *   rng    = cg_rng_seed2(seed, fnv1a64(label))      (util/rng.h, xoshiro256**; label names the cell)
 *   replicate b = 0..B-1 draws its indices with cg_rng_below(n), in the order documented at each
 *   function; the interval is the 2.5 % and 97.5 % percentiles of the B replicate statistics with
 *   numpy's default ("linear", type 7) interpolation; non-finite replicates are dropped.
 */
#ifndef CG_REPORT_STATS_H
#define CG_REPORT_STATS_H

#include <stddef.h>
#include <stdint.h>

/* I_x(a, b), the regularized incomplete beta function (continued fraction, Lentz). */
double stats_incbeta(double a, double b, double x);
/* Student's t CDF with df degrees of freedom (df > 0, may be fractional). */
double stats_t_cdf(double t, double df);
/* Its inverse: the p-quantile (0 < p < 1), by bisection on stats_t_cdf to full double precision. */
double stats_t_quantile(double p, double df);

double stats_mean(const double *x, size_t n);
/* Sample standard deviation (n - 1 in the denominator); 0 when n < 2. */
double stats_sd(const double *x, size_t n);
/* The two-sided (1 - alpha) t-interval mean ± t_{1-alpha/2, n-1} · sd/√n; needs n >= 2.
 * *tq receives the quantile used. */
void stats_t_interval(const double *x, size_t n, double alpha, double *lo, double *hi, double *tq);
/* p-quantile (0..1) of sorted x[n] with linear interpolation (numpy's default). */
double stats_percentile_sorted(const double *x, size_t n, double p);

/* 64-bit FNV-1a of a string: the bootstrap stream id of a label. */
uint64_t stats_fnv1a64(const char *s);

enum { STATS_MEAN = 0, STATS_RATIO = 1, STATS_DIFF = 2 };

/* Bootstrap over questions, paired: cols[c][i] is the 0/1 correctness of question i (the same
 * questions, in the same order, in every column). Each replicate draws nq indices with
 * cg_rng_below(nq) and computes, from the column means over the drawn questions,
 * STATS_MEAN: m0, STATS_RATIO: m0 / m1, STATS_DIFF: m0 - m1. The 95 % interval goes to lo, hi. */
void stats_boot_questions(const unsigned char *const *cols, size_t nq, int stat, int B,
                          uint64_t seed, const char *label, double *lo, double *hi);

/* Bootstrap of a ratio of means over seeds, two independent samples: each replicate draws na
 * indices into a (cg_rng_below(na)), then nb into b, and computes mean(a*) / mean(b*). */
void stats_boot_ratio_seeds(const double *a, size_t na, const double *b, size_t nb, int B,
                            uint64_t seed, const char *label, double *lo, double *hi);

#endif
