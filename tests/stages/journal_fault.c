/* journal_fault.c: the metrics journal under a file-size limit, for test_disk_full.sh.
 *
 *   journal_fault JOURNAL LIMIT_BYTES N
 *
 * Ignores SIGXFSZ, sets RLIMIT_FSIZE to LIMIT_BYTES (0: no limit), appends N "loss" scalars
 * (step i, value i + 0.25) to JOURNAL and flushes every 8, as a training stage does at its
 * checkpoints. Prints "flushed S" after each successful flush (S = steps durable so far) and
 * stops at the first failed call: cgvlm: error: ... on stderr, exit status 1. */
#include "core/metrics.h"
#include "util/util.h"

#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: journal_fault JOURNAL LIMIT_BYTES N\n");
        return 2;
    }
    int64_t limit = 0, n = 0;
    int rc = cg_parse_i64(argv[2], "LIMIT_BYTES", 0, INT64_MAX, &limit);
    if (rc == CG_OK) rc = cg_parse_i64(argv[3], "N", 1, 1000000, &n);
    if (rc) return cg_report(rc);
    signal(SIGXFSZ, SIG_IGN);
    if (limit > 0) {
        struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return cg_report(cg_err(CG_EFAIL, "setrlimit failed"));
    }
    metrics_sink *j = NULL;
    if ((rc = metrics_journal_open(argv[1], &j))) return cg_report(rc);
    for (int64_t i = 0; i < n && rc == CG_OK; i++) {
        rc = metrics_scalar(j, "loss", i, (double)i + 0.25);
        if (rc == CG_OK && (i + 1) % 8 == 0 && (rc = metrics_flush(j)) == CG_OK) {
            printf("flushed %lld\n", (long long)(i + 1));
            fflush(stdout);
        }
    }
    if (rc == CG_OK) rc = metrics_flush(j);
    metrics_close(j);
    return cg_report(rc);
}
