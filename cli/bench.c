/* bench.c: `cgvlm bench WHAT`: dispatch to each area's benchmark. */
#include "cli/commands.h"
#include "util/util.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} benches[] = {
    {"world", bench_world, "world generation speed (images/s)"},
    {"train", bench_train, "training step time, tokens/s, GFLOP/s, peak RSS"},
    {"db", bench_db, "results database ingestion (rows/s) and view latency"},
    {"sched", bench_sched, "scheduler overhead per task"},
    {"fetch", bench_fetch, "download throughput against curl, bytes re-sent after a drop"},
};

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *fp = argc < 2 ? stderr : stdout;
        fprintf(fp, "usage: cgvlm bench WHAT [--json] [OPTIONS]\n\nbenchmarks:\n");
        for (size_t i = 0; i < CG_ARRAY_LEN(benches); i++)
            fprintf(fp, "  %-6s %s\n", benches[i].name, benches[i].summary);
        fprintf(fp, "\n  cgvlm bench WHAT --help   options of one benchmark\n");
        return argc < 2 ? CG_EUSER : CG_OK;
    }
    for (size_t i = 0; i < CG_ARRAY_LEN(benches); i++)
        if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cgvlm: error: unknown benchmark '%s'; see 'cgvlm bench --help'\n", argv[1]);
    return CG_EUSER;
}
