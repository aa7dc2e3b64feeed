/* fetch_cmd.c: `cgvlm fetch` (placeholder until the fetcher lands). */
#include "cli/commands.h"

int cmd_fetch(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm fetch", "issue 6"); }
int bench_fetch(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm bench fetch", "issue 6"); }
