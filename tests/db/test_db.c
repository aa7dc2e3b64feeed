/* test_db.c: the store and the sink in one process: versioning and refusals, records, the
 * sink's batching, interning, upserts, a failed flush that keeps its rows, a busy database. */
#include "db/sink.h"
#include "db/store.h"
#include "tests/test.h"
#include "util/fs.h"
#include "util/sha256.h"
#include "util/util.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/cgvlm-test-db-XXXXXX";

static char *path_in(const char *name) { return cg_path_join(dir, name); }

static int64_t count(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "count: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return n;
}

static double number(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    double v = NAN;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_versions(void) {
    char *p = path_in("v.db");
    sqlite3 *db = NULL;
    CHECK(store_open(p, STORE_READONLY, &db) == CG_EUSER); /* missing, read-only: not created */
    CHECK(!cg_file_exists(p));
    CHECK(store_open(p, STORE_CREATE, &db) == CG_OK);
    CHECK(count(db, "PRAGMA user_version") == STORE_SCHEMA_VERSION);
    CHECK(count(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'evals_by_category'") == 1);
    /* back to version 1 without the index: reopening migrates forward */
    CHECK(store_exec(db, "DROP INDEX evals_by_category; PRAGMA user_version = 1", "downgrade") == CG_OK);
    store_close(db);
    CHECK(store_open(p, STORE_READONLY, &db) == CG_EUSER); /* read-only never migrates */
    CHECK(store_open(p, 0, &db) == CG_OK);
    CHECK(count(db, "PRAGMA user_version") == STORE_SCHEMA_VERSION);
    CHECK(count(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'evals_by_category'") == 1);
    store_close(db);
    free(p);
}

/* A file store_open must refuse for writing, leaving its bytes as they were. */
static void check_refused(const char *name, const char *make_sql, const char *bytes) {
    char *p = path_in(name);
    if (bytes) {
        CHECK(cg_write_file_atomic(p, bytes, strlen(bytes)) == CG_OK);
    } else {
        sqlite3 *raw;
        CHECK(sqlite3_open(p, &raw) == SQLITE_OK);
        CHECK(sqlite3_exec(raw, make_sql, NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(raw);
    }
    char before[65], after[65];
    CHECK(cg_sha256_file(p, before, NULL) == CG_OK);
    sqlite3 *db = NULL;
    CHECK(store_open(p, STORE_CREATE, &db) == CG_EUSER);
    CHECK(db == NULL);
    CHECK(store_open(p, STORE_READONLY, &db) == CG_EUSER);
    CHECK(cg_sha256_file(p, after, NULL) == CG_OK);
    CHECK_STR(before, after);
    free(p);
}

static void test_refusals(void) {
    check_refused("text.db", NULL, "hello, this is not a database at all, just some text\n");
    check_refused("v99.db", "CREATE TABLE runs (a); PRAGMA user_version = 99", NULL);
    check_refused("foreign.db", "CREATE TABLE notes (a); INSERT INTO notes VALUES (1)", NULL);
}

static void test_records(sqlite3 *db) {
    int64_t env1 = 0, env2 = 0, r1, r2, r3, t1, t2;
    CHECK(store_env_record(db, 1, &env1) == CG_OK);
    CHECK(store_env_record(db, 1, &env2) == CG_OK);
    CHECK(env1 > 0 && env1 == env2);
    CHECK(count(db, "SELECT COUNT(*) FROM environments WHERE code_version <> '' AND os <> ''") == 1);
    /* a CPU attempt: its own environment, device "cpu", CUDA not asked */
    int64_t env3 = 0;
    CHECK(store_env_record(db, 0, &env3) == CG_OK);
    CHECK(env3 > 0 && env3 != env1);
    CHECK(count(db, "SELECT COUNT(*) FROM environments WHERE device = 'cpu' AND driver = ''") == 1);
    CHECK(store_exec(db, "INSERT INTO sweeps (name, spec_json, axes_json, code_version, created_at) "
                         "VALUES ('s', '{}', '[]', 'v', 0)", "sweep") == CG_OK);
    CHECK(store_run_create(db, 1, "a", "{\"x\":1}", "{\"align.lambda\":0.5,\"m\":\"lin\",\"b\":true}", 3, 0.5,
                           0.1, "tiny", &r1) == CG_OK);
    CHECK(store_run_create(db, 1, "a", "{\"x\":1}", "{\"align.lambda\":0.5}", 3, 0.5, 0.1, "tiny", &r2) == CG_OK);
    CHECK(r1 == r2);
    CHECK(store_run_create(db, 0, "a", "{\"x\":1}", "{}", 3, NAN, NAN, NULL, &r3) == CG_OK);
    CHECK(r3 != r1);
    CHECK(count(db, "SELECT COUNT(*) FROM runs WHERE lambda IS NULL AND fraction IS NULL AND sweep_id IS NULL") == 1);
    CHECK(number(db, "SELECT value_num FROM run_params WHERE path = 'align.lambda'") == 0.5);
    CHECK(count(db, "SELECT COUNT(*) FROM run_params WHERE path = 'm' AND value_json = '\"lin\"' AND value_num IS NULL") == 1);
    CHECK(count(db, "SELECT value_num FROM run_params WHERE path = 'b'") == 1);
    CHECK(store_run_create(db, 0, "bad", "{}", "[1]", 0, NAN, NAN, NULL, &r3) == CG_EUSER);
    CHECK(store_task_upsert(db, "key-1", "align", "{}", &t1) == CG_OK);
    CHECK(store_task_upsert(db, "key-1", "align", "{}", &t2) == CG_OK);
    CHECK(t1 == t2);
    CHECK(store_run_task_link(db, r1, t1) == CG_OK);
    CHECK(store_run_task_link(db, r1, t1) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM run_tasks") == 1);
    CHECK(store_task_begin(db, t1, env1) == CG_OK);
    CHECK(store_task_end(db, t1, "boom") == CG_OK);
    CHECK(store_task_begin(db, t1, env1) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM v_runs WHERE state = 'running'") == 1);
    CHECK(store_task_end(db, t1, NULL) == CG_OK);
    CHECK(count(db, "SELECT attempts FROM tasks WHERE key = 'key-1' AND state = 'done' AND error IS NULL") == 2);
    CHECK(count(db, "SELECT COUNT(*) FROM task_attempts WHERE state = 'failed' AND error = 'boom'") == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM task_attempts WHERE state = 'done' AND attempt = 2") == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM v_runs WHERE state = 'done'") == 1);
}

static void test_sink(sqlite3 *db) {
    int64_t t1, t2, committed = 0;
    metrics_sink *s = NULL, *s2 = NULL;
    CHECK(store_sink_open(db, 123456, &s) == CG_EUSER);
    CHECK(store_task_upsert(db, "sink-1", "align", "{}", &t1) == CG_OK);
    CHECK(store_task_upsert(db, "sink-2", "align", "{}", &t2) == CG_OK);
    store_sink_opts o = {7, -1, &committed};
    CHECK(store_sink_open_opts(db, t1, &o, &s) == CG_OK);
    static const char *const names[] = {"loss", "lr", "grad_norm"};
    for (int i = 0; i < 100; i++) CHECK(metrics_scalar(s, names[i % 3], i / 3, i * 0.25) == CG_OK);
    CHECK(committed == 98); /* 14 batches of 7; 2 rows wait */
    CHECK(count(db, "SELECT COUNT(*) FROM metrics") == 98);
    CHECK(metrics_flush(s) == CG_OK);
    CHECK(committed == 100);
    CHECK(number(db, "SELECT SUM(value) FROM metrics") == 0.25 * 99 * 100 / 2);
    CHECK(count(db, "SELECT MAX(step) FROM v_metrics WHERE metric = 'loss'") == 33);
    /* the same names from another sink reuse the interned ids */
    CHECK(store_sink_open(db, t2, &s2) == CG_OK);
    CHECK(metrics_scalar(s2, "loss", 0, 1) == CG_OK);
    CHECK(metrics_scalar(s2, "new_metric", 0, 2) == CG_OK);
    metrics_close(s2); /* flushes */
    CHECK(count(db, "SELECT COUNT(*) FROM metric_names") == 4);
    CHECK(count(db, "SELECT COUNT(*) FROM metrics WHERE task_id = (SELECT task_id FROM tasks WHERE key = 'sink-2')") == 2);
    /* evals, predictions, artifacts: upserts */
    CHECK(metrics_eval(s, "world", "accuracy_likelihood", "", 0.5, 10) == CG_OK);
    CHECK(metrics_eval(s, "world", "accuracy_likelihood", NULL, 0.75, 20) == CG_OK);
    CHECK(metrics_eval(s, "world", "accuracy_likelihood", "color", 0.25, 4) == CG_OK);
    CHECK(metrics_prediction(s, "world", "letter", "q1", "color", NULL, 2, 2, "B") == CG_OK);
    CHECK(metrics_prediction(s, "world", "letter", "q1", "color", NULL, -1, 2, NULL) == CG_OK);
    CHECK(metrics_prediction(s, "world", "letter", "q2", NULL, "skill:x", 1, 1, NULL) == CG_OK);
    CHECK(metrics_artifact(s, "art", "store/a", 5, "ab") == CG_OK);
    CHECK(metrics_artifact(s, "art", "store/b", 6, "cd") == CG_OK);
    CHECK(metrics_flush(s) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM evals") == 2);
    CHECK(number(db, "SELECT value FROM evals WHERE category = ''") == 0.75);
    CHECK(count(db, "SELECT n FROM evals WHERE category = ''") == 20);
    CHECK(count(db, "SELECT COUNT(*) FROM predictions") == 2);
    CHECK(count(db, "SELECT correct FROM predictions WHERE question_id = 'q1' AND chosen = -1 AND scores_json IS NULL") == 0);
    CHECK(count(db, "SELECT correct FROM predictions WHERE question_id = 'q2'") == 1);
    CHECK(count(db, "SELECT size FROM artifacts WHERE key = 'art' AND path = 'store/b'") == 6);
    /* a failed flush rolls back, keeps its rows and its new names; the next flush writes them once */
    CHECK(metrics_scalar(s, "after_failure", 1000, 1) == CG_OK);
    CHECK(metrics_scalar(s, "loss", 1000, 1) == CG_OK);
    CHECK(metrics_eval(s, "world", "retrieval_r1", "", 0.5, 1) == CG_OK);
    CHECK(store_exec(db, "PRAGMA query_only = ON", "ro") == CG_OK);
    CHECK(metrics_flush(s) == CG_EFAIL);
    CHECK(sqlite3_get_autocommit(db)); /* no transaction left open */
    CHECK(store_exec(db, "PRAGMA query_only = OFF", "rw") == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM metric_names WHERE name = 'after_failure'") == 0);
    CHECK(metrics_flush(s) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM v_metrics WHERE step = 1000") == 2);
    CHECK(count(db, "SELECT COUNT(*) FROM v_metrics WHERE metric = 'after_failure'") == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM evals WHERE metric = 'retrieval_r1'") == 1);
    CHECK(metrics_flush(s) == CG_OK); /* nothing buffered: nothing written */
    CHECK(count(db, "SELECT COUNT(*) FROM metrics WHERE step = 1000") == 2);
    metrics_close(s);
}

/* v_final_metrics: the value at each metric's largest step, steps logged out of order. */
static void test_final_metrics(sqlite3 *db) {
    int64_t run, t;
    metrics_sink *s = NULL;
    CHECK(store_run_create(db, 0, "final", "{}", "{}", 0, NAN, NAN, NULL, &run) == CG_OK);
    CHECK(store_task_upsert(db, "final-task", "instruct", "{}", &t) == CG_OK);
    CHECK(store_run_task_link(db, run, t) == CG_OK);
    CHECK(store_sink_open(db, t, &s) == CG_OK);
    int steps[] = {3, 9, 1, 7};
    for (int i = 0; i < 4; i++) {
        metrics_scalar(s, "loss", steps[i], 10.0 * steps[i]);
        metrics_scalar(s, "acc", steps[i] / 2, steps[i]);
    }
    metrics_close(s);
    char *sql = cg_fmt("SELECT COUNT(*) FROM v_final_metrics WHERE run_id = %lld", (long long)run);
    CHECK(count(db, sql) == 2);
    free(sql);
    /* resuming from a checkpoint at step 8, then starting over: steps are not doubled */
    CHECK(store_task_reset_metrics(db, t, 8) == CG_OK);
    CHECK(count(db, "SELECT MAX(step) FROM v_metrics WHERE key = 'final-task' AND metric = 'loss'") == 7);
    CHECK(store_task_reset_metrics(db, t, 0) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM v_metrics WHERE key = 'final-task'") == 0);
    CHECK(store_sink_open(db, t, &s) == CG_OK);
    for (int i = 0; i < 4; i++) {
        metrics_scalar(s, "loss", steps[i], 10.0 * steps[i]);
        metrics_scalar(s, "acc", steps[i] / 2, steps[i]);
    }
    metrics_close(s);
    sql = cg_fmt("SELECT COUNT(*) FROM v_final_metrics WHERE run_id = %lld", (long long)run);
    CHECK(count(db, sql) == 2);
    free(sql);
    sql = cg_fmt("SELECT value FROM v_final_metrics WHERE run_id = %lld AND metric = 'loss' AND step = 9 AND stage = 'instruct'", (long long)run);
    CHECK(number(db, sql) == 90);
    free(sql);
    sql = cg_fmt("SELECT value FROM v_final_metrics WHERE run_id = %lld AND metric = 'acc' AND step = 4", (long long)run);
    CHECK(number(db, sql) == 9);
    free(sql);
}

/* A worker's journal lands in the db through the sink, whole; a malformed one not at all. */
static void test_journal(sqlite3 *db) {
    int64_t t, n = 0;
    metrics_sink *j = NULL;
    char *path = path_in("task.jsonl");
    CHECK(store_task_upsert(db, "journaled", "instruct", "{}", &t) == CG_OK);
    CHECK(metrics_journal_open(path, &j) == CG_OK);
    for (int i = 0; i < 50; i++) metrics_scalar(j, "loss", i, i);
    metrics_eval(j, "world", "accuracy_letter", "", 0.5, 8);
    metrics_prediction(j, "world", "letter", "q9", "size", NULL, 1, 1, "A");
    metrics_artifact(j, "journal-art", "store/j", 3, "ff");
    metrics_close(j);
    CHECK(store_ingest_journal(db, t, path, &n) == CG_OK);
    CHECK(n == 53);
    char *sql = cg_fmt("SELECT (SELECT COUNT(*) FROM metrics WHERE task_id = %lld) + "
                       "(SELECT COUNT(*) FROM evals WHERE task_id = %lld) + "
                       "(SELECT COUNT(*) FROM predictions WHERE task_id = %lld) + "
                       "(SELECT COUNT(*) FROM artifacts WHERE task_id = %lld)",
                       (long long)t, (long long)t, (long long)t, (long long)t);
    CHECK(count(db, sql) == 53);
    /* a journal with a malformed line in the middle: refused, nothing added */
    const char *bad = "{\"t\":\"scalar\",\"name\":\"x\",\"step\":1,\"value\":2}\nnot json\n";
    CHECK(cg_write_file_atomic(path, bad, strlen(bad)) == CG_OK);
    CHECK(store_ingest_journal(db, t, path, NULL) == CG_EUSER);
    CHECK(count(db, sql) == 53);
    /* a writer killed mid-record left a torn line; the next attempt's records still replay */
    const char *torn = "{\"t\":\"scalar\",\"name\":\"x\",\"step\":1,\"value\":2}\n{\"t\":\"sca";
    CHECK(cg_write_file_atomic(path, torn, strlen(torn)) == CG_OK);
    CHECK(metrics_journal_open(path, &j) == CG_OK);
    metrics_scalar(j, "x", 2, 3);
    metrics_close(j);
    int64_t replayed = 0;
    CHECK(metrics_journal_replay(path, NULL, &replayed) == CG_OK);
    CHECK(replayed == 2);
    free(sql);
    free(path);
}

/* THE ingestion (store_ingest_journal, the scheduler's for every backend): a resumed attempt's
 * re-logged steps replace the ones they repeat; ingesting again changes nothing and replaces
 * what a live sink wrote; a torn last line is ignored; another program's JSON lines are refused
 * naming the record; inside the caller's transaction it is a savepoint the caller's fence
 * decides about. */
static void test_ingest_replaces(sqlite3 *db) {
    int64_t t, n = 0;
    metrics_sink *j = NULL, *live = NULL;
    char *path = path_in("resumed.jsonl");
    CHECK(store_task_upsert(db, "resumed", "align", "{}", &t) == CG_OK);
    /* what the live sink of the running attempts wrote: 0..9 and again 5..12 (appended) */
    CHECK(store_sink_open(db, t, &live) == CG_OK);
    CHECK(metrics_journal_open(path, &j) == CG_OK);
    for (int i = 0; i < 10; i++) metrics_scalar(j, "loss", i, 100 + i), metrics_scalar(live, "loss", i, 100 + i);
    metrics_scalar(j, "lr", 9, 0.5);
    metrics_eval(j, "world", "accuracy", "", 0.25, 4);
    metrics_close(j);
    /* the attempt was killed at step 9 (torn record); the next resumed from its checkpoint at 5 */
    FILE *fp = fopen(path, "a");
    CHECK(fp && fputs("{\"t\":\"scalar\",\"name\":\"loss\",\"st", fp) >= 0);
    if (fp) fclose(fp);
    CHECK(metrics_journal_open(path, &j) == CG_OK);
    for (int i = 5; i < 13; i++) metrics_scalar(j, "loss", i, 200 + i), metrics_scalar(live, "loss", i, 200 + i);
    metrics_eval(j, "world", "accuracy", "", 0.75, 4);
    metrics_close(j);
    metrics_close(live);
    char *sql = cg_fmt("SELECT COUNT(*) FROM metrics WHERE task_id = %lld", (long long)t);
    CHECK(count(db, sql) == 18);   /* the live rows: steps 5..9 twice */
    CHECK(store_ingest_journal(db, t, path, &n) == CG_OK);
    CHECK(n == 21);   /* 10 + 1 + 1 + 8 + 1 whole records */
    CHECK(count(db, sql) == 14);   /* loss 0..12 once each, lr 9 once */
    char *v = cg_fmt("SELECT value FROM metrics JOIN metric_names USING (name_id) WHERE task_id = %lld AND name = 'loss' "
                     "AND step = 7", (long long)t);
    CHECK(number(db, v) == 207);   /* the resumed attempt's */
    free(v);
    v = cg_fmt("SELECT value FROM metrics JOIN metric_names USING (name_id) WHERE task_id = %lld AND name = 'loss' AND step = 4",
               (long long)t);
    CHECK(number(db, v) == 104);   /* before the checkpoint: the first attempt's */
    free(v);
    v = cg_fmt("SELECT value FROM evals WHERE task_id = %lld", (long long)t);
    CHECK(number(db, v) == 0.75);   /* the last evaluation, once */
    free(v);
    v = cg_fmt("SELECT COUNT(*) FROM evals WHERE task_id = %lld", (long long)t);
    CHECK(count(db, v) == 1);
    free(v);
    /* again: the same rows */
    CHECK(store_ingest_journal(db, t, path, NULL) == CG_OK);
    CHECK(count(db, sql) == 14);

    /* another program's JSON lines: refused, naming the record; the task's rows untouched */
    char *foreign = path_in("foreign.jsonl");
    const char *text = "{\"t\":\"scalar\",\"name\":\"x\",\"step\":1,\"value\":2}\n{\"level\":\"info\",\"msg\":\"hi\"}\n";
    CHECK(cg_write_file_atomic(foreign, text, strlen(text)) == CG_OK);
    CHECK(store_ingest_journal(db, t, foreign, NULL) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "foreign.jsonl") && strstr(cg_errmsg(), "record 2 is not a cgvlm metrics record"));
    cg_err_clear();
    text = "[1, 2, 3]\n";
    CHECK(cg_write_file_atomic(foreign, text, strlen(text)) == CG_OK);
    CHECK(store_ingest_journal(db, t, foreign, NULL) == CG_EUSER);
    cg_err_clear();
    CHECK(count(db, sql) == 14);

    /* inside the caller's transaction: a refused journal leaves the caller's writes to commit */
    CHECK(store_begin(db) == CG_OK);
    CHECK(store_exec(db, "UPDATE tasks SET error = 'mine' WHERE key = 'resumed'", "test") == CG_OK);
    CHECK(store_ingest_journal(db, t, foreign, NULL) == CG_EUSER);
    cg_err_clear();
    CHECK(store_commit(db) == CG_OK);
    CHECK(count(db, "SELECT COUNT(*) FROM tasks WHERE key = 'resumed' AND error = 'mine'") == 1);
    CHECK(count(db, sql) == 14);
    /* ... and a good one rolled back with the caller's transaction (a fence that did not hold) */
    text = "{\"t\":\"scalar\",\"name\":\"x\",\"step\":1,\"value\":2}\n";
    CHECK(cg_write_file_atomic(foreign, text, strlen(text)) == CG_OK);
    CHECK(store_begin(db) == CG_OK);
    CHECK(store_ingest_journal(db, t, foreign, NULL) == CG_OK);
    CHECK(count(db, sql) == 1);
    store_rollback(db);
    CHECK(count(db, sql) == 14);
    /* a missing journal: nothing reported, nothing changed */
    char *missing = path_in("missing.jsonl");
    CHECK(store_ingest_journal(db, t, missing, &n) == CG_OK && n == 0);
    CHECK(count(db, sql) == 14);
    free(missing), free(foreign), free(sql), free(path);
}

/* A row older than flush_seconds makes the next call flush. */
static void test_flush_by_age(sqlite3 *db) {
    int64_t t, committed = 0;
    metrics_sink *s = NULL;
    CHECK(store_task_upsert(db, "aged", "align", "{}", &t) == CG_OK);
    store_sink_opts o = {1000, 0.2, &committed};
    CHECK(store_sink_open_opts(db, t, &o, &s) == CG_OK);
    CHECK(metrics_scalar(s, "loss", 0, 1) == CG_OK);
    CHECK(metrics_scalar(s, "loss", 1, 1) == CG_OK);
    CHECK(committed == 0);
    usleep(250000);
    CHECK(metrics_scalar(s, "loss", 2, 1) == CG_OK);
    CHECK(committed == 3);
    metrics_close(s);
}

/* Another connection holds the write lock for a while; the sink's flush waits and succeeds. */
typedef struct {
    const char *path;
    int held;
} locker_arg;

static void *locker(void *p) {
    locker_arg *a = p;
    sqlite3 *db;
    if (store_open(a->path, 0, &db) != CG_OK) return NULL;
    if (store_begin(db) == CG_OK) {
        store_exec(db, "INSERT INTO metric_names (name) VALUES ('held')", "lock");
        __atomic_store_n(&a->held, 1, __ATOMIC_SEQ_CST);
        usleep(400000);
        store_commit(db);
    }
    store_close(db);
    return NULL;
}

static void test_busy(const char *path) {
    sqlite3 *db;
    int64_t t;
    metrics_sink *s;
    CHECK(store_open(path, 0, &db) == CG_OK);
    CHECK(store_task_upsert(db, "busy", "align", "{}", &t) == CG_OK);
    CHECK(store_sink_open(db, t, &s) == CG_OK);
    for (int i = 0; i < 1000; i++) metrics_scalar(s, "loss", i, i);
    locker_arg a = {path, 0};
    pthread_t th;
    pthread_create(&th, NULL, locker, &a);
    while (!__atomic_load_n(&a.held, __ATOMIC_SEQ_CST)) usleep(1000);
    double t0 = cg_mono_time();
    CHECK(metrics_flush(s) == CG_OK);
    CHECK(cg_mono_time() - t0 > 0.1); /* it did wait for the lock */
    pthread_join(th, NULL);
    CHECK(count(db, "SELECT COUNT(*) FROM metrics WHERE task_id = (SELECT task_id FROM tasks WHERE key = 'busy')") == 1000);
    metrics_close(s);
    store_close(db);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_versions();
    test_refusals();
    char *p = path_in("r.db");
    sqlite3 *db = NULL;
    CHECK(store_open(p, STORE_CREATE, &db) == CG_OK);
    if (db) {
        test_records(db);
        test_sink(db);
        test_flush_by_age(db);
        test_final_metrics(db);
        test_journal(db);
        test_ingest_replaces(db);
        sqlite3_stmt *st;
        CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        store_close(db);
        test_busy(p);
    }
    free(p);
    cg_rm_rf(dir);
    return test_summary("db");
}
