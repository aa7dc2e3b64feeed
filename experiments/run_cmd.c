/* run_cmd.c: `cgvlm run` (placeholder until the training core lands). */
#include "cli/commands.h"

int cmd_run(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm run", "issue 3"); }
