/* report_cmd.c: `cgvlm report` (placeholder until reports land). */
#include "cli/commands.h"

int cmd_report(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm report", "issue 7"); }
