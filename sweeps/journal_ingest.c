/* journal_ingest.c: how the scheduler reads a Slurm job that ended: the outcome record its task
 * process left in the journal, the mapping of Slurm's final state onto task states, and the one
 * fenced transaction that records it all (see backend_slurm.h).
 *
 * Ingestion is idempotent: the outcome is applied only while the task is still 'running' with
 * that attempt (a second ingestion changes nothing), metrics replace the task's earlier ones
 * wholesale (db/sink.h store_ingest_journal, the one ingestion of every backend), and once a done task is recorded its work dir, journal
 * included, is removed, as with the local backend. A job cancelled before it started because
 * its upstream attempt failed is no attempt: its row goes and the task is queued again. */
#define _GNU_SOURCE
#include "sweeps/backend_slurm.h"
#include "db/sink.h"
#include "db/store.h"
#include "sweeps/task.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

void slurm_outcome_free(slurm_outcome *oc) {
    free(oc->error);
    free(oc->artifact);
    memset(oc, 0, sizeof *oc);
}

static void copy_str(char *dst, size_t cap, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(dst, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int slurm_read_outcome(const char *journal, int attempt, slurm_outcome *out) {
    memset(out, 0, sizeof *out);
    if (!cg_file_exists(journal)) return CG_OK;
    char *text;
    size_t len;
    int rc = cg_read_file(journal, &text, &len);
    if (rc) return rc;
    /* whole lines only, from the end: the outcome is the task's last record */
    char *end = memrchr(text, '\n', len);
    while (end && end > text) {
        *end = 0;
        char *start = memrchr(text, '\n', (size_t)(end - text));
        char *line = start ? start + 1 : text;
        if (strstr(line, "\"t\":\"outcome\"")) {
            cJSON *o = cJSON_Parse(line);
            if (o && num(o, "attempt") == attempt) {
                out->present = 1;
                copy_str(out->state, sizeof out->state, o, "state");
                copy_str(out->host, sizeof out->host, o, "host");
                copy_str(out->sha256, sizeof out->sha256, o, "sha256");
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
                if (cJSON_IsString(e)) out->error = cg_strdup(e->valuestring);
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "artifact");
                if (cJSON_IsString(a)) out->artifact = cg_strdup(a->valuestring);
                out->exit_status = (int)num(o, "exit");
                out->started = num(o, "started");
                out->ended = num(o, "ended");
                out->size = (int64_t)num(o, "size");
            }
            cJSON_Delete(o);
            if (out->present) break;
        }
        end = start;
    }
    free(text);
    return CG_OK;
}

static int is(const char *a, const char *b) { return a && !strcmp(a, b); }

void slurm_map_end(const char *job_id, const char *job_state, const char *reason, int exit_code, int signal,
                   const slurm_outcome *oc, int cancel_requested, int upstream_failed, slurm_end *out) {
    const char *why = reason && *reason && strcmp(reason, "None") ? reason : NULL;
    out->exit_status = signal ? 128 + signal : exit_code;
    out->error = NULL;
    out->journal_refused = 0;
    if (is(job_state, "TIMEOUT")) {
        /* the task got SIGTERM at the limit and may have written 'cancelled': the limit wins */
        out->state = "failed";
        out->error = cg_fmt("time limit exceeded (Slurm job %s: TIMEOUT); its checkpoint is kept", job_id);
    } else if (upstream_failed || (is(job_state, "CANCELLED") && is(why, "DependencyNeverSatisfied"))) {
        out->state = "queued";
        out->error = cg_fmt("not run: an upstream task did not finish (Slurm job %s cancelled); "
                            "submitted again after it", job_id);
        out->exit_status = -1;
    } else if (is(job_state, "NODE_FAIL") || is(job_state, "PREEMPTED") || is(job_state, "OUT_OF_MEMORY") ||
               is(job_state, "BOOT_FAIL") || is(job_state, "DEADLINE")) {
        out->state = "crashed";
        out->error = cg_fmt("Slurm job %s ended %s%s%s", job_id, job_state, why ? ": " : "", why ? why : "");
    } else if (oc && oc->present) {
        out->state = is(oc->state, "done") ? "done" : is(oc->state, "cancelled") ? "cancelled" : "failed";
        if (!is(out->state, "done")) out->error = cg_strdup(oc->error ? oc->error : out->state);
        out->exit_status = oc->exit_status;
    } else if (is(job_state, "CANCELLED") || cancel_requested) {
        out->state = "cancelled";
        out->error = cg_fmt("cancelled (Slurm job %s%s)", job_id,
                            cancel_requested ? "" : " was cancelled outside cgvlm");
        if (!signal && !exit_code) out->exit_status = -1;
    } else if (signal || (is(job_state, "FAILED") && is(why, "JobLaunchFailure"))) {
        /* kill -9 of the batch step reads as "JobLaunchFailure" 0:9 */
        int sig = signal ? signal : SIGKILL;
        out->state = "crashed";
        out->error = cg_fmt("killed by signal %d (%s) (Slurm job %s, %s)", sig, strsignal(sig), job_id,
                            job_state ? job_state : "gone");
        out->exit_status = 128 + sig;
    } else if (exit_code >= 128 + 1 && exit_code <= 128 + 64) {
        out->state = "crashed";
        out->error = cg_fmt("killed by signal %d (%s) (Slurm job %s, exit code %d)", exit_code - 128,
                            strsignal(exit_code - 128), job_id, exit_code);
    } else if (!job_state) {
        out->state = "crashed";
        out->error = cg_fmt("Slurm job %s is gone from Slurm without a recorded result", job_id);
        out->exit_status = -1;
    } else {
        out->state = "crashed";
        out->error = cg_fmt("exited with status %d without recording a result (Slurm job %s, %s)", exit_code,
                            job_id, job_state);
    }
}

static int step_done(sqlite3 *db, sqlite3_stmt *st) {
    int r = sqlite3_step(st);
    return r == SQLITE_DONE || r == SQLITE_ROW ? CG_OK : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK
               ? CG_OK
               : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
}

int slurm_ingest(void *sqlite_db, int64_t task_id, int attempt, const char *key, const char *journal,
                 slurm_end *end, const slurm_outcome *oc, int *applied) {
    sqlite3 *db = sqlite_db;
    sqlite3_stmt *st = NULL;
    int done = is(end->state, "done"), requeue = is(end->state, "queued");
    end->journal_refused = 0;
    double now = cg_wall_time();
    *applied = 0;
    int rc = store_begin(db);
    if (rc) return rc;
    if ((rc = prep(db, "UPDATE tasks SET state = ?, ended_at = ?, error = ?, artifact_key = ?, "
                       "progress = CASE WHEN ? THEN 1 ELSE progress END, host = COALESCE(?, host), "
                       "started_at = COALESCE(?, started_at) WHERE task_id = ? AND attempts = ? AND state = 'running'",
                   &st)))
        goto out;
    sqlite3_bind_text(st, 1, end->state, -1, SQLITE_STATIC);
    if (requeue) sqlite3_bind_null(st, 2);
    else sqlite3_bind_double(st, 2, oc && oc->present && oc->ended > 0 ? oc->ended : now);
    if (end->error) sqlite3_bind_text(st, 3, end->error, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 3);
    if (done) sqlite3_bind_text(st, 4, key, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 4);
    sqlite3_bind_int(st, 5, done);
    if (oc && oc->present && oc->host[0]) sqlite3_bind_text(st, 6, oc->host, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 6);
    if (oc && oc->present && oc->started > 0) sqlite3_bind_double(st, 7, oc->started);
    else sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, task_id);
    sqlite3_bind_int(st, 9, attempt);
    if ((rc = step_done(db, st)) || sqlite3_changes(db) == 0) goto out;
    *applied = 1;
    sqlite3_finalize(st);
    st = NULL;
    if (requeue) {   /* the job never started: not an attempt; the next claim reuses its number */
        char *sql = cg_fmt("UPDATE tasks SET attempts = attempts - 1, job_id = NULL WHERE task_id = %lld; "
                           "DELETE FROM task_attempts WHERE task_id = %lld AND attempt = %d",
                           (long long)task_id, (long long)task_id, attempt);
        rc = store_exec(db, sql, "cannot requeue the task");
        free(sql);
        goto out;
    }
    /* every outcome keeps what the task reported, a crash's metrics included (a savepoint in
     * this transaction); a journal refused as garbled or foreign fails the attempt, a done one
     * too, with the reason, and not worth retrying: the next attempt appends to the same file */
    rc = store_ingest_journal(db, task_id, journal, NULL);
    if (rc == CG_EUSER) {
        free(end->error);
        end->error = cg_fmt("its results cannot be recorded: %s", cg_errmsg());
        end->state = "failed";
        end->exit_status = TASK_BAD_INPUT;
        end->journal_refused = 1;
        done = 0;
        cg_err_clear();
        char *sql = cg_fmt("UPDATE tasks SET state = 'failed', artifact_key = NULL WHERE task_id = %lld", (long long)task_id);
        rc = store_exec(db, sql, "cannot record the task");
        free(sql);
        if (rc == CG_OK && (rc = prep(db, "UPDATE tasks SET error = ? WHERE task_id = ?", &st)) == CG_OK) {
            sqlite3_bind_text(st, 1, end->error, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, task_id);
            rc = step_done(db, st);
            sqlite3_finalize(st);
            st = NULL;
        }
    }
    if (rc) goto out;
    if ((rc = prep(db, "UPDATE task_attempts SET state = ?, ended_at = ?, exit_status = ?, error = ?, "
                       "host = COALESCE(?, host), started_at = COALESCE(?, started_at) WHERE task_id = ? AND attempt = ?",
                   &st)))
        goto out;
    sqlite3_bind_text(st, 1, end->state, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, oc && oc->present && oc->ended > 0 ? oc->ended : now);
    if (end->exit_status >= 0) sqlite3_bind_int(st, 3, end->exit_status);
    else sqlite3_bind_null(st, 3);
    if (end->error) sqlite3_bind_text(st, 4, end->error, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 4);
    if (oc && oc->present && oc->host[0]) sqlite3_bind_text(st, 5, oc->host, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 5);
    if (oc && oc->present && oc->started > 0) sqlite3_bind_double(st, 6, oc->started);
    else sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, task_id);
    sqlite3_bind_int(st, 8, attempt);
    if ((rc = step_done(db, st))) goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (done) {
        if ((rc = prep(db, "INSERT OR REPLACE INTO artifacts (key, task_id, path, size, sha256, created_at) "
                           "VALUES (?,?,?,?,?,?)", &st)))
            goto out;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, task_id);
        sqlite3_bind_text(st, 3, oc->artifact ? oc->artifact : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, oc->size);
        sqlite3_bind_text(st, 5, oc->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, now);
        rc = step_done(db, st);
    }
out:
    sqlite3_finalize(st);
    if (rc == CG_OK) rc = store_commit(db);
    if (rc) {
        store_rollback(db);
        *applied = 0;
    }
    return rc;
}
