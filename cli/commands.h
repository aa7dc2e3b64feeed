/* commands.h: every subcommand's entry point. Each is defined in the file of the area that owns
 * it; argv[0] is the subcommand's name. The return value is the exit status (util.h codes). */
#ifndef CG_COMMANDS_H
#define CG_COMMANDS_H

int cmd_world(int argc, char **argv);    /* experiments/world_cmd.c */
int cmd_run(int argc, char **argv);      /* experiments/run_cmd.c */
int cmd_sweep(int argc, char **argv);    /* sweeps/sweep_cmd.c */
int cmd_status(int argc, char **argv);   /* sweeps/sweep_cmd.c */
int cmd_cancel(int argc, char **argv);   /* sweeps/sweep_cmd.c */
int cmd_task(int argc, char **argv);     /* sweeps/sweep_cmd.c: run one task (workers, Slurm jobs) */
int cmd_query(int argc, char **argv);    /* db/db_cmd.c */
int cmd_runs(int argc, char **argv);     /* db/db_cmd.c */
int cmd_show(int argc, char **argv);     /* db/db_cmd.c */
int cmd_compare(int argc, char **argv);  /* db/db_cmd.c */
int cmd_report(int argc, char **argv);   /* reports/report_cmd.c */
int cmd_fetch(int argc, char **argv);    /* evaluators/fetch_cmd.c */
int cmd_env(int argc, char **argv);      /* cli/env.c */
int cmd_bench(int argc, char **argv);    /* cli/bench.c */

/* Benchmarks behind `cgvlm bench WHAT`; each prints one JSON object per line with --json. */
int bench_world(int argc, char **argv);  /* experiments/world_cmd.c */
int bench_train(int argc, char **argv);  /* core/bench_train.c */
int bench_db(int argc, char **argv);     /* db/db_cmd.c */
int bench_sched(int argc, char **argv);  /* sweeps/sweep_cmd.c */
int bench_fetch(int argc, char **argv);  /* evaluators/fetch_cmd.c */

/* For commands whose issue is still open: one line saying so, exit status 2. */
int cg_not_yet(int argc, char **argv, const char *what, const char *issue);

#endif
