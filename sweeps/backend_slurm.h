/* backend_slurm.h: the Slurm backend (one batch job per task attempt) and the job's side of it.
 *
 * The scheduler (sched.c) claims an attempt in the db as usual; backend_slurm.c writes the
 * attempt's spec (<workspace>/slurm/KEY.ATTEMPT.json: everything the stage needs, so the job
 * never opens the db) and a two-line batch script, and submits it with sbatch, holding it with
 * --dependency=afterok:<jobs> on its upstream attempts still queued or running in Slurm. The job
 * runs `cgvlm task --spec FILE` (task_slurm.c): it writes its metrics and, last, one "outcome"
 * record to the task's JSON-lines journal on the shared filesystem (<workspace>/work/KEY/
 * metrics.jsonl) and nothing else but the artifact. The ONE scheduler process polls squeue,
 * and when a job ends it ingests the journal and the outcome into the db in one fenced
 * transaction (journal_ingest.c): no SQLite locking ever crosses the network filesystem.
 */
#ifndef CG_BACKEND_SLURM_H
#define CG_BACKEND_SLURM_H

#include "sweeps/backend.h"
#include "sweeps/sweep.h"

#include <stdint.h>

/* `cgvlm sweep|run --backend slurm [--partition P] [--account A] [--slurm-arg ARG ...]`. */
typedef struct {
    int enabled;
    const char *partition, *account;
    const char *args[32];
    int nargs;
} slurm_opts;

/* Set by the command line (sched_cli_option: `cgvlm sweep`, `cgvlm run`, `cgvlm bench sched`);
 * read by sched_execute. */
extern slurm_opts sched_slurm;

/* Opens the backend: refuses (CG_EUSER, one line) when sbatch is not on PATH or the partition is
 * unknown. time_limit > 0 overrides the sweep's limits (--time of every job). device (NULL: the
 * run configs') is --device: the spec's device for every job ("auto": cuda when the kind's
 * resources give GPUs, else cpu); a job whose device is cuda gets --gres=gpu even without them. */
int backend_slurm_open(const char *db_path, const char *workspace, const sweep *sw, double time_limit,
                       const char *device, sched_backend **out);

/* `cgvlm cancel` of a sweep whose scheduler is gone: scancels the Slurm jobs of its running tasks
 * (*ncancelled of them); the next run of the sweep records them cancelled and resumes. */
int slurm_cancel_orphans(void *sqlite_db, const char *name, int *ncancelled);

/* Seconds between a job's progress writes (work/KEY/progress.json) and the scheduler's reads. */
#define SLURM_PROGRESS_S 2.0

/* The job's side: runs the attempt described by the spec file; exit status TASK_* (task.h). While
 * the stage runs it rewrites work/KEY/progress.json (fraction, last loss and tokens/s). */
int task_spec_main(const char *spec_path);

/* ---------------------------------------------------------------- how an ended job is read */

/* The outcome record the task process appends to its journal (absent: it never wrote one). */
typedef struct {
    int present;
    char state[16];       /* done, failed, cancelled */
    char *error;          /* may be NULL */
    int exit_status;
    char host[128];
    double started, ended;
    char *artifact;       /* "artifacts/KEY" when done */
    int64_t size;
    char sha256[65];
} slurm_outcome;

/* What the scheduler records for an ended job. */
typedef struct {
    const char *state;    /* done, failed, crashed, cancelled, or queued (held on an upstream that failed) */
    char *error;          /* malloc'ed, NULL for done */
    int exit_status;      /* -1: none */
    int journal_refused;  /* set by slurm_ingest: the journal was garbled or foreign; recorded
                           * failed with the reason (error) and exit status TASK_BAD_INPUT */
} slurm_end;

/* The state mapping (docs/SLURM.md): Slurm's final JobState, Reason and ExitCode "code:signal",
 * the task's own outcome, and what the scheduler asked. Pure: tested without a cluster. */
void slurm_map_end(const char *job_id, const char *job_state, const char *reason, int exit_code, int signal,
                   const slurm_outcome *oc, int cancel_requested, int upstream_failed, slurm_end *out);

/* Reads attempt `attempt`'s outcome from a journal (the last such record; a torn line is ignored). */
int slurm_read_outcome(const char *journal, int attempt, slurm_outcome *out);
void slurm_outcome_free(slurm_outcome *oc);

/* Records an ended attempt in the db in one transaction, fenced on (state running, attempts =
 * attempt): task and attempt rows, the journal's metrics (store_ingest_journal), the artifact
 * row. *applied = 0 when the attempt had been taken over. A journal that cannot be ingested
 * turns *end into what was recorded instead: failed, its error (replaced, malloc'ed) saying why,
 * journal_refused = 1. */
int slurm_ingest(void *sqlite_db, int64_t task_id, int attempt, const char *key, const char *journal,
                 slurm_end *end, const slurm_outcome *oc, int *applied);

#endif
