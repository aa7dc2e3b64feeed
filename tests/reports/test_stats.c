/* test_stats.c: prints the report statistics (t CDF and quantiles, the incomplete beta function,
 * percentiles, bootstraps) over a grid as JSON on stdout, for check_stats.py to compare with scipy
 * and numpy; plus in-process checks of invariants that need no oracle. */
#include "reports/stats.h"
#include "tests/test.h"

#include <math.h>
#include <stdio.h>

int main(void) {
    static const double ps[] = {0.5000001, 0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995, 0.025, 0.001};
    static const double dfs[] = {0.5, 1, 2, 3, 4, 5, 7, 10, 29, 30, 100, 1000, 1e6};
    static const double ts[] = {-40, -3, -1, -0.1, 0, 0.3, 1.7, 2.5, 12, 300};
    static const double ab[][2] = {{0.5, 0.5}, {1, 1}, {2, 3}, {0.1, 10}, {10, 0.1}, {50, 60}, {1.5, 0.5}, {200, 0.5}};
    static const double xs[] = {1e-6, 0.01, 0.2, 0.5, 0.77, 0.99, 0.999999};
    printf("{\"t_quantile\": [");
    int first = 1;
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        for (size_t j = 0; j < sizeof dfs / sizeof *dfs; j++) {
            printf("%s[%.17g, %.17g, %.17g]", first ? "" : ", ", ps[i], dfs[j], stats_t_quantile(ps[i], dfs[j]));
            first = 0;
        }
    printf("],\n\"t_cdf\": [");
    first = 1;
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        for (size_t j = 0; j < sizeof dfs / sizeof *dfs; j++) {
            printf("%s[%.17g, %.17g, %.17g]", first ? "" : ", ", ts[i], dfs[j], stats_t_cdf(ts[i], dfs[j]));
            first = 0;
        }
    printf("],\n\"incbeta\": [");
    first = 1;
    for (size_t i = 0; i < sizeof ab / sizeof *ab; i++)
        for (size_t j = 0; j < sizeof xs / sizeof *xs; j++) {
            printf("%s[%.17g, %.17g, %.17g, %.17g]", first ? "" : ", ", ab[i][0], ab[i][1], xs[j],
                   stats_incbeta(ab[i][0], ab[i][1], xs[j]));
            first = 0;
        }
    /* a t-interval and bootstraps on fixed data */
    static const double v[] = {0.61, 0.58, 0.66, 0.7, 0.55};
    double lo, hi, tq;
    stats_t_interval(v, 5, 0.05, &lo, &hi, &tq);
    printf("],\n\"t_interval\": {\"x\": [0.61, 0.58, 0.66, 0.7, 0.55], \"lo\": %.17g, \"hi\": %.17g, \"tq\": %.17g},\n", lo, hi, tq);
    static const double sorted[] = {1, 2, 4, 8, 16, 32, 64};
    printf("\"percentile\": [");
    for (int k = 0; k <= 10; k++) printf("%s[%.17g, %.17g]", k ? ", " : "", k / 10.0, stats_percentile_sorted(sorted, 7, k / 10.0));
    unsigned char a[200], b[200];
    for (int i = 0; i < 200; i++) a[i] = (i * 7) % 10 < 6, b[i] = (i * 3) % 10 < 4;
    const unsigned char *cols[2] = {a, b};
    printf("],\n\"boot\": {\"a\": [");
    for (int i = 0; i < 200; i++) printf("%s%d", i ? "," : "", a[i]);
    printf("], \"b\": [");
    for (int i = 0; i < 200; i++) printf("%s%d", i ? "," : "", b[i]);
    printf("], \"B\": 4000, \"seed\": 11");
    static const char *names[] = {"mean", "ratio", "diff"};
    for (int s = 0; s < 3; s++) {
        stats_boot_questions(cols, 200, s, 4000, 11, names[s], &lo, &hi);
        printf(", \"%s\": [%.17g, %.17g]", names[s], lo, hi);
    }
    static const double sa[] = {0.5, 0.62, 0.58}, sb[] = {0.8, 0.84, 0.78, 0.9};
    stats_boot_ratio_seeds(sa, 3, sb, 4, 4000, 11, "seeds", &lo, &hi);
    printf(", \"seeds_a\": [0.5, 0.62, 0.58], \"seeds_b\": [0.8, 0.84, 0.78, 0.9], \"seeds_ratio\": [%.17g, %.17g]", lo, hi);
    printf(", \"fnv_abc\": \"%016llx\"}", (unsigned long long)stats_fnv1a64("abc"));

    /* tests and power: two-sided t p-values, Holm, the exact sign-flip test, the noncentral t, MDE */
    static const double tps[] = {0, 0.5, -1.2, 2.1, -4.3, 9.9, 40};
    static const double pdfs[] = {1, 2, 4, 9, 29};
    printf(",\n\"t_p2\": [");
    first = 1;
    for (size_t i = 0; i < sizeof tps / sizeof *tps; i++)
        for (size_t j = 0; j < sizeof pdfs / sizeof *pdfs; j++) {
            printf("%s[%.17g, %.17g, %.17g]", first ? "" : ", ", tps[i], pdfs[j], stats_t_p2(tps[i], pdfs[j]));
            first = 0;
        }
    static const double hp[][6] = {{0.01, 0.04, 0.03, 0.005, 0.2, 0.9}, {0.5, 0.5, 0.5, 0.5, 0.5, 0.5},
                                   {0.001, 0.3, 0.012, 0.0125, 0.02, 0.6}, {0.04, 0.2, 0.3, 0.01, 0.011, 1}};
    printf("],\n\"holm\": [");
    for (int i = 0; i < 4; i++) {
        double adj[6];
        stats_holm(hp[i], 6, adj);
        printf("%s[[", i ? ", " : "");
        for (int k = 0; k < 6; k++) printf("%s%.17g", k ? ", " : "", hp[i][k]);
        printf("], [");
        for (int k = 0; k < 6; k++) printf("%s%.17g", k ? ", " : "", adj[k]);
        printf("]]");
    }
    static const int bc[][2] = {{0, 0}, {3, 0}, {0, 5}, {7, 7}, {12, 4}, {3, 20}, {60, 40}, {150, 110}, {1, 2}};
    printf("],\n\"signflip\": [");
    for (size_t i = 0; i < sizeof bc / sizeof *bc; i++)
        printf("%s[%d, %d, %.17g]", i ? ", " : "", bc[i][0], bc[i][1], stats_signflip_p2(bc[i][0], bc[i][1]));
    static const double nts[] = {-6, -2.5, -0.3, 0, 0.7, 2.0, 4.303, 12.7, 60};
    static const double ndfs[] = {1, 2, 4, 9, 29, 200};
    static const double ndl[] = {-3, 0, 0.4, 1.5, 4, 9, 25, 45};
    printf("],\n\"nct_cdf\": [");
    first = 1;
    for (size_t i = 0; i < sizeof nts / sizeof *nts; i++)
        for (size_t j = 0; j < sizeof ndfs / sizeof *ndfs; j++)
            for (size_t k = 0; k < sizeof ndl / sizeof *ndl; k++) {
                printf("%s[%.17g, %.17g, %.17g, %.17g]", first ? "" : ", ", nts[i], ndfs[j], ndl[k],
                       stats_nct_cdf(nts[i], ndfs[j], ndl[k]));
                first = 0;
            }
    static const int mns[] = {2, 3, 4, 5, 8, 10, 20, 50};
    printf("],\n\"mde_ncp\": [");
    for (size_t i = 0; i < sizeof mns / sizeof *mns; i++)
        printf("%s[%d, %.17g, %.17g]", i ? ", " : "", mns[i], stats_mde_ncp(mns[i], 0.05, 0.8),
               stats_t_power(stats_mde_ncp(mns[i], 0.05, 0.8), mns[i] - 1, 0.05));
    static const double ne[][2] = {{0.02, 0.015}, {0.01, 0.02}, {0.05, 0.01}, {0.003, 0.02}, {0.02, 0.05}};
    printf("],\n\"n_needed\": [");
    for (size_t i = 0; i < sizeof ne / sizeof *ne; i++)
        printf("%s[%.17g, %.17g, %d]", i ? ", " : "", ne[i][0], ne[i][1], stats_n_needed(ne[i][0], ne[i][1], 0.05, 0.8, 100000));
    printf("]}\n");

    /* invariants */
    for (size_t j = 0; j < sizeof dfs / sizeof *dfs; j++) {
        CHECK(stats_t_quantile(0.5, dfs[j]) == 0);
        CHECK_CLOSE(stats_t_quantile(0.025, dfs[j]), -stats_t_quantile(0.975, dfs[j]), 0, 1e-15);
        CHECK_CLOSE(stats_t_cdf(stats_t_quantile(0.9, dfs[j]), dfs[j]), 0.9, 1e-11, 0);
    }
    double lo2, hi2;   /* same seed and label: the same interval; another label: another stream */
    stats_boot_questions(cols, 200, 0, 500, 1, "x", &lo, &hi);
    stats_boot_questions(cols, 200, 0, 500, 1, "x", &lo2, &hi2);
    CHECK(lo == lo2 && hi == hi2);
    CHECK(lo <= 0.6 && 0.6 <= hi);
    /* power: at ncp 0 it is alpha; the MDE's ncp gives the asked power; more seeds, smaller MDE */
    CHECK_CLOSE(stats_t_power(0, 4, 0.05), 0.05, 1e-10, 0);
    for (int n = 2; n <= 12; n++) {
        CHECK_CLOSE(stats_t_power(stats_mde_ncp(n, 0.05, 0.8), n - 1, 0.05), 0.8, 1e-9, 0);
        CHECK(stats_mde(1.0, n + 1, 0.05, 0.8) < stats_mde(1.0, n, 0.05, 0.8));
    }
    CHECK(isnan(stats_mde(0.01, 1, 0.05, 0.8)));
    CHECK(stats_n_needed(0.01, 0.0, 0.05, 0.8, 100) == 2);
    CHECK(stats_n_needed(0.0001, 1.0, 0.05, 0.8, 100) == -1);
    {
        int n = stats_n_needed(0.02, 0.03, 0.05, 0.8, 1000);   /* the smallest: n − 1 falls short */
        CHECK(n > 2 && stats_t_power(0.02 / 0.03 * sqrt(n), n - 1, 0.05) >= 0.8 &&
              stats_t_power(0.02 / 0.03 * sqrt(n - 1), n - 2, 0.05) < 0.8);
    }
    {
        double p[4] = {0.01, NAN, 0.02, 0.04}, adj[4];   /* NAN is left out of the family */
        stats_holm(p, 4, adj);
        CHECK_CLOSE(adj[0], 0.03, 1e-15, 0);
        CHECK(isnan(adj[1]));
        CHECK_CLOSE(adj[2], 0.04, 1e-15, 0);
        CHECK_CLOSE(adj[3], 0.04, 1e-15, 0);
    }
    fprintf(stderr, "test_stats: %d checks, %d failures\n", test_checks, test_failures);
    return test_failures != 0;
}
