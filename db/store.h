/* store.h: the results database: opening (WAL, foreign keys, busy timeout), schema versioning
 * with forward migrations, and the refusal to touch a database written by a newer cgvlm.
 * The schema itself is db/schema.sql (compiled in). */
#ifndef CG_STORE_H
#define CG_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 2
/* How long a writer waits for the write lock (busy handler, then retries) before failing. */
#define STORE_BUSY_MS 120000

enum {
    STORE_READONLY = 1,  /* open read-only (queries, reports); never creates or migrates */
    STORE_CREATE = 2,    /* create the file if missing */
};

/* Opens (and, unless read-only, creates/migrates) the results db at path. Errors: CG_EUSER for
 * a missing file (read-only), a file that is not an SQLite database, or one from a newer cgvlm;
 * CG_EFAIL for I/O. A refused file is left untouched. */
int store_open(const char *path, int flags, sqlite3 **out);
void store_close(sqlite3 *db);

/* The default db path: $CGVLM_DB, else "results.db". */
const char *store_default_path(void);

/* Runs SQL without results; CG_EFAIL with the SQLite message wrapped with `what`. */
int store_exec(sqlite3 *db, const char *sql, const char *what);
/* sqlite3_errmsg, with the operating system's reason when there is one ("disk I/O error (File
 * too large)"); in thread-local storage, valid until the next call. */
const char *store_errmsg(sqlite3 *db);
/* store_exec, retried with backoff while SQLite answers SQLITE_BUSY/LOCKED (up to STORE_BUSY_MS). */
int store_exec_retry(sqlite3 *db, const char *sql, const char *what);
/* BEGIN IMMEDIATE / COMMIT (both retried while busy) / ROLLBACK helpers. */
int store_begin(sqlite3 *db);
int store_commit(sqlite3 *db);
void store_rollback(sqlite3 *db);

/* ---- records (db/record.c): small helpers for what a lone `cgvlm run` must write. Each is one
 * transaction of its own, or part of the caller's when one is open. The scheduler (sweeps/)
 * writes its own task transitions. ---- */

/* This process's environment (code version, compiler, BLAS, CUDA runtime/driver/device, host,
 * OS), inserted once and shared by every task that ran in the same one. gpu = 0: the device is
 * recorded as "cpu" without asking CUDA (which would start a CUDA context, ~0.5 s and GPU memory,
 * in a process that computes on the CPU); 1: the GPUs as `cgvlm env` describes them. */
int store_env_record(sqlite3 *db, int gpu, int64_t *env_id);

/* A run (grid point): found by (sweep, name), else created, with its axis values (params_json,
 * a flat object {"align.lambda":1,...}) copied into run_params. sweep_id 0 = a lone run, found
 * again only when name and config are the same. lambda/fraction NAN and size NULL = unknown. */
int store_run_create(sqlite3 *db, int64_t sweep_id, const char *name, const char *config_json,
                     const char *params_json, int64_t seed, double lambda, double fraction,
                     const char *size, int64_t *run_id);

/* A task by its content key: found, else created 'queued' with its kind and canonical config. */
int store_task_upsert(sqlite3 *db, const char *key, const char *kind, const char *config_json,
                      int64_t *task_id);
/* Links a task to a run (idempotent). */
int store_run_task_link(sqlite3 *db, int64_t run_id, int64_t task_id);

/* Deletes the task's step metrics at step >= from_step. Call it when a task starts over (0) or
 * resumes from a checkpoint taken at from_step, so that steps logged again are not doubled. */
int store_task_reset_metrics(sqlite3 *db, int64_t task_id, int64_t from_step);

/* A lone run's task transitions (see the lifecycle in schema.sql): store_task_begin makes it
 * running (attempts + 1, host, pid, env, a task_attempts row); store_task_end makes it done
 * (error NULL) or failed (error text), closing the attempt. */
int store_task_begin(sqlite3 *db, int64_t task_id, int64_t env_id);
int store_task_end(sqlite3 *db, int64_t task_id, const char *error);

#endif
