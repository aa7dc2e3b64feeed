/* task.c: the task process (one attempt of one task) and the local worker's fork server (see
 * task.h). */
#define _GNU_SOURCE
#include "sweeps/task.h"
#include "core/metrics.h"
#include "db/store.h"
#include "experiments/stage.h"
#include "sweeps/sched.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/util.h"

#include "db/sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t task_cancel = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    task_cancel = 1;
}

/* ---------------------------------------------------------------- artifact digest */

static void list_files(const char *root, const char *rel, char ***names, int *n, int *cap) {
    char *dir = rel[0] ? cg_path_join(root, rel) : cg_strdup(root);
    DIR *d = opendir(dir);
    free(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *r = rel[0] ? cg_fmt("%s/%s", rel, e->d_name) : cg_strdup(e->d_name);
        char *full = cg_path_join(root, r);
        if (cg_is_dir(full)) {
            list_files(root, r, names, n, cap);
            free(r);
        } else {
            if (*n == *cap) *names = cg_realloc(*names, sizeof **names * (size_t)(*cap = *cap ? *cap * 2 : 16));
            (*names)[(*n)++] = r;
        }
        free(full);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* sha256 over "relpath\0filesha\n" of every file, sorted; size = total bytes. */
static int artifact_digest(const char *dir, int64_t *size, char hex[65]) {
    char **names = NULL;
    int n = 0, cap = 0, rc = CG_OK;
    list_files(dir, "", &names, &n, &cap);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    cg_sha256 s;
    cg_sha256_init(&s);
    *size = 0;
    for (int i = 0; i < n; i++) {
        char *full = cg_path_join(dir, names[i]), fhex[65];
        uint64_t fsize = 0;
        if (rc == CG_OK) rc = cg_sha256_file(full, fhex, &fsize);
        if (rc == CG_OK) {
            cg_sha256_update(&s, names[i], strlen(names[i]) + 1);
            cg_sha256_update(&s, fhex, 64);
            cg_sha256_update(&s, "\n", 1);
            *size += (int64_t)fsize;
        }
        free(full);
        free(names[i]);
    }
    free(names);
    uint8_t dig[32];
    cg_sha256_final(&s, dig);
    cg_sha256_to_hex(dig, hex);
    return rc;
}

/* ---------------------------------------------------------------- the lazy journal */

/* The task's metrics journal, created on the first record: a stage that logs nothing (noop)
 * costs no file, no fsync and no ingestion. */
typedef struct {
    metrics_sink self;
    metrics_sink *inner;
    char *path;
} lazy_sink;

static int lazy_open(lazy_sink *l) {
    if (l->inner) return CG_OK;
    char *dir = cg_strndup(l->path, (size_t)(strrchr(l->path, '/') - l->path));
    int rc = cg_mkdir_p(dir);
    free(dir);
    return rc ? rc : metrics_journal_open(l->path, &l->inner);
}
static int lazy_scalar(void *ctx, const char *name, int64_t step, double value) {
    int rc = lazy_open(ctx);
    return rc ? rc : metrics_scalar(((lazy_sink *)ctx)->inner, name, step, value);
}
static int lazy_eval(void *ctx, const char *bench, const char *metric, const char *cat, double v, int64_t n) {
    int rc = lazy_open(ctx);
    return rc ? rc : metrics_eval(((lazy_sink *)ctx)->inner, bench, metric, cat, v, n);
}
static int lazy_pred(void *ctx, const char *bench, const char *method, const char *qid, const char *cat,
                     const char *skill, int chosen, int answer, const char *scores) {
    int rc = lazy_open(ctx);
    return rc ? rc : metrics_prediction(((lazy_sink *)ctx)->inner, bench, method, qid, cat, skill, chosen, answer, scores);
}
static int lazy_artifact(void *ctx, const char *key, const char *path, int64_t size, const char *sha) {
    int rc = lazy_open(ctx);
    return rc ? rc : metrics_artifact(((lazy_sink *)ctx)->inner, key, path, size, sha);
}
static int lazy_flush(void *ctx) { return metrics_flush(((lazy_sink *)ctx)->inner); }
static void lazy_close(void *ctx) {
    lazy_sink *l = ctx;
    metrics_close(l->inner);
    free(l->path);
    free(l);
}

static metrics_sink *lazy_journal(const char *path) {
    lazy_sink *l = cg_calloc(1, sizeof *l);
    l->path = cg_strdup(path);
    l->self = (metrics_sink){l, lazy_scalar, lazy_eval, lazy_pred, lazy_artifact, lazy_flush, lazy_close};
    return &l->self;
}

/* ---------------------------------------------------------------- the task process */

typedef struct {
    sqlite3 *db;
    int64_t task_id;
    int attempt;
    double last;
} beat_ctx;

static void heartbeat(void *arg, double fraction) {
    beat_ctx *b = arg;
    double now = cg_mono_time();
    if (now - b->last < 1.0) return;
    b->last = now;
    char *sql = cg_fmt("UPDATE tasks SET heartbeat_at = %.3f, progress = %.4f WHERE task_id = %lld AND attempts = %d "
                       "AND state = 'running'", cg_wall_time(), fraction, (long long)b->task_id, b->attempt);
    store_exec(b->db, sql, "heartbeat");   /* a missed beat is not a failure */
    cg_err_clear();
    free(sql);
}

/* The device an attempt computes on: the invocation's --device (forced) when it gave one, else
 * the run config's; "auto" is the worker slot's ("cuda" on a GPU slot, else "cpu"). */
static const char *run_device(const cJSON *run_cfg, const char *slot_device, const char *forced) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(run_cfg, "device");
    const char *want = forced && *forced ? forced : cJSON_IsString(d) ? d->valuestring : "auto";
    if (strcmp(want, "auto")) return want;
    return slot_device && *slot_device ? slot_device : "cpu";
}

int task_pin_gpu(const char *device, const char **stage_device) {
    *stage_device = device;
    if (strncmp(device, "cuda:", 5)) return CG_OK;
    int n;
    int rc = cg_parse_int(device + 5, "device", 0, 1023, &n);
    if (rc) return rc;
    /* the GPUs this process may use, numbered as the scheduler (local: CGVLM_GPU_LIST, its
     * CUDA_VISIBLE_DEVICES before the slot was pinned) or Slurm (the job's) numbers them */
    const char *list = getenv("CGVLM_GPU_LIST");
    if (!list) list = getenv("CUDA_VISIBLE_DEVICES");
    char pick[64];
    if (!sched_gpu_pick(list, n, pick, sizeof pick)) {
        int last = 0;
        for (const char *q = list; *q; q++) last += *q == ',';
        return cg_err(CG_EUSER, "device '%s': only the GPUs '%s' are visible (CUDA_VISIBLE_DEVICES); use cuda:0 to "
                      "cuda:%d", device, list, last);
    }
    setenv("CUDA_VISIBLE_DEVICES", pick, 1);   /* before anything initialises CUDA in this process */
    *stage_device = "cuda";
    return CG_OK;
}

/* Claims for standalone use (attempt 0): the same transition as the scheduler's sched_claim. */
static int self_claim(sqlite3 *db, int64_t id, int *attempt) {
    char *sql = cg_fmt("UPDATE tasks SET state = 'running', attempts = attempts + 1, host = '%s', pid = %d, started_at = %.3f, "
                       "ended_at = NULL, heartbeat_at = %.3f, progress = 0, error = NULL WHERE task_id = %lld "
                       "AND state IN ('queued','failed','crashed','cancelled')",
                       sched_hostname(), (int)getpid(), cg_wall_time(), cg_wall_time(), (long long)id);
    int rc = store_begin(db);
    if (rc == CG_OK) rc = store_exec(db, sql, "cannot claim the task");
    free(sql);
    if (rc == CG_OK && sqlite3_changes(db) == 0)
        rc = cg_err(CG_EUSER, "the task is done or already running; see 'cgvlm status'");
    sqlite3_stmt *st = NULL;
    if (rc == CG_OK && sqlite3_prepare_v2(db, "SELECT attempts FROM tasks WHERE task_id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW) *attempt = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sql = cg_fmt("INSERT OR REPLACE INTO task_attempts (task_id, attempt, state, host, pid, started_at) "
                     "VALUES (%lld, %d, 'running', '%s', %d, %.3f)", (long long)id, *attempt, sched_hostname(),
                     (int)getpid(), cg_wall_time());
        rc = store_exec(db, sql, "cannot record the attempt");
        free(sql);
    }
    if (rc == CG_OK) rc = store_commit(db);
    if (rc) store_rollback(db);
    return rc;
}

/* The fence: this process still holds attempt `attempt`. */
static int fence(sqlite3 *db, int64_t id, int attempt, int *held) {
    char *sql = cg_fmt("UPDATE tasks SET pid = %d, host = '%s', heartbeat_at = %.3f WHERE task_id = %lld AND "
                       "attempts = %d AND state = 'running'; UPDATE task_attempts SET pid = %d WHERE task_id = %lld "
                       "AND attempt = %d", (int)getpid(), sched_hostname(), cg_wall_time(), (long long)id, attempt,
                       (int)getpid(), (long long)id, attempt);
    int rc = store_exec(db, sql, "cannot fence the task");
    free(sql);
    /* sqlite3_changes() reports the last statement: check the first one's effect by re-reading */
    sqlite3_stmt *st;
    *held = 0;
    if (rc == CG_OK && sqlite3_prepare_v2(db, "SELECT pid = ? AND state = 'running' AND attempts = ? FROM tasks WHERE task_id = ?",
                                          -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, (int)getpid());
        sqlite3_bind_int(st, 2, attempt);
        sqlite3_bind_int64(st, 3, id);
        *held = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return rc;
}

/* task_finish: the fenced transition out of 'running' (done with artifact + metrics, failed,
 * cancelled). *held = 0 when the attempt had been taken over: nothing is written. */
static int finish(sqlite3 *db, int64_t id, int attempt, const char *state, const char *error, int exit_status,
                  const char *key, const char *artifact_rel, int64_t size, const char *sha, const char *journal,
                  int *held) {
    int rc = store_begin(db);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    double now = cg_wall_time();
    *held = 0;
    if ((rc = sqlite3_prepare_v2(db, "UPDATE tasks SET state = ?, ended_at = ?, error = ?, progress = CASE WHEN ? THEN 1 ELSE progress END, "
                                     "artifact_key = ? WHERE task_id = ? AND attempts = ? AND state = 'running' AND pid = ?",
                                 -1, &st, NULL)) != SQLITE_OK) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
        goto out;
    }
    int done = !strcmp(state, "done");
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now);
    if (error) sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_int(st, 4, done);
    if (done) sqlite3_bind_text(st, 5, key, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 5);
    sqlite3_bind_int64(st, 6, id);
    sqlite3_bind_int(st, 7, attempt);
    sqlite3_bind_int(st, 8, (int)getpid());
    rc = sqlite3_step(st) == SQLITE_DONE ? CG_OK : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    st = NULL;
    if (rc || sqlite3_changes(db) == 0) goto out;
    *held = 1;
    if (sqlite3_prepare_v2(db, "UPDATE task_attempts SET state = ?, ended_at = ?, exit_status = ?, error = ? "
                               "WHERE task_id = ? AND attempt = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 2, now);
        sqlite3_bind_int(st, 3, exit_status);
        if (error) sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
        else sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, id);
        sqlite3_bind_int(st, 6, attempt);
        rc = sqlite3_step(st) == SQLITE_DONE ? CG_OK : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        st = NULL;
    }
    /* every outcome keeps its metrics; a journal that cannot be ingested fails a done attempt
     * (the caller records it failed with the reason) but not the recording of another outcome */
    if (rc == CG_OK && journal && (rc = store_ingest_journal(db, id, journal, NULL)) && !done) {
        fprintf(stderr, "cgvlm task %.12s: %s\n", key, cg_errmsg());
        cg_err_clear();
        rc = CG_OK;
    }
    if (rc == CG_OK && done) {
        if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO artifacts (key, task_id, path, size, sha256, created_at) "
                                   "VALUES (?,?,?,?,?,?)", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, id);
            sqlite3_bind_text(st, 3, artifact_rel, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, size);
            sqlite3_bind_text(st, 5, sha, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 6, now);
            rc = sqlite3_step(st) == SQLITE_DONE ? CG_OK : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
            sqlite3_finalize(st);
            st = NULL;
        }
    }
out:
    sqlite3_finalize(st);
    if (rc == CG_OK) rc = store_commit(db);
    if (rc) {
        store_rollback(db);
        *held = 0;
    }
    return rc;
}

/* mkdir with the parents only when missing: one syscall in the common case. */
static int make_dir(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return CG_OK;
    return cg_mkdir_p(path);
}

/* Publishes staging as artifacts/<key> by one rename. An artifact already there was published
 * complete by an earlier attempt (rename is atomic): keep it. */
static int publish(const char *staging, const char *final) {
    int ok = rename(staging, final) == 0;
    if (!ok && errno == ENOENT) {   /* the first artifact of this workspace */
        char *dir = cg_strndup(final, (size_t)(strrchr(final, '/') - final));
        int rc = cg_mkdir_p(dir);
        free(dir);
        if (rc) return rc;
        ok = rename(staging, final) == 0;
    }
    if (ok) {
        char *dir = cg_strndup(final, (size_t)(strrchr(final, '/') - final));
        cg_fsync_dir(dir);
        free(dir);
        return CG_OK;
    }
    if ((errno == ENOTEMPTY || errno == EEXIST) && cg_is_dir(final)) {
        cg_rm_rf(staging);
        return CG_OK;
    }
    return cg_err(CG_EFAIL, "cannot publish artifact '%s': %s", final, strerror(errno));
}

int task_main(const char *db_path, const char *workspace, const char *key, int attempt, int threads,
              const char *slot_device, const char *forced_device) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    cJSON *stage_cfg = NULL, *run_cfg = NULL;
    char *kind = NULL, *work = NULL, *staging = NULL, *final = NULL, *journal = NULL, *arts = NULL;
    char *up[EXP_NSTAGES] = {0};
    metrics_sink *sink = NULL, *journal_sink = NULL, *live_sink = NULL, *tee_sink = NULL;
    int64_t id = -1;
    int rc = store_open(db_path, 0, &db), result = TASK_FAILED, held = 0, fenced = 0;
    if (rc) goto out;
    if (sqlite3_prepare_v2(db, "SELECT task_id, kind, config_json FROM tasks WHERE key = ?", -1, &st, NULL)) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = cg_err(CG_EUSER, "no task with key '%s' in results db '%s'", key, db_path);
        goto out;
    }
    id = sqlite3_column_int64(st, 0);
    kind = cg_strdup((const char *)sqlite3_column_text(st, 1));
    rc = cg_json_parse((const char *)sqlite3_column_text(st, 2), "task config", &stage_cfg);
    sqlite3_finalize(st);
    st = NULL;
    if (rc) goto out;

    if (attempt == 0) {
        if ((rc = self_claim(db, id, &attempt))) goto out;
    }
    if ((rc = fence(db, id, attempt, &held))) goto out;
    if (!held) {
        result = TASK_SUPERSEDED;   /* recovered or cancelled before we started: do nothing */
        goto out;
    }
    fenced = 1;   /* from here on, every outcome is recorded in the task's row */

    /* the config of a run using this task (runs sharing it agree on everything it may read) */
    if (sqlite3_prepare_v2(db, "SELECT r.config_json FROM run_tasks rt JOIN runs r USING (run_id) WHERE rt.task_id = ? "
                               "ORDER BY r.run_id LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            rc = cg_json_parse((const char *)sqlite3_column_text(st, 0), "run config", &run_cfg);
        sqlite3_finalize(st);
        st = NULL;
        if (rc) goto fail;
    }
    if (!run_cfg) run_cfg = cJSON_CreateObject();
    const char *device;   /* cuda:N pins this process to that GPU before anything starts CUDA */
    const char *want = run_device(run_cfg, slot_device, forced_device);
    if ((rc = task_pin_gpu(want, &device))) goto fail;
    printf("cgvlm task %.12s: %s, attempt %d, device %s, %d thread(s)\n", key, kind, attempt, want, threads);
    fflush(stdout);   /* the worker's log: which device each attempt used */

#if STORE_SCHEMA_VERSION >= 2   /* db/ with store_env_record (db/record.c) */
    /* the environment the attempt runs in (reports show it); not for noop stand-ins; the GPU is
     * described (which initialises CUDA) only for an attempt that computes on it */
    if (strcmp(kind, "noop")) {
        int64_t env_id;
        if (store_env_record(db, !strncmp(want, "cuda", 4), &env_id) == CG_OK) {
            char *sql = cg_fmt("UPDATE tasks SET env_id = %lld WHERE task_id = %lld", (long long)env_id, (long long)id);
            store_exec(db, sql, "cannot record the task's environment");
            free(sql);
        }
        cg_err_clear();   /* a missing environment row is not worth failing the task */
    }
#endif

    /* upstream artifacts, by the stage they are */
    /* every ancestor, not only the direct deps: instruct needs the world and the pretrained LM too */
    if (sqlite3_prepare_v2(db, "WITH RECURSIVE anc(id) AS (SELECT dep_id FROM task_deps WHERE task_id = ?1 "
                               "UNION SELECT d.dep_id FROM task_deps d JOIN anc ON d.task_id = anc.id) "
                               "SELECT t.kind, t.key, t.config_json, t.state FROM tasks t JOIN anc ON t.task_id = anc.id",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
        goto fail;
    }
    sqlite3_bind_int64(st, 1, id);
    while (rc == CG_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *dkind = (const char *)sqlite3_column_text(st, 0);
        const char *dkey = (const char *)sqlite3_column_text(st, 1);
        int s = exp_stage_from_name(dkind);
        if (s < 0) {
            cJSON *c = cJSON_Parse((const char *)sqlite3_column_text(st, 2));
            const cJSON *sn = cJSON_GetObjectItemCaseSensitive(c, "stage");
            s = cJSON_IsString(sn) ? exp_stage_from_name(sn->valuestring) : -1;
            cJSON_Delete(c);
        }
        char *dir = cg_fmt("%s/artifacts/%s", workspace, dkey);
        if (strcmp((const char *)sqlite3_column_text(st, 3), "done") || !cg_is_dir(dir))
            rc = cg_err(CG_EFAIL, "upstream task %s %.12s is not done (no artifact '%s')", dkind, dkey, dir);
        if (s >= 0 && rc == CG_OK && !up[s]) up[s] = dir;
        else free(dir);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc) goto fail;

    work = cg_fmt("%s/work/%s", workspace, key);
    staging = cg_fmt("%s/staging/%s.%d", workspace, key, attempt);
    arts = cg_fmt("%s/artifacts", workspace);
    final = cg_fmt("%s/%s", arts, key);
    journal = cg_path_join(work, "metrics.jsonl");
    cg_rm_rf(staging);
    if ((rc = make_dir(staging))) goto fail;
    journal_sink = lazy_journal(journal);
    sink = journal_sink;
    /* metrics also reach the db while the task runs, for people watching; the journal stays the
     * record, ingested (replacing them) when the attempt ends */
    if (store_sink_open(db, id, &live_sink) == CG_OK) sink = tee_sink = metrics_tee(journal_sink, live_sink);
    else cg_err_clear();

    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(stage_cfg, "stage");
    int stage = exp_stage_from_name(kind);
    if (stage < 0 && cJSON_IsString(sn)) stage = exp_stage_from_name(sn->valuestring);
    beat_ctx beat = {db, id, attempt, cg_mono_time()};
    stage_ctx ctx = {
        .kind = kind, .stage = stage < 0 ? EXP_EVAL : (exp_stage)stage, .key = key,
        .run_config = run_cfg, .stage_config = stage_cfg, .workspace = workspace,
        .work_dir = work, .out_dir = staging, .metrics = sink, .cancel = &task_cancel,
        .progress = heartbeat, .progress_arg = &beat, .attempt = attempt,
        .threads = threads > 0 ? threads : 1, .device = device,
    };
    for (int s = 0; s < EXP_NSTAGES; s++) ctx.upstream[s] = up[s];
    rc = stage_execute(&ctx);
    int frc = metrics_flush(journal_sink);   /* the live sink's flush may fail: the journal counts */
    if (tee_sink && metrics_flush(live_sink) != CG_OK) cg_err_clear();
    metrics_close(tee_sink);
    metrics_close(live_sink);
    metrics_close(journal_sink);
    sink = tee_sink = live_sink = journal_sink = NULL;
    if (rc == CG_OK) rc = frc;

    if (rc == CG_OK) {
        int64_t size = 0;
        char sha[65];
        char *rel = cg_fmt("artifacts/%s", key);
        int still = 0;   /* a failed finish wrote nothing: the failure below is recorded (fenced) */
        if ((rc = publish(staging, final)) == CG_OK && (rc = artifact_digest(final, &size, sha)) == CG_OK)
            rc = finish(db, id, attempt, "done", NULL, TASK_DONE, key, rel, size, sha, journal, &still);
        free(rel);
        if (rc == CG_OK) {
            result = still ? TASK_DONE : TASK_SUPERSEDED;
            if (still && cg_is_dir(work)) cg_rm_rf(work);   /* checkpoints are not needed once the artifact is out */
            goto out;
        }
    }
    if (rc == STAGE_CANCELLED) {
        rc = finish(db, id, attempt, "cancelled", "cancelled; its checkpoint is kept for the next attempt",
                    TASK_CANCELLED, key, NULL, 0, NULL, journal, &held);
        result = TASK_CANCELLED;
        cg_rm_rf(staging);
        goto out;
    }
fail:
    /* an error in the task's input (CG_EUSER: a bad setting, an unknown kind) fails the
     * same way every time: exit status 2 tells the scheduler not to retry it */
    result = rc == CG_EUSER ? TASK_BAD_INPUT : TASK_FAILED;
    if (id >= 0 && held) {
        char *err = cg_strdup(cg_errmsg()[0] ? cg_errmsg() : "failed");
        finish(db, id, attempt, "failed", err, result, key, NULL, 0, NULL, journal, &held);
        fprintf(stderr, "cgvlm task %.12s: %s\n", key, err);
        free(err);
    }
    if (staging) cg_rm_rf(staging);
out:
    if (rc && (!fenced || result == TASK_DONE)) cg_report(rc);   /* not recorded in the db: say it */
    metrics_close(tee_sink);
    metrics_close(live_sink);
    metrics_close(journal_sink);
    sqlite3_finalize(st);
    store_close(db);
    cJSON_Delete(stage_cfg);
    cJSON_Delete(run_cfg);
    for (int s = 0; s < EXP_NSTAGES; s++) free(up[s]);
    free(kind), free(work), free(staging), free(final), free(journal), free(arts);
    if (!fenced && rc) return rc == CG_EUSER ? TASK_BAD_INPUT : TASK_FAILED;
    return result;
}

/* ---------------------------------------------------------------- the worker (fork server) */

int task_worker(const char *db_path, const char *workspace, int threads) {
    prctl(PR_SET_NAME, "cgvlm-worker");   /* in ps/top, instead of "exe" */
    signal(SIGINT, SIG_IGN);    /* Ctrl-C reaches the tasks and the scheduler directly */
    signal(SIGTERM, SIG_IGN);
    const char *device = getenv("CGVLM_DEVICE"), *forced = getenv("CGVLM_DEVICE_FORCE");
    const char *slot = getenv("CGVLM_WORKER_SLOT");
    char *logs = cg_fmt("%s/logs", workspace);
    int rc = cg_mkdir_p(logs);
    char *log = cg_fmt("%s/worker-%s.log", logs, slot ? slot : "0");
    free(logs);
    /* one log per worker slot, a header per attempt: no file to create per task */
    int logfd = rc ? -1 : open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (rc == CG_OK && logfd < 0) rc = cg_err(CG_EFAIL, "cannot open worker log '%s': %s", log, strerror(errno));
    free(log);
    if (rc) return cg_report(rc);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int attempt;
        char key[80];
        if (sscanf(line, "RUN %d %70s", &attempt, key) != 2) {
            fprintf(stderr, "cgvlm worker: bad request '%s'\n", line);
            break;
        }
        pid_t me = getpid();
        dprintf(logfd, "== task %s attempt %d\n", key, attempt);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            prctl(PR_SET_NAME, "cgvlm-task");
            if (getppid() != me) _exit(TASK_CANCELLED);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            int nul = open("/dev/null", O_RDONLY);
            if (nul >= 0) dup2(nul, 0);
            dup2(logfd, 1);
            dup2(logfd, 2);
            _exit(task_main(db_path, workspace, key, attempt, threads, device, forced));
        }
        if (pid < 0) {
            fprintf(stderr, "cgvlm worker: cannot fork: %s\n", strerror(errno));
            break;
        }
        printf("PID %d\n", (int)pid);
        fflush(stdout);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        printf("EXIT %d %d\n", (int)pid, status);
        fflush(stdout);
    }
    close(logfd);
    return CG_OK;
}

/* ---------------------------------------------------------------- for the Slurm job (task_slurm.c) */

int task_publish(const char *staging, const char *final) { return publish(staging, final); }
int task_artifact_digest(const char *dir, int64_t *size, char hex[65]) { return artifact_digest(dir, size, hex); }
