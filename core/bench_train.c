/* bench_train.c: `cgvlm bench train` (placeholder until the training core lands). */
#include "cli/commands.h"

int bench_train(int argc, char **argv) { return cg_not_yet(argc, argv, "cgvlm bench train", "issue 3"); }
