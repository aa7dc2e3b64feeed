/* sched.h: the task scheduler: recording a sweep (runs, deduplicated tasks, deps) in the results
 * db, owning it (one scheduler per sweep), and running its tasks in dependency order on a backend
 * with retries, time limits, crash recovery and graceful cancellation.
 *
 * Task lifecycle (db/schema.sql; each transition is named after the function making it):
 *   queued/failed/crashed/cancelled --sched_claim--> running (attempts+1, a task_attempts row;
 *       pid = the scheduler's until the task process fences in with its own)
 *   running --task_finish (task.c)--> done | failed | cancelled   (recorded by the task process)
 *   running --sched_reap--> crashed   (the process ended without recording: signal, exit)
 *   running --sched_reap--> failed    (killed at its time limit: "time limit of N s exceeded")
 *   running --sched_recover--> crashed (found running with no live process: its scheduler died;
 *       the attempt is recorded 'interrupted' and does not count against max_attempts)
 *   failed/crashed --sched_retry--> queued (while this invocation's failures < max_attempts)
 * Attempts: tasks.attempts counts every start. The retry budget counts failures and crashes of
 * the current invocation only: re-running the sweep command retries failed tasks afresh.
 * Cancellations (Ctrl-C, `cgvlm cancel`, a dead scheduler) never consume the budget.
 */
#ifndef CG_SCHED_H
#define CG_SCHED_H

#include "sweeps/backend.h"
#include "sweeps/sweep.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>

/* This machine's name (cached). */
const char *sched_hostname(void);
/* 1 when pid is a live (not zombie) process on this machine. */
int sched_proc_alive(int64_t pid);

/* Records the sweep, its runs (+ run_params) and their tasks (deduplicated by key: a task done
 * before, by any sweep, is reused), deps and run_tasks, and takes ownership of the sweep for this
 * process, all in one transaction. Refuses (CG_EUSER, nothing changed) when another live
 * scheduler owns the sweep, or when a sweep of that name exists with another definition. */
int sched_record(sqlite3 *db, const sweep *sw, const char *code_version, int64_t *sweep_id);
/* Gives the sweep's ownership up (only if this process holds it). */
void sched_release(sqlite3 *db, int64_t sweep_id);

typedef struct {
    const char *db_path;
    const char *workspace;
    int max_attempts;          /* failures + crashes allowed per task in this invocation */
    double time_limit;         /* seconds for every task (overrides the sweep's); 0 = the sweep's */
    const sweep *sw;           /* per-kind time limits; may be NULL */
    int progress;              /* a progress line on stderr */
    volatile sig_atomic_t *stop; /* 1: graceful stop (tasks checkpoint, 'cancelled'); 2: hard */
} sched_opts;

typedef struct {
    int tasks, done, failed, blocked, cancelled, launched;
    double wall_s;
} sched_summary;

/* Runs the sweep's tasks to the end (or until *stop). CG_OK when every task is done; CG_EFAIL
 * naming the failures otherwise; STAGE_CANCELLED (3) when stopped. */
int sched_run(sqlite3 *db, int64_t sweep_id, sched_backend *be, const sched_opts *o, sched_summary *out);

/* sched_execute, the whole of `cgvlm sweep` and `cgvlm run`, is in sched_cli.h. */

/* Signals the scheduler owning `name` to stop gracefully (local: SIGTERM to its pid). */
int sched_cancel_sweep(sqlite3 *db, const char *name);

#endif
