/* test_slurm_map.c: the Slurm backend's state mapping (Slurm's final JobState, Reason, ExitCode and
 * the task's own outcome -> the state recorded) and the outcome record read from a journal, torn
 * last line and other attempts' records included. No cluster needed. */
#include "sweeps/backend_slurm.h"
#include "db/store.h"
#include "sweeps/task.h"
#include "util/fs.h"
#include "util/util.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static slurm_end map(const char *state, const char *reason, int code, int sig, const slurm_outcome *oc, int cancel,
                     int upstream) {
    slurm_end e;
    slurm_map_end("42", state, reason, code, sig, oc, cancel, upstream, &e);
    return e;
}

static int has(const slurm_end *e, const char *needle) { return e->error && strstr(e->error, needle); }

int main(void) {
    slurm_outcome done = {.present = 1, .state = "done", .exit_status = 0};
    slurm_outcome failed = {.present = 1, .state = "failed", .error = "noop failure", .exit_status = 1};
    slurm_outcome cancelled = {.present = 1, .state = "cancelled", .error = "cancelled; kept", .exit_status = 3};
    slurm_outcome none = {0};
    slurm_end e;

    e = map("COMPLETED", "None", 0, 0, &done, 0, 0);
    CHECK_STR(e.state, "done");
    CHECK(e.error == NULL);
    free(e.error);
    e = map("FAILED", "NonZeroExitCode", 1, 0, &failed, 0, 0);
    CHECK_STR(e.state, "failed");
    CHECK(has(&e, "noop failure"));
    free(e.error);
    /* killed: kill -9 of the task's command (137:0) or of the batch step (JobLaunchFailure 0:9) */
    e = map("FAILED", "NonZeroExitCode", 137, 0, &none, 0, 0);
    CHECK_STR(e.state, "crashed");
    CHECK(has(&e, "signal 9"));
    CHECK(e.exit_status == 137);
    free(e.error);
    e = map("FAILED", "JobLaunchFailure", 0, 9, &none, 0, 0);
    CHECK_STR(e.state, "crashed");
    CHECK(has(&e, "signal 9"));
    free(e.error);
    e = map("FAILED", "NonZeroExitCode", 2, 0, &none, 0, 0);
    CHECK_STR(e.state, "crashed");
    CHECK(has(&e, "status 2 without recording"));
    free(e.error);
    /* the time limit wins over the 'cancelled' the task wrote when SIGTERM reached it */
    e = map("TIMEOUT", "TimeLimit", 0, 15, &cancelled, 0, 0);
    CHECK_STR(e.state, "failed");
    CHECK(has(&e, "time limit exceeded"));
    free(e.error);
    /* the node, preemption, memory: crashed (retried) with the reason */
    const char *crashes[] = {"NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL"};
    for (int i = 0; i < 4; i++) {
        e = map(crashes[i], "Prolog", 0, 9, &cancelled, 0, 0);
        CHECK_STR(e.state, "crashed");
        CHECK(has(&e, crashes[i]));
        CHECK(has(&e, "Prolog"));
        free(e.error);
    }
    /* cancelled: by the task's own record, by scancel from outside, or while pending */
    e = map("CANCELLED", "None", 0, 15, &cancelled, 1, 0);
    CHECK_STR(e.state, "cancelled");
    free(e.error);
    e = map("CANCELLED", "None", 0, 15, &none, 0, 0);
    CHECK_STR(e.state, "cancelled");
    CHECK(has(&e, "outside cgvlm"));
    free(e.error);
    /* held on an upstream that failed: back to queued, not a failure */
    e = map("CANCELLED", "DependencyNeverSatisfied", 0, 0, &none, 0, 0);
    CHECK_STR(e.state, "queued");
    free(e.error);
    e = map(NULL, NULL, 0, 0, &none, 0, 1);
    CHECK_STR(e.state, "queued");
    free(e.error);
    /* gone from Slurm: its outcome if it wrote one, else crashed */
    e = map(NULL, NULL, 0, 0, &done, 0, 0);
    CHECK_STR(e.state, "done");
    free(e.error);
    e = map(NULL, NULL, 0, 0, &none, 0, 0);
    CHECK_STR(e.state, "crashed");
    CHECK(has(&e, "gone"));
    free(e.error);

    /* outcome records: the one of the asked attempt, a torn last line ignored */
    char dir[] = "/tmp/cgvlm-test-slurm-map-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *j = cg_fmt("%s/metrics.jsonl", dir);
    const char *text =
        "{\"t\":\"scalar\",\"name\":\"loss\",\"step\":1,\"value\":2}\n"
        "{\"t\":\"outcome\",\"attempt\":1,\"state\":\"failed\",\"error\":\"boom\",\"exit\":1,\"host\":\"n1\"}\n"
        "{\"t\":\"outcome\",\"attempt\":2,\"state\":\"done\",\"exit\":0,\"host\":\"n2\",\"artifact\":\"artifacts/k\","
        "\"size\":7,\"sha256\":\"ab\"}\n"
        "{\"t\":\"outcome\",\"attempt\":3,\"state\":\"do";
    CHECK(cg_write_file_atomic(j, text, strlen(text)) == CG_OK);
    slurm_outcome oc;
    CHECK(slurm_read_outcome(j, 1, &oc) == CG_OK);
    CHECK(oc.present);
    CHECK_STR(oc.state, "failed");
    CHECK_STR(oc.error, "boom");
    CHECK_STR(oc.host, "n1");
    slurm_outcome_free(&oc);
    CHECK(slurm_read_outcome(j, 2, &oc) == CG_OK);
    CHECK(oc.present);
    CHECK_STR(oc.state, "done");
    CHECK_STR(oc.artifact, "artifacts/k");
    CHECK(oc.size == 7);
    slurm_outcome_free(&oc);
    CHECK(slurm_read_outcome(j, 3, &oc) == CG_OK);
    CHECK(!oc.present);
    slurm_outcome_free(&oc);
    char *missing = cg_fmt("%s/none.jsonl", dir);
    CHECK(slurm_read_outcome(missing, 1, &oc) == CG_OK && !oc.present);

    /* slurm_ingest: the journal's metrics land in the fenced transaction; a foreign journal turns
     * a done job into a failed attempt saying why (exit status 2: not retried) */
    char *dbp = cg_fmt("%s/r.db", dir);
    sqlite3 *db = NULL;
    int64_t t;
    int applied = 0;
    CHECK(store_open(dbp, STORE_CREATE, &db) == CG_OK);
    CHECK(store_task_upsert(db, "k", "align", "{}", &t) == CG_OK);
    CHECK(store_exec(db, "UPDATE tasks SET state = 'running', attempts = 2 WHERE key = 'k'; INSERT INTO task_attempts "
                         "(task_id, attempt, state) SELECT task_id, 2, 'running' FROM tasks WHERE key = 'k'", "test") == CG_OK);
    CHECK(slurm_read_outcome(j, 2, &oc) == CG_OK && oc.present);
    slurm_end end = {"done", NULL, 0, 0};
    CHECK(slurm_ingest(db, t, 2, "k", j, &end, &oc, &applied) == CG_OK && applied && !end.journal_refused);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT state || ':' || (SELECT COUNT(*) FROM metrics) || ':' || "
                                 "(SELECT COUNT(*) FROM artifacts) FROM tasks WHERE key = 'k'", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "done:1:1");
    sqlite3_finalize(st);
    CHECK(slurm_ingest(db, t, 2, "k", j, &end, &oc, &applied) == CG_OK && !applied);   /* fenced: once */
    const char *foreign = "{\"level\":\"info\"}\n{\"t\":\"outcome\",\"attempt\":3,\"state\":\"done\",\"exit\":0}\n";
    CHECK(cg_write_file_atomic(j, foreign, strlen(foreign)) == CG_OK);
    CHECK(store_exec(db, "UPDATE tasks SET state = 'running', attempts = 3 WHERE key = 'k'; INSERT INTO task_attempts "
                         "(task_id, attempt, state) SELECT task_id, 3, 'running' FROM tasks WHERE key = 'k'", "test") == CG_OK);
    slurm_outcome_free(&oc);
    CHECK(slurm_read_outcome(j, 3, &oc) == CG_OK && oc.present);
    end = (slurm_end){"done", NULL, 0, 0};
    CHECK(slurm_ingest(db, t, 3, "k", j, &end, &oc, &applied) == CG_OK && applied);
    CHECK(end.journal_refused && !strcmp(end.state, "failed") && end.exit_status == TASK_BAD_INPUT);
    CHECK(end.error && strstr(end.error, "record 1 is not a cgvlm metrics record"));
    CHECK(sqlite3_prepare_v2(db, "SELECT t.state || ':' || a.state || ':' || (t.error = a.error) || ':' || "
                                 "(SELECT COUNT(*) FROM metrics) || ':' || COALESCE(t.artifact_key, '-') FROM tasks t "
                                 "JOIN task_attempts a ON a.task_id = t.task_id AND a.attempt = 3", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "failed:failed:1:1:-");   /* the earlier metrics kept */
    sqlite3_finalize(st);
    free(end.error);
    slurm_outcome_free(&oc);
    store_close(db);
    free(dbp);
    cg_rm_rf(dir);
    free(j), free(missing);
    return test_summary("slurm_map");
}
