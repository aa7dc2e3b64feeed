/* sink.c: the results-store metrics sink (see sink.h): buffered rows, interned metric names,
 * one transaction per flush. */
#include "db/sink.h"
#include "db/store.h"
#include "util/fs.h"
#include "util/util.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A metric name seen by this sink; name_id is 0 until it is interned in metric_names. */
typedef struct {
    char *name;
    uint64_t hash;
    int64_t name_id;
} sink_name;

typedef struct {
    int32_t name;  /* index into names */
    int64_t step;
    double value, wall;
} sink_scalar;

typedef struct {
    char *benchmark, *metric, *category;
    double value;
    int64_t n;
} sink_eval;

typedef struct {
    char *benchmark, *method, *question_id, *category, *skill, *scores_json;
    int chosen, answer;
} sink_prediction;

typedef struct {
    char *key, *path, *sha256;
    int64_t size;
    double created_at;
} sink_artifact;

/* Rows per multi-row INSERT: fewer statement executions per row (4 parameters each). */
#define SCALARS_PER_INSERT 200

typedef struct {
    metrics_sink self;
    sqlite3 *db;
    int64_t task_id;
    int ingest;         /* store_ingest_journal's: inside its transaction, re-logged steps replaced */
    int batch_rows;
    double flush_seconds;
    double oldest;      /* wall time of the oldest buffered row */
    double next_try;    /* after a failed flush, no flush by itself before this time */
    int64_t *committed;
    /* name cache: open addressing over indexes into names (-1 = empty) */
    sink_name *names;
    int n_names, cap_names;
    int32_t *slots;
    uint32_t n_slots;  /* power of two */
    /* buffered rows */
    sink_scalar *scalars, *sorted; /* sorted: scratch for the flush */
    size_t n_scalars, cap_scalars, cap_sorted;
    sink_eval *evals;
    size_t n_evals, cap_evals;
    sink_prediction *preds;
    size_t n_preds, cap_preds;
    sink_artifact *arts;
    size_t n_arts, cap_arts;
    /* prepared statements, made on first use and kept */
    sqlite3_stmt *st_name_ins, *st_name_sel, *st_scalar_many, *st_scalar_one, *st_eval, *st_pred,
        *st_art;
} store_sink;

static int sink_flush(void *ctx);

/* ---- the name cache ---- */

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void slots_rebuild(store_sink *k, uint32_t n_slots) {
    free(k->slots);
    k->n_slots = n_slots;
    k->slots = cg_malloc(n_slots * sizeof *k->slots);
    memset(k->slots, 0xff, n_slots * sizeof *k->slots);
    for (int i = 0; i < k->n_names; i++) {
        uint32_t s = (uint32_t)k->names[i].hash & (n_slots - 1);
        while (k->slots[s] >= 0) s = (s + 1) & (n_slots - 1);
        k->slots[s] = i;
    }
}

/* The index of name in k->names, adding it (not yet interned) when new. */
static int32_t name_index(store_sink *k, const char *name) {
    uint64_t h = name_hash(name);
    uint32_t s = (uint32_t)h & (k->n_slots - 1);
    for (int32_t i; (i = k->slots[s]) >= 0; s = (s + 1) & (k->n_slots - 1))
        if (k->names[i].hash == h && !strcmp(k->names[i].name, name)) return i;
    if (k->n_names == k->cap_names) {
        k->cap_names = k->cap_names ? 2 * k->cap_names : 16;
        k->names = cg_realloc(k->names, (size_t)k->cap_names * sizeof *k->names);
    }
    int32_t i = k->n_names++;
    k->names[i] = (sink_name){cg_strdup(name), h, 0};
    if ((uint32_t)k->n_names * 2 > k->n_slots)
        slots_rebuild(k, k->n_slots * 2);
    else
        k->slots[s] = i;
    return i;
}

/* ---- buffering ---- */

#define GROW(arr, n, cap)                                              \
    do {                                                               \
        if ((n) == (cap)) {                                            \
            (cap) = (cap) ? 2 * (cap) : 64;                            \
            (arr) = cg_realloc((arr), (cap) * sizeof *(arr));          \
        }                                                              \
    } while (0)

static size_t buffered(const store_sink *k) {
    return k->n_scalars + k->n_evals + k->n_preds + k->n_arts;
}

/* After a row was buffered at wall time `now`. */
static int maybe_flush(store_sink *k, double now) {
    size_t n = buffered(k);
    if (n == 1) k->oldest = now;
    if (now < k->next_try) return CG_OK; /* the last flush failed: the error was returned then */
    if (n >= (size_t)k->batch_rows || (k->flush_seconds >= 0 && now - k->oldest >= k->flush_seconds))
        return sink_flush(k);
    return CG_OK;
}

static char *dup_or_null(const char *s) { return s ? cg_strdup(s) : NULL; }

static int sink_scalar_cb(void *ctx, const char *name, int64_t step, double value) {
    store_sink *k = ctx;
    double now = cg_wall_time();
    GROW(k->scalars, k->n_scalars, k->cap_scalars);
    k->scalars[k->n_scalars++] = (sink_scalar){name_index(k, name), step, value, now};
    return maybe_flush(k, now);
}

static int sink_eval_cb(void *ctx, const char *benchmark, const char *metric, const char *category,
                        double value, int64_t n) {
    store_sink *k = ctx;
    GROW(k->evals, k->n_evals, k->cap_evals);
    k->evals[k->n_evals++] = (sink_eval){cg_strdup(benchmark), cg_strdup(metric),
                                         cg_strdup(category ? category : ""), value, n};
    return maybe_flush(k, cg_wall_time());
}

static int sink_prediction_cb(void *ctx, const char *benchmark, const char *method,
                              const char *question_id, const char *category, const char *skill,
                              int chosen, int answer, const char *scores_json) {
    store_sink *k = ctx;
    GROW(k->preds, k->n_preds, k->cap_preds);
    k->preds[k->n_preds++] = (sink_prediction){
        cg_strdup(benchmark), cg_strdup(method), cg_strdup(question_id), dup_or_null(category),
        dup_or_null(skill), dup_or_null(scores_json), chosen, answer};
    return maybe_flush(k, cg_wall_time());
}

static int sink_artifact_cb(void *ctx, const char *key, const char *path, int64_t size,
                            const char *sha256) {
    store_sink *k = ctx;
    GROW(k->arts, k->n_arts, k->cap_arts);
    k->arts[k->n_arts++] = (sink_artifact){cg_strdup(key), cg_strdup(path), cg_strdup(sha256),
                                           size, cg_wall_time()};
    return maybe_flush(k, k->arts[k->n_arts - 1].created_at);
}

/* ---- writing ---- */

static int prepare(store_sink *k, sqlite3_stmt **st, const char *sql) {
    if (*st) return CG_OK;
    if (sqlite3_prepare_v3(k->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "cannot prepare a results db statement: %s", sqlite3_errmsg(k->db));
    return CG_OK;
}

/* Steps a bound statement to completion and resets it. */
static int run(store_sink *k, sqlite3_stmt *st, const char *what) {
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE && src != SQLITE_ROW)
        return cg_err(CG_EFAIL, "cannot write %s to the results db: %s", what, store_errmsg(k->db));
    return CG_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int intern_names(store_sink *k) {
    int rc = prepare(k, &k->st_name_ins, "INSERT OR IGNORE INTO metric_names (name) VALUES (?)");
    if (!rc) rc = prepare(k, &k->st_name_sel, "SELECT name_id FROM metric_names WHERE name = ?");
    for (int i = 0; rc == CG_OK && i < k->n_names; i++) {
        sink_name *nm = &k->names[i];
        if (nm->name_id) continue;
        bind_text(k->st_name_ins, 1, nm->name);
        rc = run(k, k->st_name_ins, "a metric name");
        if (rc) break;
        bind_text(k->st_name_sel, 1, nm->name);
        if (sqlite3_step(k->st_name_sel) == SQLITE_ROW)
            nm->name_id = sqlite3_column_int64(k->st_name_sel, 0);
        else
            rc = cg_err(CG_EFAIL, "cannot intern metric name '%s': %s", nm->name, sqlite3_errmsg(k->db));
        sqlite3_reset(k->st_name_sel);
    }
    return rc;
}

/* The task id is written into the statements' text (one sink, one task): a bind less per row. */
static void bind_scalar(store_sink *k, sqlite3_stmt *st, int base, const sink_scalar *r) {
    sqlite3_bind_int64(st, base + 1, k->names[r->name].name_id);
    sqlite3_bind_int64(st, base + 2, r->step);
    sqlite3_bind_double(st, base + 3, r->value);
    sqlite3_bind_double(st, base + 4, r->wall);
}

/* A resumed attempt logs again from its checkpoint's step: each record replaces the records of
 * its metric at that step and later that came before it (the journal is in time order). So a
 * record stays when no later record of its name has a step <= its own: one backward pass. */
static void drop_relogged(store_sink *k) {
    if (k->n_scalars == 0) return;
    int64_t *min_later = cg_malloc(((size_t)k->n_names + 1) * sizeof *min_later);
    for (int n = 0; n < k->n_names; n++) min_later[n] = INT64_MAX;
    size_t j = k->n_scalars;
    for (size_t i = k->n_scalars; i-- > 0;) {
        const sink_scalar r = k->scalars[i];
        if (r.step < min_later[r.name]) {
            min_later[r.name] = r.step;
            k->scalars[--j] = r;
        }
    }
    memmove(k->scalars, k->scalars + j, (k->n_scalars - j) * sizeof *k->scalars);
    k->n_scalars -= j;
    free(min_later);
}

static int write_scalars(store_sink *k) {
    int rc = CG_OK;
    char row[48];
    snprintf(row, sizeof row, "(%lld,?,?,?,?)", (long long)k->task_id);
    if (!k->st_scalar_many) {
        cg_buf sql;
        cg_buf_init(&sql);
        cg_buf_adds(&sql, "INSERT INTO metrics (task_id, name_id, step, value, wall) VALUES ");
        for (int i = 0; i < SCALARS_PER_INSERT; i++) {
            if (i) cg_buf_adds(&sql, ",");
            cg_buf_adds(&sql, row);
        }
        rc = prepare(k, &k->st_scalar_many, sql.data);
        cg_buf_free(&sql);
    }
    if (!rc && !k->st_scalar_one) {
        char *sql = cg_fmt("INSERT INTO metrics (task_id, name_id, step, value, wall) VALUES %s", row);
        rc = prepare(k, &k->st_scalar_one, sql);
        free(sql);
    }
    if (rc) return rc;
    /* Rows grouped by name (a stable counting sort): the index metrics_by_task (task, name,
     * step) then grows at one place per name instead of jumping between names at every row. */
    int32_t *start = cg_calloc((size_t)k->n_names + 1, sizeof *start);
    for (size_t i = 0; i < k->n_scalars; i++) start[k->scalars[i].name + 1]++;
    for (int n = 0; n < k->n_names; n++) start[n + 1] += start[n];
    if (k->cap_sorted < k->n_scalars) {
        k->cap_sorted = k->cap_scalars;
        free(k->sorted);
        k->sorted = cg_malloc(k->cap_sorted * sizeof *k->sorted);
    }
    for (size_t i = 0; i < k->n_scalars; i++) k->sorted[start[k->scalars[i].name]++] = k->scalars[i];
    free(start);
    const sink_scalar *rows = k->sorted;
    size_t i = 0;
    for (; rc == CG_OK && i + SCALARS_PER_INSERT <= k->n_scalars; i += SCALARS_PER_INSERT) {
        for (int j = 0; j < SCALARS_PER_INSERT; j++)
            bind_scalar(k, k->st_scalar_many, 4 * j, &rows[i + j]);
        rc = run(k, k->st_scalar_many, "step metrics");
    }
    for (; rc == CG_OK && i < k->n_scalars; i++) {
        bind_scalar(k, k->st_scalar_one, 0, &rows[i]);
        rc = run(k, k->st_scalar_one, "a step metric");
    }
    return rc;
}

static int write_evals(store_sink *k) {
    int rc = prepare(k, &k->st_eval,
                     "INSERT INTO evals (task_id, benchmark, metric, category, value, n) "
                     "VALUES (?,?,?,?,?,?) ON CONFLICT (task_id, benchmark, metric, category) "
                     "DO UPDATE SET value = excluded.value, n = excluded.n");
    for (size_t i = 0; rc == CG_OK && i < k->n_evals; i++) {
        const sink_eval *e = &k->evals[i];
        sqlite3_stmt *st = k->st_eval;
        sqlite3_bind_int64(st, 1, k->task_id);
        bind_text(st, 2, e->benchmark);
        bind_text(st, 3, e->metric);
        bind_text(st, 4, e->category);
        sqlite3_bind_double(st, 5, e->value);
        sqlite3_bind_int64(st, 6, e->n);
        rc = run(k, st, "an evaluation result");
    }
    return rc;
}

static int write_predictions(store_sink *k) {
    int rc = prepare(k, &k->st_pred,
                     "INSERT INTO predictions (task_id, benchmark, method, question_id, category, "
                     "skill, chosen, answer, correct, scores_json) VALUES (?,?,?,?,?,?,?,?,?,?) "
                     "ON CONFLICT (task_id, benchmark, method, question_id) DO UPDATE SET "
                     "category = excluded.category, skill = excluded.skill, chosen = excluded.chosen, "
                     "answer = excluded.answer, correct = excluded.correct, "
                     "scores_json = excluded.scores_json");
    for (size_t i = 0; rc == CG_OK && i < k->n_preds; i++) {
        const sink_prediction *p = &k->preds[i];
        sqlite3_stmt *st = k->st_pred;
        sqlite3_bind_int64(st, 1, k->task_id);
        bind_text(st, 2, p->benchmark);
        bind_text(st, 3, p->method);
        bind_text(st, 4, p->question_id);
        bind_text(st, 5, p->category);
        bind_text(st, 6, p->skill);
        sqlite3_bind_int(st, 7, p->chosen);
        sqlite3_bind_int(st, 8, p->answer);
        sqlite3_bind_int(st, 9, p->chosen == p->answer);
        bind_text(st, 10, p->scores_json);
        rc = run(k, st, "a prediction");
    }
    return rc;
}

static int write_artifacts(store_sink *k) {
    int rc = prepare(k, &k->st_art,
                     "INSERT INTO artifacts (key, task_id, path, size, sha256, created_at) "
                     "VALUES (?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET task_id = excluded.task_id, "
                     "path = excluded.path, size = excluded.size, sha256 = excluded.sha256, "
                     "created_at = excluded.created_at");
    for (size_t i = 0; rc == CG_OK && i < k->n_arts; i++) {
        const sink_artifact *a = &k->arts[i];
        sqlite3_stmt *st = k->st_art;
        bind_text(st, 1, a->key);
        sqlite3_bind_int64(st, 2, k->task_id);
        bind_text(st, 3, a->path);
        sqlite3_bind_int64(st, 4, a->size);
        bind_text(st, 5, a->sha256);
        sqlite3_bind_double(st, 6, a->created_at);
        rc = run(k, st, "an artifact");
    }
    return rc;
}

static void clear_buffers(store_sink *k) {
    for (size_t i = 0; i < k->n_evals; i++) {
        sink_eval *e = &k->evals[i];
        free(e->benchmark), free(e->metric), free(e->category);
    }
    for (size_t i = 0; i < k->n_preds; i++) {
        sink_prediction *p = &k->preds[i];
        free(p->benchmark), free(p->method), free(p->question_id), free(p->category);
        free(p->skill), free(p->scores_json);
    }
    for (size_t i = 0; i < k->n_arts; i++) {
        sink_artifact *a = &k->arts[i];
        free(a->key), free(a->path), free(a->sha256);
    }
    k->n_scalars = k->n_evals = k->n_preds = k->n_arts = 0;
}

static int sink_flush(void *ctx) {
    store_sink *k = ctx;
    if (k->ingest) drop_relogged(k);
    size_t n = buffered(k);
    if (n == 0) return CG_OK;
    int rc = k->ingest ? CG_OK : store_begin(k->db);
    if (rc) return cg_err_wrap(rc, "cannot flush metrics of task %lld", (long long)k->task_id);
    /* Holding the connection's (recursive) mutex for the whole batch makes the one each bind
     * and step takes again nearly free. */
    sqlite3_mutex *mu = sqlite3_db_mutex(k->db);
    sqlite3_mutex_enter(mu);
    if (!rc) rc = intern_names(k);
    if (!rc) rc = write_scalars(k);
    if (!rc) rc = write_evals(k);
    if (!rc) rc = write_predictions(k);
    if (!rc) rc = write_artifacts(k);
    sqlite3_mutex_leave(mu);
    if (k->ingest) return rc;   /* store_ingest_journal ends its transaction */
    if (!rc) rc = store_commit(k->db);
    if (rc) {
        store_rollback(k->db);
        /* names interned by the rolled-back transaction are gone again */
        for (int i = 0; i < k->n_names; i++) k->names[i].name_id = 0;
        k->next_try = cg_wall_time() + 1.0; /* not at every call while the disk stays full */
        return cg_err_wrap(rc, "cannot flush %zu rows of task %lld (kept for the next flush)", n,
                           (long long)k->task_id);
    }
    clear_buffers(k);
    if (k->committed) *k->committed += (int64_t)n;
    return CG_OK;
}

static void sink_close(void *ctx) {
    store_sink *k = ctx;
    if (sink_flush(k) != CG_OK) cg_warn("%s", cg_errmsg());
    clear_buffers(k);
    sqlite3_stmt *sts[] = {k->st_name_ins, k->st_name_sel, k->st_scalar_many, k->st_scalar_one,
                           k->st_eval, k->st_pred, k->st_art};
    for (size_t i = 0; i < CG_ARRAY_LEN(sts); i++) sqlite3_finalize(sts[i]);
    for (int i = 0; i < k->n_names; i++) free(k->names[i].name);
    free(k->names), free(k->slots), free(k->scalars), free(k->sorted), free(k->evals), free(k->preds), free(k->arts);
    free(k);
}

int store_sink_open_opts(sqlite3 *db, int64_t task_id, const store_sink_opts *opts,
                         metrics_sink **out) {
    assert(db && out);
    *out = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM tasks WHERE task_id = ?", -1, &st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "cannot read tasks: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, task_id);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!found) return cg_err(CG_EUSER, "no task %lld in the results db; create it first", (long long)task_id);
    store_sink *k = cg_calloc(1, sizeof *k);
    k->db = db;
    k->task_id = task_id;
    k->batch_rows = opts && opts->batch_rows > 0 ? opts->batch_rows : STORE_SINK_BATCH_ROWS;
    k->flush_seconds = opts && opts->flush_seconds ? opts->flush_seconds : STORE_SINK_FLUSH_SECONDS;
    k->committed = opts ? opts->committed : NULL;
    slots_rebuild(k, 64);
    k->self = (metrics_sink){k, sink_scalar_cb, sink_eval_cb, sink_prediction_cb, sink_artifact_cb,
                             sink_flush, sink_close};
    *out = &k->self;
    return CG_OK;
}

int store_sink_open(sqlite3 *db, int64_t task_id, metrics_sink **out) {
    return store_sink_open_opts(db, task_id, NULL, out);
}

int store_ingest_journal(sqlite3 *db, int64_t task_id, const char *path, int64_t *n_records) {
    if (n_records) *n_records = 0;
    if (!cg_file_exists(path)) return CG_OK;   /* the task reported nothing */
    /* its own transaction, or a savepoint in the caller's (whose fence decides whether it counts):
     * either way all of the journal or, on an error, nothing of it */
    int own = sqlite3_get_autocommit(db);
    int rc = own ? store_begin(db) : store_exec(db, "SAVEPOINT cg_ingest", "cannot ingest a journal");
    if (rc) return rc;
    metrics_sink *sink = NULL;
    store_sink_opts opts = {INT_MAX, -1, NULL};   /* one flush, at the end */
    char *clear = cg_fmt("DELETE FROM metrics WHERE task_id = %lld; DELETE FROM evals WHERE task_id = %lld; "
                         "DELETE FROM predictions WHERE task_id = %lld",
                         (long long)task_id, (long long)task_id, (long long)task_id);
    rc = store_exec(db, clear, "cannot clear the task's earlier metrics");
    free(clear);
    if (rc == CG_OK) rc = store_sink_open_opts(db, task_id, &opts, &sink);
    if (rc == CG_OK) {
        store_sink *k = sink->ctx;
        k->ingest = 1;
        rc = metrics_journal_replay(path, sink, n_records);
        if (rc == CG_OK) rc = sink_flush(k);
        clear_buffers(k);   /* so that closing writes nothing */
        metrics_close(sink);
    }
    if (own) {
        if (rc == CG_OK) rc = store_commit(db);
        if (rc) store_rollback(db);
    } else if (rc == CG_OK) {
        rc = store_exec(db, "RELEASE cg_ingest", "cannot ingest a journal");
    } else {
        sqlite3_exec(db, "ROLLBACK TO cg_ingest; RELEASE cg_ingest", NULL, NULL, NULL);
    }
    return rc ? cg_err_wrap(rc, "cannot ingest journal '%s'", path) : CG_OK;
}
