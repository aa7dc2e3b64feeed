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

/* ------------------------------------------------------------------ tests and power
 * The paired on − off test over seeds is a one-sample t-test on the differences d_1..d_n:
 * t = mean(d) / (sd(d)/√n), df = n − 1, two-sided p = 2·F_t(−|t|; df). Holm adjusts a family of
 * p-values. Power and the minimum detectable effect use the noncentral t (exact, not the normal
 * approximation): power(δ) = 1 − F_nct(t_c; df, ncp) + F_nct(−t_c; df, ncp), ncp = δ·√n/σ,
 * t_c = t_{1−α/2, df}. */

/* Two-sided p-value of a t statistic: 2·F_t(−|t|; df), NAN for a NAN t. */
double stats_t_p2(double t, double df);
/* Holm's step-down adjustment of p[k] into adj[k] (same order): with the m finite p-values sorted
 * ascending p_(1) <= ... <= p_(m), adj_(j) = max_{i<=j} min(1, (m − i + 1)·p_(i)). NAN stays NAN and
 * does not count in m. */
void stats_holm(const double *p, size_t k, double *adj);
/* The exact two-sided sign-flip permutation test over questions of paired 0/1 outcomes, from the
 * discordant counts b (on right, off wrong) and c (on wrong, off right): all 2^(b+c) sign flips of
 * the per-question differences, statistic |Σ d|; this is the exact McNemar test,
 * p = min(1, 2·P(X <= min(b, c))), X ~ Binomial(b + c, ½); 1 when b = c. No random numbers. */
double stats_signflip_p2(int b, int c);
/* Noncentral t CDF F(t; df, delta) (Lenth's AS 243 series, Poisson weights in logs). */
double stats_nct_cdf(double t, double df, double delta);
/* Power of the two-sided level-alpha t-test with df degrees of freedom at noncentrality ncp. */
double stats_t_power(double ncp, double df, double alpha);
/* The noncentrality at which the two-sided t-test with n observations (df = n − 1) reaches `power`
 * (bisection on stats_t_power); needs n >= 2. */
double stats_mde_ncp(int n, double alpha, double power);
/* Minimum detectable effect: stats_mde_ncp(n, alpha, power)·sd/√n, in sd's units; NAN when n < 2. */
double stats_mde(double sd, int n, double alpha, double power);
/* The smallest n >= 2 (up to nmax) at which the two-sided t-test detects `effect` with `power`,
 * given the sd of the differences; -1 when nmax is not enough or sd is NAN; 2 when sd is 0. */
int stats_n_needed(double effect, double sd, double alpha, double power, int nmax);

#endif
