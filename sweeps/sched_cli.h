/* sched_cli.h: the command-line options `cgvlm sweep` and `cgvlm run` share (defined in
 * sweep_cmd.c): the results db and workspace, tasks at once, the device, retries and time limits,
 * and the backend with its Slurm options. One table, one parser, one help text, so that the two
 * commands cannot drift apart. */
#ifndef CG_SCHED_CLI_H
#define CG_SCHED_CLI_H

#include "sweeps/sweep.h"

#include <getopt.h>

typedef struct {
    const char *db, *workspace;
    int workers;          /* 0: one per GPU, else one per CPU core */
    int max_attempts;     /* 0: the sweep's */
    double time_limit;    /* 0: the sweep's */
    const char *device;   /* NULL: each run's config says; else auto/cpu/cuda/cuda:N for every run */
} sched_cli;

/* getopt_long codes of the shared options (commands use codes below 2000 for their own). */
enum { SCHED_OPT_DB = 2000, SCHED_OPT_WS, SCHED_OPT_WORKERS, SCHED_OPT_DEVICE, SCHED_OPT_ATTEMPTS,
       SCHED_OPT_LIMIT, SCHED_OPT_BACKEND, SCHED_OPT_PARTITION, SCHED_OPT_ACCOUNT, SCHED_OPT_SLURM_ARG,
       SCHED_OPT_END };

#define SCHED_BACKEND_LONG_OPTS                                                                          \
    {"backend", required_argument, NULL, SCHED_OPT_BACKEND},                                             \
        {"partition", required_argument, NULL, SCHED_OPT_PARTITION},                                     \
        {"account", required_argument, NULL, SCHED_OPT_ACCOUNT},                                         \
        {"slurm-arg", required_argument, NULL, SCHED_OPT_SLURM_ARG}

#define SCHED_CLI_LONG_OPTS                                                                              \
    {"db", required_argument, NULL, SCHED_OPT_DB}, {"workspace", required_argument, NULL, SCHED_OPT_WS}, \
        {"workers", required_argument, NULL, SCHED_OPT_WORKERS},                                         \
        {"device", required_argument, NULL, SCHED_OPT_DEVICE},                                           \
        {"max-attempts", required_argument, NULL, SCHED_OPT_ATTEMPTS},                                   \
        {"time-limit", required_argument, NULL, SCHED_OPT_LIMIT}, SCHED_BACKEND_LONG_OPTS

/* The help lines of the shared options (after a command's own). */
extern const char sched_cli_usage[];
/* The usage synopsis of the shared options, for a command's first lines. */
extern const char sched_cli_synopsis[];

/* Defaults: $CGVLM_DB or results.db, $CGVLM_WORKSPACE or workspace, the rest 0/NULL; the Slurm
 * options (sched_slurm, backend_slurm.h) are reset. */
void sched_cli_init(sched_cli *o);
/* Handles getopt code c with its argument when it is a shared option: *handled = 1 and CG_OK, or
 * CG_EUSER naming the option (a --device outside auto/cpu/cuda/cuda:N is refused with the config
 * key's own message). *handled = 0 for codes that are not shared options. */
int sched_cli_option(sched_cli *o, int c, const char *arg, int *handled);
/* After parsing: refuses Slurm options without --backend slurm (cmd names the command). */
int sched_cli_check(const char *cmd);
/* --device: sets the config key "device" of every run (what --dry-run and runs.config_json show).
 * Not part of any task key: a task done on one device is reused on another (docs/SWEEPS.md). */
int sched_cli_apply(const sched_cli *o, sweep *sw);

/* The whole of `cgvlm sweep` / `cgvlm run` after validation (also `cgvlm bench sched`): opens or
 * creates the db, records the sweep, starts the backend (local: workers <= 0 gives one slot per
 * GPU, else one per CPU core; --device cpu never uses GPU slots, --device cuda needs a GPU),
 * runs it with Ctrl-C/SIGTERM as a graceful stop (twice: hard), releases the sweep.
 * STAGE_CANCELLED when stopped. */
int sched_execute(const sweep *sw, const sched_cli *o, int progress);

#endif
