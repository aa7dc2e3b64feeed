/* record.c: environment, run and task records for a lone run (see store.h). */
#include "db/store.h"
#include "kernels/gpu.h"
#include "util/json.h"
#include "util/util.h"
#include "version.h"

#include <cblas.h>
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* A statement with its parameters bound from a format: i = int64, d = double (NAN -> NULL),
 * s = text (NULL -> NULL). */
static int prep(sqlite3 *db, sqlite3_stmt **st, const char *sql, const char *fmt, ...) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    assert((int)strlen(fmt) == sqlite3_bind_parameter_count(*st));
    va_list ap;
    va_start(ap, fmt);
    for (int i = 1; fmt[i - 1]; i++) {
        if (fmt[i - 1] == 'i') {
            sqlite3_bind_int64(*st, i, va_arg(ap, int64_t));
        } else if (fmt[i - 1] == 'd') {
            double d = va_arg(ap, double);
            if (isnan(d))
                sqlite3_bind_null(*st, i);
            else
                sqlite3_bind_double(*st, i, d);
        } else {
            const char *s = va_arg(ap, const char *);
            if (s)
                sqlite3_bind_text(*st, i, s, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(*st, i);
        }
    }
    va_end(ap);
    return CG_OK;
}

/* Steps to the end; the first column of the first row (if any) goes to *id. */
static int finish(sqlite3 *db, sqlite3_stmt *st, int64_t *id) {
    int src, rows = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        if (rows++ == 0 && id) *id = sqlite3_column_int64(st, 0);
    int rc = src == SQLITE_DONE ? CG_OK : cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc == CG_OK && id && rows == 0) *id = 0;
    return rc;
}

#define EXEC(fmt, sql, ...) \
    (rc ? rc : (rc = prep(db, &st, sql, fmt, __VA_ARGS__)) ? rc : (rc = finish(db, st, NULL)))
#define SELECT_ID(idp, fmt, sql, ...) \
    (rc ? rc : (rc = prep(db, &st, sql, fmt, __VA_ARGS__)) ? rc : (rc = finish(db, st, idp)))

/* Opens a transaction unless the caller has one; *owned says whether to end it. */
static int tx_open(sqlite3 *db, int *owned) {
    *owned = sqlite3_get_autocommit(db);
    return *owned ? store_begin(db) : CG_OK;
}
static int tx_close(sqlite3 *db, int owned, int rc) {
    if (!owned) return rc;
    if (rc == CG_OK) rc = store_commit(db);
    if (rc) store_rollback(db);
    return rc;
}

/* "... driver 13.0, runtime 12.8 ..." -> "13.0" for key "driver " */
static char *field_after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    if (!p) return NULL;
    p += strlen(key);
    size_t n = strcspn(p, ",;)\n");
    return cg_strndup(p, n);
}

int store_env_record(sqlite3 *db, int describe_gpu, int64_t *env_id) {
    struct utsname u;
    char host[256] = "", os[3 * sizeof u.release + 8] = "";
    gethostname(host, sizeof host - 1);
    if (uname(&u) == 0) snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
    cg_buf gpu;
    cg_buf_init(&gpu);
    if (describe_gpu) cg_gpu_describe(&gpu);
    else cg_buf_adds(&gpu, "cpu");
    char *device = cg_strdup(gpu.data ? gpu.data : "");
    for (char *p = device; *p; p++)
        if (*p == '\n') *p = p[1] ? ';' : 0;
    /* "0: NAME, sm_90, ..., driver 13.0, runtime 12.8, cuBLAS ..." or "no GPU (WHY; CUDA runtime 13.0)" */
    char *driver = field_after(device, ", driver ");
    char *runtime = field_after(device, ", runtime ");
    if (!runtime) runtime = field_after(device, "; CUDA runtime ");
    char *cuda = runtime ? cg_fmt("%s %s", cg_gpu_built() ? "built, runtime" : "not built", runtime)
                         : cg_strdup(cg_gpu_built() ? "built" : "not built");
    const char *blas = openblas_get_config();
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    /* empty strings, not NULL, so that the UNIQUE constraint finds the same environment */
    EXEC("ssssssss",
         "INSERT INTO environments (code_version, compiler, blas, cuda, driver, device, host, os) "
         "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
         CGVLM_GIT, CGVLM_C_COMPILER, blas ? blas : "", cuda, driver ? driver : "", device, host, os);
    SELECT_ID(env_id, "ssssssss",
              "SELECT env_id FROM environments WHERE code_version = ? AND compiler = ? AND blas = ? "
              "AND cuda = ? AND driver = ? AND device = ? AND host = ? AND os = ?",
              CGVLM_GIT, CGVLM_C_COMPILER, blas ? blas : "", cuda, driver ? driver : "", device, host, os);
    rc = tx_close(db, owned, rc);
    cg_buf_free(&gpu);
    free(device), free(driver), free(runtime), free(cuda);
    return rc ? cg_err_wrap(rc, "cannot record the environment") : CG_OK;
}

static int write_params(sqlite3 *db, int64_t run_id, const char *params_json) {
    cJSON *params = NULL;
    int rc = cg_json_parse(params_json, "run params", &params);
    if (rc) return rc;
    if (!cJSON_IsObject(params)) {
        cJSON_Delete(params);
        return cg_err(CG_EUSER, "run params must be a JSON object of config path -> value");
    }
    sqlite3_stmt *st;
    for (cJSON *p = params->child; p && rc == CG_OK; p = p->next) {
        char *value = cg_json_canonical(p);
        double num = cJSON_IsNumber(p) ? p->valuedouble : cJSON_IsBool(p) ? cJSON_IsTrue(p) : NAN;
        EXEC("issd",
             "INSERT INTO run_params (run_id, path, value_json, value_num) VALUES (?,?,?,?) "
             "ON CONFLICT (run_id, path) DO UPDATE SET value_json = excluded.value_json, "
             "value_num = excluded.value_num",
             run_id, p->string, value, num);
        free(value);
    }
    cJSON_Delete(params);
    return rc;
}

int store_run_create(sqlite3 *db, int64_t sweep_id, const char *name, const char *config_json,
                     const char *params_json, int64_t seed, double lambda, double fraction,
                     const char *size, int64_t *run_id) {
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    *run_id = 0;
    if (sweep_id)
        SELECT_ID(run_id, "is", "SELECT run_id FROM runs WHERE sweep_id = ? AND name = ?", sweep_id, name);
    else
        SELECT_ID(run_id, "ss", "SELECT run_id FROM runs WHERE sweep_id IS NULL AND name = ? AND config_json = ?",
                  name, config_json);
    if (!rc && !*run_id) {
        EXEC("isssiddsd",
             "INSERT INTO runs (sweep_id, name, config_json, params_json, seed, lambda, fraction, size, "
             "created_at) VALUES (NULLIF(?, 0),?,?,?,?,?,?,?,?)",
             sweep_id, name, config_json, params_json, seed, lambda, fraction, size, cg_wall_time());
        if (!rc) *run_id = sqlite3_last_insert_rowid(db);
        if (!rc) rc = write_params(db, *run_id, params_json);
    }
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot record run '%s'", name) : CG_OK;
}

int store_task_upsert(sqlite3 *db, const char *key, const char *kind, const char *config_json,
                      int64_t *task_id) {
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    EXEC("sssd",
         "INSERT INTO tasks (key, kind, config_json, state, queued_at) VALUES (?,?,?,'queued',?) "
         "ON CONFLICT (key) DO NOTHING",
         key, kind, config_json, cg_wall_time());
    SELECT_ID(task_id, "s", "SELECT task_id FROM tasks WHERE key = ?", key);
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot record task %s", key) : CG_OK;
}

int store_run_task_link(sqlite3 *db, int64_t run_id, int64_t task_id) {
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    EXEC("ii", "INSERT OR IGNORE INTO run_tasks (run_id, task_id) VALUES (?,?)", run_id, task_id);
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot link task %lld to run %lld", (long long)task_id, (long long)run_id)
              : CG_OK;
}

int store_task_begin(sqlite3 *db, int64_t task_id, int64_t env_id) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    double now = cg_wall_time();
    int64_t pid = getpid();
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    EXEC("siidi",
         "UPDATE tasks SET state = 'running', attempts = attempts + 1, host = ?1, pid = ?2, "
         "env_id = NULLIF(?3, 0), started_at = ?4, ended_at = NULL, heartbeat_at = ?4, "
         "error = NULL WHERE task_id = ?5",
         host, pid, env_id, now, task_id);
    EXEC("sidi",
         "INSERT OR REPLACE INTO task_attempts (task_id, attempt, state, host, pid, started_at) "
         "SELECT task_id, attempts, 'running', ?, ?, ? FROM tasks WHERE task_id = ?",
         host, pid, now, task_id);
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot start task %lld", (long long)task_id) : CG_OK;
}

int store_task_end(sqlite3 *db, int64_t task_id, const char *error) {
    const char *state = error ? "failed" : "done";
    double now = cg_wall_time();
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    EXEC("sdsi",
         "UPDATE tasks SET state = ?1, ended_at = ?2, error = ?3, "
         "progress = CASE WHEN ?3 IS NULL THEN 1 ELSE progress END WHERE task_id = ?4",
         state, now, error, task_id);
    EXEC("sdsi",
         "UPDATE task_attempts SET state = ?, ended_at = ?, error = ? WHERE task_id = ?4 "
         "AND attempt = (SELECT attempts FROM tasks WHERE task_id = ?4)",
         state, now, error, task_id);
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot finish task %lld", (long long)task_id) : CG_OK;
}

int store_task_reset_metrics(sqlite3 *db, int64_t task_id, int64_t from_step) {
    int owned, rc = tx_open(db, &owned);
    sqlite3_stmt *st;
    EXEC("ii", "DELETE FROM metrics WHERE task_id = ? AND step >= ?", task_id, from_step);
    rc = tx_close(db, owned, rc);
    return rc ? cg_err_wrap(rc, "cannot reset the metrics of task %lld", (long long)task_id) : CG_OK;
}
