/* test.h: a minimal C test harness: CHECK macros that count failures, and a summary line. */
#ifndef CG_TEST_H
#define CG_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_failures = 0, test_checks = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        test_checks++;                                                                \
        if (!(cond)) {                                                                \
            test_failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

#define CHECK_STR(a, b)                                                                         \
    do {                                                                                        \
        const char *a_ = (a), *b_ = (b);                                                        \
        test_checks++;                                                                          \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                \
            test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: '%s' != '%s'\n", __FILE__, __LINE__, a_ ? a_ : "(null)",   \
                    b_ ? b_ : "(null)");                                                        \
        }                                                                                       \
    } while (0)

/* |x - ref| <= atol + rtol * |ref| */
#define CHECK_CLOSE(x, ref, atol, rtol)                                                          \
    do {                                                                                         \
        double x_ = (x), r_ = (ref);                                                             \
        test_checks++;                                                                           \
        if (!(fabs(x_ - r_) <= (atol) + (rtol) * fabs(r_))) {                                    \
            test_failures++;                                                                     \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g\n", __FILE__, __LINE__, #x, x_, r_); \
        }                                                                                        \
    } while (0)

static inline int test_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#endif
