/* db_cmd.c: results database commands (placeholder until the database lands). */
#include "cli/commands.h"

int cmd_query(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm query", "issue 4"); }
int cmd_runs(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm runs", "issue 4"); }
int cmd_show(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm show", "issue 4"); }
int cmd_compare(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm compare", "issue 4"); }
