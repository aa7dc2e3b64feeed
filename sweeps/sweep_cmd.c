/* sweep_cmd.c: sweep commands (placeholder until the scheduler lands). */
#include "cli/commands.h"

int cmd_sweep(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm sweep", "issue 5"); }
int cmd_status(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm status", "issue 5"); }
int cmd_cancel(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm cancel", "issue 5"); }
int cmd_task(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm task", "issue 5"); }
int bench_sched(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm bench sched", "issue 5"); }
