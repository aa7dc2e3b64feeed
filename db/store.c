/* store.c: opening the results db, pragmas, versioning and migrations (see store.h). */
#include "db/store.h"
#include "util/fs.h"
#include "util/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const char db_schema_sql[];  /* generated from db/schema.sql */

const char *store_default_path(void) {
    const char *p = getenv("CGVLM_DB");
    return p && *p ? p : "results.db";
}

const char *store_errmsg(sqlite3 *db) {
    static _Thread_local char buf[512];
    int e = sqlite3_system_errno(db);
    int code = sqlite3_errcode(db) & 0xff;
    if (e && (code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN ||
              code == SQLITE_READONLY))
        snprintf(buf, sizeof buf, "%s (%s)", sqlite3_errmsg(db), strerror(e));
    else if (code == SQLITE_FULL || sqlite3_extended_errcode(db) == SQLITE_IOERR_WRITE)
        /* the reason is not always kept (a failed commit rolls back first) */
        snprintf(buf, sizeof buf, "%s (is the disk full, or a file size limit reached?)", sqlite3_errmsg(db));
    else
        snprintf(buf, sizeof buf, "%s", sqlite3_errmsg(db));
    return buf;
}

int store_exec(sqlite3 *db, const char *sql, const char *what) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return cg_err(CG_EFAIL, "%s: %s", what, store_errmsg(db));
    return CG_OK;
}

/* The busy handler (sqlite3_busy_timeout) covers most waits, but SQLite returns SQLITE_BUSY
 * without calling it in some cases (WAL recovery by another connection, a snapshot that went
 * stale, a deadlock it detects). Those are retried here with backoff, up to STORE_BUSY_MS. */
int store_exec_retry(sqlite3 *db, const char *sql, const char *what) {
    double deadline = cg_mono_time() + STORE_BUSY_MS / 1000.0;
    int delay_us = 1000;
    for (;;) {
        int src = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (src == SQLITE_OK) return CG_OK;
        int busy = (src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED;
        if (!busy || cg_mono_time() > deadline) return cg_err(CG_EFAIL, "%s: %s", what, store_errmsg(db));
        usleep((useconds_t)delay_us);
        if (delay_us < 100000) delay_us *= 2;
    }
}

int store_begin(sqlite3 *db) { return store_exec_retry(db, "BEGIN IMMEDIATE", "cannot begin a transaction"); }
int store_commit(sqlite3 *db) { return store_exec_retry(db, "COMMIT", "cannot commit"); }
void store_rollback(sqlite3 *db) { sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL); }

static int user_version(sqlite3 *db, int *v) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return CG_EFAIL;
    int rc = sqlite3_step(st) == SQLITE_ROW ? CG_OK : CG_EFAIL;
    if (rc == CG_OK) *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

static int count_schema_objects(sqlite3 *db, int *n) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_schema", -1, &st, NULL) != SQLITE_OK)
        return CG_EFAIL;
    int rc = sqlite3_step(st) == SQLITE_ROW ? CG_OK : CG_EFAIL;
    if (rc == CG_OK) *n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* Migrations: migrations[i] takes a database from version i to i+1. Version 0 -> 1 is the
 * initial schema. Add new steps at the end; never edit a released one. */
static const char *const migrations[] = {
    db_schema_sql,
    /* 1 -> 2: speed only, same names and columns.
     * - a covering index for the views that pick evaluation rows by category
     *   (v_data_efficiency: 10 000 runs x 50 evals in ms instead of a scan of every row);
     * - v_final_metrics finds each (task, metric)'s last step with two index seeks instead of
     *   visiting every logged row (one run with 2M rows: 1 ms instead of 1.5 s). */
    "CREATE INDEX IF NOT EXISTS evals_by_category ON evals (task_id, category, metric, value, n, benchmark);\n"
    "DROP VIEW IF EXISTS v_final_metrics;\n"
    "CREATE VIEW v_final_metrics AS\n"
    "SELECT r.run_id, s.name AS sweep, r.name AS run, t.kind AS stage, n.name AS metric, m.step, m.value\n"
    "FROM runs r JOIN run_tasks rt USING (run_id) JOIN tasks t USING (task_id)\n"
    "CROSS JOIN metric_names n\n"
    "JOIN metrics m ON m.task_id = t.task_id AND m.name_id = n.name_id\n"
    " AND m.step = (SELECT MAX(m2.step) FROM metrics m2 WHERE m2.task_id = t.task_id AND m2.name_id = n.name_id)\n"
    "LEFT JOIN sweeps s ON s.sweep_id = r.sweep_id;\n",
};

static_assert(CG_ARRAY_LEN(migrations) == STORE_SCHEMA_VERSION, "one migration per schema version");

static int migrate(sqlite3 *db, const char *path, int from) {
    int rc = store_begin(db);
    if (rc) return cg_err_wrap(rc, "cannot migrate results db '%s'", path);
    /* re-read inside the write lock: another process may have migrated meanwhile */
    if (user_version(db, &from) != CG_OK) from = 0;
    for (int v = from; v < STORE_SCHEMA_VERSION && rc == CG_OK; v++) {
        rc = store_exec(db, migrations[v], "cannot apply the results schema");
        if (rc == CG_OK) {
            char *sql = cg_fmt("PRAGMA user_version = %d", v + 1);
            rc = store_exec(db, sql, "cannot set the schema version");
            free(sql);
        }
    }
    if (rc == CG_OK) rc = store_commit(db);
    if (rc) {
        store_rollback(db);
        return cg_err_wrap(rc, "results db '%s'", path);
    }
    return CG_OK;
}

int store_open(const char *path, int flags, sqlite3 **out) {
    sqlite3 *db = NULL;
    int rc = CG_OK;
    int readonly = flags & STORE_READONLY;
    *out = NULL;
    if ((readonly || !(flags & STORE_CREATE)) && !cg_file_exists(path))
        return cg_err(CG_EUSER, "results db '%s' does not exist; run a sweep or 'cgvlm run' first, or pass --db PATH", path);
    int oflags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &db, oflags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        rc = cg_err(CG_EUSER, "cannot open results db '%s': %s", path, db ? store_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
    /* Reading the version is the first access: a non-SQLite file fails here, untouched. The
     * version and the schema are read in one read transaction, so a process creating the db at
     * the same moment is seen either not at all or completely. */
    int version = 0;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK || user_version(db, &version) != CG_OK) {
        int code = sqlite3_errcode(db) & 0xff;
        if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
            rc = cg_err(CG_EUSER, "'%s' is not a cgvlm results database (%s); pass another --db", path,
                        sqlite3_errmsg(db));
        else
            rc = cg_err(CG_EFAIL, "cannot read results db '%s': %s", path, store_errmsg(db));
        goto out;
    }
    if (version > STORE_SCHEMA_VERSION) {
        rc = cg_err(CG_EUSER,
                    "results db '%s' has schema version %d, newer than this cgvlm understands (%d); "
                    "use a newer cgvlm (the file was not changed)",
                    path, version, STORE_SCHEMA_VERSION);
        goto out;
    }
    /* Reading the schema catches a damaged file, and a version-0 file that already holds
     * tables is some other program's database: neither is touched. */
    int n_objects = 0;
    if (count_schema_objects(db, &n_objects) != CG_OK) {
        rc = cg_err(CG_EUSER, "results db '%s' is damaged or unreadable (%s); the file was not changed",
                    path, sqlite3_errmsg(db));
        goto out;
    }
    if (version == 0 && n_objects > 0) {
        rc = cg_err(CG_EUSER,
                    "'%s' is an SQLite database of another program (no cgvlm schema version); "
                    "pass another --db (the file was not changed)", path);
        goto out;
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL); /* closing after a refusal rolls back */
    if (readonly) {
        if (version < STORE_SCHEMA_VERSION) {
            rc = cg_err(CG_EUSER, "results db '%s' has schema version %d; open it once with a writing command to migrate it", path, version);
            goto out;
        }
        rc = store_exec(db, "PRAGMA foreign_keys = ON; PRAGMA query_only = ON", "cannot configure results db");
        goto out;
    }
    rc = store_exec_retry(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
                          "PRAGMA cache_size = -32768",
                          "cannot configure results db");
    if (rc) {
        rc = cg_err_wrap(CG_EUSER, "'%s'", path);
        goto out;
    }
    if (version < STORE_SCHEMA_VERSION) rc = migrate(db, path, version);
out:
    if (rc != CG_OK) {
        if (db) sqlite3_close(db);
    } else {
        *out = db;
    }
    return rc;
}

void store_close(sqlite3 *db) {
    if (db) sqlite3_close(db);
}
