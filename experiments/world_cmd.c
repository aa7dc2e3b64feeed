/* world_cmd.c: `cgvlm world` and `cgvlm bench world` (placeholder until the world generator lands). */
#include "cli/commands.h"

int cmd_world(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm world", "issue 2"); }
int bench_world(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm bench world", "issue 2"); }
