/* db_writer.c: a test helper that drives the results store the way a training run does.
 *
 *   db_writer populate DB            a small sweep (4 runs sharing world/align tasks, metrics,
 *                                    evals, predictions) plus one lone run, through store_* and
 *                                    the sink
 *   db_writer write DB KEY N BATCH [--fsize BYTES]
 *                                    N step metrics for task KEY through the sink flushing every
 *                                    BATCH rows; prints "committed C" after each flush (stdout,
 *                                    flushed) and "done N" at the end. --fsize sets RLIMIT_FSIZE
 *                                    with SIGXFSZ ignored (a full disk).
 * Exit status: 0, or the cgvlm rc with "cgvlm: error: ..." on stderr. */
#include "core/metrics.h"
#include "db/sink.h"
#include "db/store.h"
#include "util/util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int populate(const char *path) {
    sqlite3 *db;
    int rc = store_open(path, STORE_CREATE, &db);
    if (rc) return rc;
    int64_t env_id = 0, sweep_id, world, lm, align[2];
    rc = store_env_record(db, 1, &env_id);
    if (!rc)
        rc = store_exec(db,
                        "INSERT INTO sweeps (name, spec_json, axes_json, code_version, created_at) VALUES "
                        "('demo', '{}', '[\"align.lambda\",\"instruct.fraction\"]', 'test', 1700000000)",
                        "sweep");
    sweep_id = sqlite3_last_insert_rowid(db);
    if (!rc) rc = store_task_upsert(db, "k-world", "world", "{\"seed\":1}", &world);
    if (!rc) rc = store_task_upsert(db, "k-lm", "lm_pretrain", "{\"steps\":10}", &lm);
    if (!rc) rc = store_task_upsert(db, "k-align-0", "align", "{\"lambda\":0}", &align[0]);
    if (!rc) rc = store_task_upsert(db, "k-align-1", "align", "{\"lambda\":1}", &align[1]);
    /* the shared tasks: done, with a loss curve */
    int64_t shared[] = {world, lm, align[0], align[1]};
    for (int t = 0; t < 4 && rc == CG_OK; t++) {
        metrics_sink *s = NULL;
        rc = store_task_begin(db, shared[t], env_id);
        if (!rc) rc = store_sink_open(db, shared[t], &s);
        for (int step = 0; step < 20 && rc == CG_OK; step++) {
            rc = metrics_scalar(s, "loss", step, 5.0 / (step + 1) + t);
            if (!rc) rc = metrics_scalar(s, "lr", step, 1e-3);
        }
        if (!rc) rc = metrics_artifact(s, shared[t] == world ? "k-world" : "k-other", "store/x", 10 + t, "00ff");
        if (!rc) rc = metrics_flush(s);
        metrics_close(s);
        if (!rc) rc = store_task_end(db, shared[t], NULL);
    }
    /* four grid points: lambda {0,1} x fraction {0.1, 1} */
    for (int i = 0; i < 4 && rc == CG_OK; i++) {
        int lam = i / 2;
        double frac = i % 2 ? 1.0 : 0.1;
        char name[96], config[256], params[96], key[32];
        snprintf(name, sizeof name, "align.lambda=%d,instruct.fraction=%g,seed=0", lam, frac);
        snprintf(config, sizeof config,
                 "{\"align\":{\"lambda\":%d,\"lr\":0.001},\"instruct\":{\"fraction\":%g,\"epochs\":3,\"data_seed\":0},"
                 "\"model\":{\"size\":\"tiny\",\"adapter\":\"mlp2x\"},\"seed\":0,\"tags\":[\"a\",\"b\"]}",
                 lam, frac);
        snprintf(params, sizeof params, "{\"align.lambda\":%d,\"instruct.fraction\":%g}", lam, frac);
        int64_t run_id, instruct, eval;
        rc = store_run_create(db, sweep_id, name, config, params, 0, lam, frac, "tiny", &run_id);
        snprintf(key, sizeof key, "k-instruct-%d", i);
        if (!rc) rc = store_task_upsert(db, key, "instruct", config, &instruct);
        snprintf(key, sizeof key, "k-eval-%d", i);
        if (!rc) rc = store_task_upsert(db, key, "eval", config, &eval);
        int64_t chain[] = {world, lm, align[lam], instruct, eval};
        for (int t = 0; t < 5 && rc == CG_OK; t++) rc = store_run_task_link(db, run_id, chain[t]);
        /* the dependencies the scheduler would write: each stage on the one before */
        for (int t = 1; t < 5 && rc == CG_OK; t++) {
            char *sql = cg_fmt("INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (%lld, %lld)",
                               (long long)chain[t], (long long)chain[t - 1]);
            rc = store_exec(db, sql, "task_deps");
            free(sql);
        }
        metrics_sink *s = NULL;
        if (!rc) rc = store_task_begin(db, instruct, env_id);
        if (!rc) rc = store_sink_open(db, instruct, &s);
        for (int step = 0; step < 10 && rc == CG_OK; step++)
            rc = metrics_scalar(s, "loss", step, 2.0 - 0.1 * step - 0.2 * lam - frac);
        metrics_close(s);
        if (!rc) rc = store_task_end(db, instruct, NULL);
        if (i == 3) { /* the last run's evaluation failed once, then is still running */
            if (!rc) rc = store_task_begin(db, eval, env_id);
            if (!rc) rc = store_task_end(db, eval, "out of memory on device 0");
            continue;
        }
        if (!rc) rc = store_task_begin(db, eval, env_id);
        if (!rc) rc = store_sink_open(db, eval, &s);
        double acc = 0.4 + 0.2 * lam + 0.3 * frac;
        if (!rc) rc = metrics_eval(s, "cgvlm-world", "accuracy_likelihood", "", acc, 200);
        if (!rc) rc = metrics_eval(s, "cgvlm-world", "accuracy_likelihood", "color", acc + 0.05, 50);
        if (!rc) rc = metrics_eval(s, "alignment", "caption_ppl", "", 12.5 - 2 * lam, 100);
        for (int q = 0; q < 6 && rc == CG_OK; q++) {
            char qid[16];
            snprintf(qid, sizeof qid, "q%d", q);
            rc = metrics_prediction(s, "cgvlm-world", "likelihood", qid, q % 2 ? "color" : "shape",
                                    "skill:count", q % 3, (q + lam) % 3, "[-1.5,-0.5,-2]");
        }
        if (!rc) rc = metrics_flush(s);
        metrics_close(s);
        if (!rc) rc = store_task_end(db, eval, NULL);
    }
    /* a lone run */
    int64_t lone, t;
    if (!rc)
        rc = store_run_create(db, 0, "lone-run", "{\"align\":{\"lambda\":1}}", "{}", 7, 1, NAN, NULL, &lone);
    if (!rc) rc = store_task_upsert(db, "k-lone", "align", "{}", &t);
    if (!rc) rc = store_run_task_link(db, lone, t);
    store_close(db);
    return rc;
}

static int write_metrics(const char *path, const char *key, int64_t n, int batch) {
    sqlite3 *db;
    int64_t task_id, committed = 0, reported = 0;
    metrics_sink *s = NULL;
    int rc = store_open(path, STORE_CREATE, &db);
    if (rc) return rc;
    int64_t run_id;
    rc = store_task_upsert(db, key, "align", "{}", &task_id);
    /* a lone run of its own, so that the run views see this task */
    if (!rc) rc = store_run_create(db, 0, key, "{}", "{}", 0, NAN, NAN, NULL, &run_id);
    if (!rc) rc = store_run_task_link(db, run_id, task_id);
    store_sink_opts opts = {batch, -1, &committed}; /* batches by size only */
    if (!rc) rc = store_sink_open_opts(db, task_id, &opts, &s);
    static const char *const names[] = {"loss", "loss_gen", "loss_con", "lr", "grad_norm"};
    for (int64_t i = 0; i < n && rc == CG_OK; i++) {
        rc = metrics_scalar(s, names[i % 5], i / 5, (double)i);
        if (committed != reported) {
            printf("committed %lld\n", (long long)committed);
            fflush(stdout);
            reported = committed;
        }
    }
    if (!rc) rc = metrics_flush(s);
    if (!rc) printf("done %lld\n", (long long)committed);
    if (rc) cg_err_wrap(rc, "after %lld committed rows", (long long)committed);
    int keep = rc;
    metrics_close(s); /* after a failure: tries once more and warns */
    store_close(db);
    return keep;
}

int main(int argc, char **argv) {
    int rc;
    if (argc == 3 && !strcmp(argv[1], "populate")) {
        rc = populate(argv[2]);
    } else if ((argc == 6 || argc == 8) && !strcmp(argv[1], "write")) {
        int64_t n, batch, fsize;
        rc = cg_parse_i64(argv[4], "N", 0, INT64_MAX, &n);
        if (!rc) rc = cg_parse_i64(argv[5], "BATCH", 1, 1 << 30, &batch);
        if (!rc && argc == 8) {
            rc = cg_parse_i64(argv[7], "--fsize", 0, INT64_MAX, &fsize);
            struct rlimit lim = {(rlim_t)fsize, (rlim_t)fsize};
            signal(SIGXFSZ, SIG_IGN);
            if (!rc && setrlimit(RLIMIT_FSIZE, &lim) != 0) rc = cg_err(CG_EFAIL, "setrlimit failed");
        }
        if (!rc) rc = write_metrics(argv[2], argv[3], n, (int)batch);
    } else {
        fprintf(stderr, "usage: db_writer populate DB | write DB KEY N BATCH [--fsize BYTES]\n");
        return 2;
    }
    return cg_report(rc);
}
