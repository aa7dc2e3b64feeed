/* fetch_bench.c: `cgvlm bench fetch` (placeholder). */
#include "cli/commands.h"
int bench_fetch(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm bench fetch", "issue 6"); }
