/* bench_db.c: `cgvlm bench db`: ingestion through the store sink (rows/s), the cost of logging
 * per training step, and the latency of the data-efficiency view over a large sweep. */
#include "cli/commands.h"
#include "db/sink.h"
#include "db/store.h"
#include "util/fs.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVALS_PER_RUN 50

static const char *const step_names[] = {"loss", "loss_gen", "loss_con", "lr", "grad_norm",
                                         "tokens_per_s", "step_ms", "tau", "acc_train", "mem_mb"};

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: cgvlm bench db [--json] [--rows N] [--runs N] [--steps N] [--db PATH]\n"
            "\n"
            "measures the results database on a scratch file (removed afterwards unless --db):\n"
            "  ingest   N step metrics through the store sink, flushed in batches (rows_per_s)\n"
            "  step     10 scalars per training step, flushed every 100 steps (us_per_step, and the\n"
            "           share of a 100 ms tiny training step)\n"
            "  view     the data-efficiency query (v_data_efficiency aggregated over seeds) on a sweep\n"
            "           of --runs runs x %d evaluation rows (view_ms, best of 5)\n"
            "\n"
            "  --rows N   step metrics to ingest (default 1000000)\n"
            "  --runs N   runs in the synthetic sweep (default 10000)\n"
            "  --steps N  training steps to log (default 20000)\n"
            "  --db PATH  write here instead of a scratch file (kept)\n"
            "  --json     one JSON object per line\n",
            EVALS_PER_RUN);
}

/* CPU seconds of this process: on a shared machine, the figure other processes do not move. */
static double cpu_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int new_task(sqlite3 *db, const char *key, int64_t *task_id) {
    return store_task_upsert(db, key, "align", "{}", task_id);
}

static int bench_ingest(sqlite3 *db, int64_t rows, int json) {
    int64_t task_id;
    metrics_sink *sink = NULL;
    int rc = new_task(db, "bench-ingest", &task_id);
    if (!rc) rc = store_sink_open(db, task_id, &sink);
    if (rc) return rc;
    double t0 = cg_mono_time(), c0 = cpu_time();
    for (int64_t i = 0; i < rows && rc == CG_OK; i++)
        rc = metrics_scalar(sink, step_names[i % 10], i / 10, 1.0 / (double)(i + 1));
    if (!rc) rc = metrics_flush(sink);
    double s = cg_mono_time() - t0, cpu = cpu_time() - c0;
    metrics_close(sink);
    if (rc) return rc;
    if (json)
        printf("{\"bench\":\"db\",\"figure\":\"ingest\",\"rows\":%lld,\"batch_rows\":%d,\"seconds\":%.4f,"
               "\"rows_per_s\":%.0f,\"cpu_seconds\":%.4f,\"rows_per_cpu_s\":%.0f}\n",
               (long long)rows, STORE_SINK_BATCH_ROWS, s, (double)rows / s, cpu, (double)rows / cpu);
    else
        printf("ingest   %lld rows through the sink in %.3f s: %.0f rows/s (%.0f rows per CPU second)\n",
               (long long)rows, s, (double)rows / s, (double)rows / cpu);
    return CG_OK;
}

static int bench_step(sqlite3 *db, int64_t steps, int json) {
    int64_t task_id;
    metrics_sink *sink = NULL;
    int rc = new_task(db, "bench-step", &task_id);
    if (!rc) rc = store_sink_open(db, task_id, &sink);
    if (rc) return rc;
    double t0 = cg_mono_time(), c0 = cpu_time(), worst = 0;
    for (int64_t step = 0; step < steps && rc == CG_OK; step++) {
        double ts = cg_mono_time();
        for (int j = 0; j < 10 && rc == CG_OK; j++)
            rc = metrics_scalar(sink, step_names[j], step, (double)step * 0.5 + j);
        if (!rc && step % 100 == 99) rc = metrics_flush(sink); /* a checkpoint */
        double dt = cg_mono_time() - ts;
        if (dt > worst) worst = dt;
    }
    if (!rc) rc = metrics_flush(sink);
    double s = cg_mono_time() - t0, cpu_us = (cpu_time() - c0) / (double)steps * 1e6;
    metrics_close(sink);
    if (rc) return rc;
    double us = s / (double)steps * 1e6;
    double share = us / 100000.0 * 100.0; /* of a 100 ms tiny step */
    if (json)
        printf("{\"bench\":\"db\",\"figure\":\"step\",\"steps\":%lld,\"scalars_per_step\":10,"
               "\"us_per_step\":%.3f,\"cpu_us_per_step\":%.3f,\"worst_step_us\":%.1f,"
               "\"percent_of_100ms_step\":%.5f}\n",
               (long long)steps, us, cpu_us, worst * 1e6, share);
    else
        printf("step     10 scalars per step, flush every 100 steps: %.3f us per step (%.5f %% of a 100 ms "
               "step), worst step %.1f us\n",
               us, share, worst * 1e6);
    return CG_OK;
}

/* A synthetic sweep: runs over (lambda, fraction, seed), each with one eval task holding
 * EVALS_PER_RUN evaluation rows (2 overall accuracies, per-category accuracies, alignment). */
static int populate_sweep(sqlite3 *db, int64_t runs, const char *sweep) {
    static const double fractions[] = {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0};
    int rc = store_begin(db);
    if (rc) return rc;
    char *sql = cg_fmt("INSERT INTO sweeps (name, spec_json, axes_json, code_version, created_at) "
                       "VALUES ('%s', '{}', '[\"align.lambda\",\"instruct.fraction\"]', 'bench', 0)", sweep);
    rc = store_exec(db, sql, "cannot create the bench sweep");
    free(sql);
    int64_t sweep_id = sqlite3_last_insert_rowid(db);
    sqlite3_stmt *run_st = NULL, *task_st = NULL, *link_st = NULL, *eval_st = NULL;
    if (!rc &&
        (sqlite3_prepare_v2(db, "INSERT INTO runs (sweep_id, name, config_json, params_json, seed, lambda, "
                                "fraction, size, created_at) VALUES (?,?,'{}','{}',?,?,?,'tiny',0)",
                            -1, &run_st, NULL) ||
         sqlite3_prepare_v2(db, "INSERT INTO tasks (key, kind, config_json, state) VALUES (?, 'eval', '{}', 'done')",
                            -1, &task_st, NULL) ||
         sqlite3_prepare_v2(db, "INSERT INTO run_tasks (run_id, task_id) VALUES (?,?)", -1, &link_st, NULL) ||
         sqlite3_prepare_v2(db, "INSERT INTO evals (task_id, benchmark, metric, category, value, n) "
                                "VALUES (?,?,?,?,?,100)", -1, &eval_st, NULL)))
        rc = cg_err(CG_EFAIL, "cannot prepare the bench sweep: %s", sqlite3_errmsg(db));
    for (int64_t r = 0; r < runs && rc == CG_OK; r++) {
        double lambda = r % 2 ? 1.0 : 0.0, fraction = fractions[(r / 2) % 7];
        int64_t seed = r / 14;
        char name[96], key[128];
        snprintf(name, sizeof name, "align.lambda=%g,instruct.fraction=%g,seed=%lld", lambda, fraction, (long long)seed);
        snprintf(key, sizeof key, "%s-eval-%lld", sweep, (long long)r);
        sqlite3_bind_int64(run_st, 1, sweep_id);
        sqlite3_bind_text(run_st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(run_st, 3, seed);
        sqlite3_bind_double(run_st, 4, lambda);
        sqlite3_bind_double(run_st, 5, fraction);
        sqlite3_bind_text(task_st, 1, key, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(run_st) != SQLITE_DONE) goto fail;
        int64_t run_id = sqlite3_last_insert_rowid(db);
        if (sqlite3_step(task_st) != SQLITE_DONE) goto fail;
        int64_t task_id = sqlite3_last_insert_rowid(db);
        sqlite3_reset(run_st), sqlite3_reset(task_st);
        sqlite3_bind_int64(link_st, 1, run_id);
        sqlite3_bind_int64(link_st, 2, task_id);
        if (sqlite3_step(link_st) != SQLITE_DONE) goto fail;
        sqlite3_reset(link_st);
        for (int e = 0; e < EVALS_PER_RUN; e++) {
            char metric[32], category[32];
            const char *bench = e < 46 ? "cgvlm-world" : "alignment";
            if (e < 46) {
                snprintf(metric, sizeof metric, "%s", e % 2 ? "accuracy_letter" : "accuracy_likelihood");
                if (e < 2)
                    category[0] = 0;
                else
                    snprintf(category, sizeof category, "category_%d", e / 2);
            } else {
                static const char *const align_metrics[] = {"caption_ppl", "retrieval_r1", "retrieval_r5", "text_ppl"};
                snprintf(metric, sizeof metric, "%s", align_metrics[e - 46]);
                category[0] = 0;
            }
            sqlite3_bind_int64(eval_st, 1, task_id);
            sqlite3_bind_text(eval_st, 2, bench, -1, SQLITE_STATIC);
            sqlite3_bind_text(eval_st, 3, metric, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(eval_st, 4, category, -1, SQLITE_TRANSIENT);
            sqlite3_bind_double(eval_st, 5, 0.3 + 0.1 * fraction + 0.05 * lambda + 0.001 * (double)(e % 7));
            if (sqlite3_step(eval_st) != SQLITE_DONE) goto fail;
            sqlite3_reset(eval_st);
        }
        continue;
    fail:
        rc = cg_err(CG_EFAIL, "cannot populate the bench sweep: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(run_st), sqlite3_finalize(task_st), sqlite3_finalize(link_st), sqlite3_finalize(eval_st);
    if (!rc) rc = store_commit(db);
    if (rc) store_rollback(db);
    if (!rc) rc = store_exec(db, "ANALYZE", "cannot analyze the bench db");
    return rc;
}

/* The data-efficiency curve's table: mean accuracy and its spread over seeds, per
 * (contrastive, fraction, method) -- what `cgvlm report` asks. */
static const char data_efficiency_sql[] =
    "SELECT contrastive, fraction, metric, COUNT(*) AS n_seeds, AVG(accuracy) AS mean, "
    "MIN(accuracy) AS lo, MAX(accuracy) AS hi FROM v_data_efficiency WHERE sweep = ?1 "
    "GROUP BY contrastive, fraction, metric ORDER BY contrastive, fraction, metric";

static int bench_view(sqlite3 *db, int64_t runs, int json) {
    /* a sweep name of its own, so that a kept --db can be benchmarked again */
    char sweep[64];
    snprintf(sweep, sizeof sweep, "bench-%lld-%d", (long long)cg_wall_time(), (int)getpid());
    double t0 = cg_mono_time();
    int rc = populate_sweep(db, runs, sweep);
    if (rc) return rc;
    double populate_s = cg_mono_time() - t0;
    double best = 1e9, best_rows = 1e9, best_cpu = 1e9;
    int64_t groups = 0, rows = 0;
    for (int rep = 0; rep < 5 && rc == CG_OK; rep++) {
        sqlite3_stmt *st;
        double ts = cg_mono_time(), cs = cpu_time();
        if (sqlite3_prepare_v2(db, data_efficiency_sql, -1, &st, NULL) != SQLITE_OK)
            return cg_err(CG_EFAIL, "bench view: %s", sqlite3_errmsg(db));
        sqlite3_bind_text(st, 1, sweep, -1, SQLITE_STATIC);
        groups = 0;
        while (sqlite3_step(st) == SQLITE_ROW) groups++;
        sqlite3_finalize(st);
        double dt = cg_mono_time() - ts, dc = cpu_time() - cs;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
        ts = cg_mono_time();
        if (sqlite3_prepare_v2(db, "SELECT * FROM v_data_efficiency WHERE sweep = ?1", -1, &st, NULL) != SQLITE_OK)
            return cg_err(CG_EFAIL, "bench view: %s", sqlite3_errmsg(db));
        sqlite3_bind_text(st, 1, sweep, -1, SQLITE_STATIC);
        rows = 0;
        while (sqlite3_step(st) == SQLITE_ROW) rows++;
        sqlite3_finalize(st);
        dt = cg_mono_time() - ts;
        if (dt < best_rows) best_rows = dt;
    }
    if (json)
        printf("{\"bench\":\"db\",\"figure\":\"view\",\"runs\":%lld,\"evals_per_run\":%d,\"groups\":%lld,"
               "\"view_ms\":%.3f,\"view_cpu_ms\":%.3f,\"view_rows\":%lld,\"view_rows_ms\":%.3f,"
               "\"populate_s\":%.3f}\n",
               (long long)runs, EVALS_PER_RUN, (long long)groups, best * 1e3, best_cpu * 1e3,
               (long long)rows, best_rows * 1e3, populate_s);
    else
        printf("view     %lld runs x %d evals: aggregated data-efficiency table (%lld groups) in %.3f ms; "
               "all %lld rows of v_data_efficiency in %.3f ms\n",
               (long long)runs, EVALS_PER_RUN, (long long)groups, best * 1e3, (long long)rows, best_rows * 1e3);
    return CG_OK;
}

int bench_db(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},   {"rows", required_argument, 0, 'r'},
                                         {"runs", required_argument, 0, 'n'}, {"steps", required_argument, 0, 's'},
                                         {"db", required_argument, 0, 'd'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int json = 0, rc = CG_OK, c;
    int64_t rows = 1000000, runs = 10000, steps = 20000;
    const char *path = NULL;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'r': rc = cg_parse_i64(optarg, "--rows", 1, INT64_C(1) << 40, &rows); break;
        case 'n': rc = cg_parse_i64(optarg, "--runs", 1, 100000000, &runs); break;
        case 's': rc = cg_parse_i64(optarg, "--steps", 1, INT64_C(1) << 40, &steps); break;
        case 'd': path = optarg; break;
        case 'h': usage(stdout); return CG_OK;
        default:
            return cg_report(cg_opt_error("bench db", argv, opts));
        }
    }
    if (rc) return cg_report(rc);
    if (optind < argc)
        return cg_report(cg_err(CG_EUSER, "bench db: unexpected argument '%s'", argv[optind]));
    char *dir = NULL, *scratch = NULL;
    if (!path) {
        char tmpl[] = "/tmp/cgvlm-bench-db-XXXXXX";
        if (!mkdtemp(tmpl)) return cg_report(cg_err(CG_EFAIL, "cannot create a scratch directory in /tmp"));
        dir = cg_strdup(tmpl);
        scratch = cg_path_join(dir, "bench.db");
        path = scratch;
    }
    sqlite3 *db = NULL;
    rc = store_open(path, STORE_CREATE, &db);
    if (!rc) rc = bench_ingest(db, rows, json);
    if (!rc) rc = bench_step(db, steps, json);
    if (!rc) rc = bench_view(db, runs, json);
    store_close(db);
    if (dir) cg_rm_rf(dir);
    free(dir), free(scratch);
    return cg_report(rc);
}
