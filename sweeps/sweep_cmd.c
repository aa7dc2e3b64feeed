/* sweep_cmd.c: `cgvlm sweep`, `cgvlm status`, `cgvlm cancel`, `cgvlm task` (internal) and
 * `cgvlm bench sched`; sched_execute, which `cgvlm run` shares. */
#define _GNU_SOURCE
#include "cli/commands.h"
#include "db/store.h"
#include "experiments/experiment.h"
#include "experiments/stage.h"
#include "kernels/gpu.h"
#include "sweeps/backend_slurm.h"
#include "sweeps/sched.h"
#include "sweeps/sched_cli.h"
#include "sweeps/sweep.h"
#include "sweeps/task.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"
#include "util/ux_opt.h"
#include "version.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t sweep_stop = 0;

static void on_stop(int sig) {
    (void)sig;
    if (sweep_stop < 2) sweep_stop++;
}

static int ncores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---------------------------------------------------------------- the shared options */

const char sched_cli_synopsis[] =
    "\n          [--db PATH] [--workspace DIR] [--workers N] [--device auto|cpu|cuda|cuda:N]\n"
    "          [--backend local|slurm [--partition P] [--account A] [--slurm-arg ARG]...]\n"
    "          [--max-attempts N] [--time-limit S]";

const char sched_cli_usage[] =
    "  --db PATH          results db (default $CGVLM_DB or results.db)\n"
    "  --workspace DIR    artifacts, checkpoints, logs (default $CGVLM_WORKSPACE or workspace)\n"
    "  --workers N        tasks at once (default: one per GPU, else one per CPU core)\n"
    "  --device D         auto, cpu, cuda or cuda:N for every run (sets the config key 'device';\n"
    "                     auto = the worker slot's: cuda on a GPU slot, else cpu). Not part of the\n"
    "                     task keys: stages done on another device are reused\n"
    "  --backend B        where tasks run: local (worker processes, the default) or slurm (one\n"
    "                     batch job per task attempt; see docs/SLURM.md)\n"
    "  --partition P, --account A, --slurm-arg ARG   passed to every sbatch (slurm only)\n"
    "  --max-attempts N   failures allowed per task (default: the sweep's max_attempts, else 3)\n"
    "  --time-limit S     seconds per task attempt, for every kind (default: the sweep's; with\n"
    "                     slurm, sbatch --time in whole minutes)\n";

static const char *default_workspace(void) {
    const char *w = getenv("CGVLM_WORKSPACE");
    return w && *w ? w : "workspace";
}

void sched_cli_init(sched_cli *o) {
    memset(o, 0, sizeof *o);
    o->db = store_default_path();
    o->workspace = default_workspace();
    memset(&sched_slurm, 0, sizeof sched_slurm);
}

/* The device value through the config's own validation (experiment.c exp_validate). */
static int check_device(const char *arg) {
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "device", arg);
    int rc = exp_resolve(cfg);
    cJSON_Delete(cfg);
    return rc ? cg_err_wrap(rc, "--device") : CG_OK;
}

int sched_cli_option(sched_cli *o, int c, const char *arg, int *handled) {
    *handled = 1;
    switch (c) {
    case SCHED_OPT_DB: o->db = arg; return CG_OK;
    case SCHED_OPT_WS: o->workspace = arg; return CG_OK;
    case SCHED_OPT_WORKERS: return cg_parse_int(arg, "--workers", 1, 1024, &o->workers);
    case SCHED_OPT_ATTEMPTS: return cg_parse_int(arg, "--max-attempts", 1, 1000, &o->max_attempts);
    case SCHED_OPT_LIMIT: {
        int rc = cg_parse_double(arg, "--time-limit", &o->time_limit);
        if (rc == CG_OK && !(o->time_limit > 0)) rc = cg_err(CG_EUSER, "--time-limit must be > 0 seconds");
        return rc;
    }
    case SCHED_OPT_DEVICE: {
        int rc = check_device(arg);
        if (rc == CG_OK) o->device = arg;
        return rc;
    }
    case SCHED_OPT_BACKEND:
        if (!strcmp(arg, "slurm")) sched_slurm.enabled = 1;
        else if (!strcmp(arg, "local")) sched_slurm.enabled = 0;
        else return cg_err(CG_EUSER, "--backend '%s' is not available; use 'local' or 'slurm'", arg);
        return CG_OK;
    case SCHED_OPT_PARTITION: sched_slurm.partition = arg; return CG_OK;
    case SCHED_OPT_ACCOUNT: sched_slurm.account = arg; return CG_OK;
    case SCHED_OPT_SLURM_ARG:
        if (sched_slurm.nargs == (int)CG_ARRAY_LEN(sched_slurm.args))
            return cg_err(CG_EUSER, "too many --slurm-arg options (at most %d)", (int)CG_ARRAY_LEN(sched_slurm.args));
        sched_slurm.args[sched_slurm.nargs++] = arg;
        return CG_OK;
    }
    *handled = 0;
    return CG_OK;
}

int sched_cli_check(const char *cmd) {
    if (!sched_slurm.enabled && (sched_slurm.partition || sched_slurm.account || sched_slurm.nargs))
        return cg_err(CG_EUSER, "%s: --partition, --account and --slurm-arg need --backend slurm", cmd);
    return CG_OK;
}

int sched_cli_apply(const sched_cli *o, sweep *sw) {
    int rc = CG_OK;
    for (int i = 0; o->device && i < sw->nruns && rc == CG_OK; i++)
        rc = exp_set(sw->runs[i].config, "device", cJSON_CreateString(o->device));
    return rc;
}

/* ---------------------------------------------------------------- dry run */

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void print_plan(const sweep *sw) {
    int counts[EXP_NSTAGES] = {0}, total = 0;
    const char **keys = cg_calloc((size_t)sw->nruns, sizeof *keys);
    for (int s = 0; s < EXP_NSTAGES; s++) {   /* distinct keys: sort, count changes */
        for (int i = 0; i < sw->nruns; i++) keys[i] = sw->runs[i].plan.task[s].key;
        qsort(keys, (size_t)sw->nruns, sizeof *keys, cmp_key);
        for (int i = 0; i < sw->nruns; i++) counts[s] += i == 0 || strcmp(keys[i], keys[i - 1]) != 0;
    }
    free(keys);
    for (int s = 0; s < EXP_NSTAGES; s++) total += counts[s];
    printf("sweep %s: %d runs, %d distinct tasks (%d stage executions without sharing)\n", sw->name,
           sw->nruns, total, sw->nruns * EXP_NSTAGES);
    printf("runs:\n");
    for (int i = 0; i < sw->nruns; i++)
        printf("  %s  (device %s)\n", sw->runs[i].name, cg_json_path(sw->runs[i].config, "device")->valuestring);
    printf("tasks per stage:\n");
    for (int s = 0; s < EXP_NSTAGES; s++)
        printf("  %-13s %d%s\n", exp_stage_name((exp_stage)s), counts[s],
               strcmp(sw->runs[0].plan.task[s].kind, "noop") ? "" : "  (noop)");
}

/* ---------------------------------------------------------------- execution */

int sched_execute(const sweep *sw, const sched_cli *cli, int progress) {
    sqlite3 *db = NULL;
    sched_backend *be = NULL;
    int64_t sweep_id = -1;
    char *ws = NULL;
    const char *db_path = cli->db, *device = cli->device;
    int workers = cli->workers, rc = CG_OK;

    int noop = 1;
    for (int i = 0; i < sw->nruns && noop; i++) noop = !strcmp(sw->runs[i].plan.task[0].kind, "noop");
    /* worker slots: one per GPU (each pinned to it) unless --workers or --device say otherwise;
     * --device cpu never asks about GPUs, cuda:N is one GPU: one slot */
    int gpus = 0;
    int cpu_only = device && !strcmp(device, "cpu"), one_gpu = device && !strncmp(device, "cuda:", 5);
    int want_gpu = device && !strncmp(device, "cuda", 4);
    if (!sched_slurm.enabled && want_gpu && !noop && cg_gpu_count() == 0)
        return cg_err(CG_EUSER, "--device %s: this machine has no usable GPU (see 'cgvlm env'); use --device cpu or auto",
                      device);
    if ((rc = cg_mkdir_p(cli->workspace))) return rc;
    ws = realpath(cli->workspace, NULL);   /* workers may run elsewhere: absolute paths */
    if (!ws) return cg_err(CG_EFAIL, "cannot resolve workspace '%s'", cli->workspace);
    if (workers <= 0) {
        gpus = noop || cpu_only || one_gpu ? 0 : cg_gpu_count();
        workers = one_gpu ? 1 : gpus > 0 ? gpus : ncores();
    }
    int threads = ncores() / workers > 0 ? ncores() / workers : 1;
    if ((rc = store_open(db_path, STORE_CREATE, &db))) goto out;
    if ((rc = sched_record(db, sw, CGVLM_GIT, &sweep_id))) goto out;
    char *db_abs = realpath(db_path, NULL);   /* workers get absolute paths */
    if (sched_slurm.enabled) rc = backend_slurm_open(db_abs ? db_abs : db_path, ws, sw, cli->time_limit, device, &be);
    else rc = backend_local_open(db_abs ? db_abs : db_path, ws, workers, gpus, threads, device, &be);
    free(db_abs);
    if (rc) goto out;
    if (progress && sched_slurm.enabled)
        cg_info("sweep %s: %d runs, one Slurm job per task attempt; workspace %s", sw->name, sw->nruns, ws);
    else if (progress)
        cg_info("sweep %s: %d runs on %d %s worker(s), %d thread(s) each%s%s; workspace %s", sw->name, sw->nruns,
                workers, gpus ? "GPU" : "CPU", threads, device ? ", device " : "", device ? device : "", ws);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;   /* no SA_RESTART: poll() returns at once */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sweep_stop = 0;
    sched_opts o = {db_path, ws, cli->max_attempts > 0 ? cli->max_attempts : sw->max_attempts, cli->time_limit, sw,
                    progress, &sweep_stop};
    sched_summary sum;
    rc = sched_run(db, sweep_id, be, &o, &sum);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc == CG_OK && progress)
        cg_info("sweep %s: all %d tasks done (%d run now, the rest reused) in %.1f s", sw->name, sum.tasks,
                sum.launched, sum.wall_s);
    if (rc == STAGE_CANCELLED)
        cg_info("sweep %s stopped: %d of %d task(s) done, the other %d wait; run the same command again to resume",
                sw->name, sum.done, sum.tasks, sum.tasks - sum.done);
    if (rc && rc != STAGE_CANCELLED) {
        char *msg = cg_strdup(cg_errmsg());
        cg_err(rc, "sweep '%s': %s; see 'cgvlm status --sweep %s'", sw->name, msg, sw->name);
        free(msg);
    }
out:
    if (be) be->close(be);
    if (db && sweep_id >= 0) sched_release(db, sweep_id);
    store_close(db);
    free(ws);
    return rc;
}

enum { OPT_DRY = 1000, OPT_SWEEP, OPT_WATCH, OPT_KEY, OPT_ATTEMPT, OPT_THREADS, OPT_WORKER, OPT_JSON, OPT_TASKS,
       OPT_SLEEP, OPT_INTERVAL, OPT_SPEC, OPT_DB, OPT_WS, OPT_HELP };

static const char sweep_usage_head[] =
    "usage: cgvlm sweep SWEEP.json [--dry-run]";
static const char sweep_usage_body[] =
    "\n\n"
    "expands the sweep (grid of axes x seeds), refuses it whole if anything is wrong, records runs\n"
    "and their deduplicated tasks in the results db and runs the tasks in dependency order, each\n"
    "in its own process. Re-running the command resumes: done tasks are skipped (also those done\n"
    "by other sweeps), failed, crashed and cancelled ones run again. Ctrl-C stops gracefully.\n"
    "\n"
    "  --dry-run          print the runs (with their device) and the distinct tasks per stage;\n"
    "                     touch nothing\n";

int cmd_sweep(int argc, char **argv) {
    static const struct option opts[] = {
        {"dry-run", no_argument, NULL, OPT_DRY}, SCHED_CLI_LONG_OPTS, {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};
    sched_cli cli;
    sched_cli_init(&cli);
    int dry = 0, rc = CG_OK;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled;
        if ((rc = sched_cli_option(&cli, c, optarg, &handled))) return cg_report(rc);
        if (handled) continue;
        switch (c) {
        case OPT_DRY: dry = 1; break;
        case OPT_HELP: case 'h':
            printf("%s%s%s%ssee docs/SWEEPS.md for the sweep file format.\n", sweep_usage_head, sched_cli_synopsis,
                   sweep_usage_body, sched_cli_usage);
            return CG_OK;
        default:
            return cg_report(cg_opt_error("sweep", argv, opts));
        }
    }
    if ((rc = sched_cli_check("sweep"))) return cg_report(rc);
    if (optind < argc - 1)
        return cg_report(cg_err(CG_EUSER, "sweep: unexpected argument '%s' after the sweep file '%s' (one sweep at a "
                                "time); see 'cgvlm sweep --help'", argv[optind + 1], argv[optind]));
    if (optind != argc - 1)
        return cg_report(cg_err(CG_EUSER, "sweep: give exactly one sweep file; see 'cgvlm sweep --help'"));
    sweep sw;
    if ((rc = sweep_load(argv[optind], CGVLM_GIT, &sw))) return cg_report(rc);
    rc = sched_cli_apply(&cli, &sw);
    if (rc == CG_OK && dry) print_plan(&sw);
    else if (rc == CG_OK) rc = sched_execute(&sw, &cli, 1);
    sweep_free(&sw);
    if (rc == STAGE_CANCELLED) return 130;
    return cg_report(rc);
}

/* ---------------------------------------------------------------- status */

static void fmt_secs(char *out, size_t n, double s) {
    if (s < 0 || !isfinite(s)) snprintf(out, n, "?");
    else if (s < 10) snprintf(out, n, "%.2fs", s);
    else if (s < 60) snprintf(out, n, "%.0fs", s);
    else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

#define SWEEP_TASKS "(SELECT DISTINCT task_id FROM runs JOIN run_tasks USING (run_id) WHERE runs.sweep_id = ?1)"
#define STAGE_EXPR "CASE WHEN kind = 'noop' THEN 'noop:' || json_extract(config_json, '$.stage') ELSE kind END"

/* One sweep's status; *active = a live scheduler owns it or tasks run. */
static int status_sweep(sqlite3 *db, int64_t id, const char *name, int *active) {
    sqlite3_stmt *st;
    char a[32], b[32];
    *active = 0;
    if (sqlite3_prepare_v2(db, "SELECT owner_host, owner_pid, owner_heartbeat, created_at FROM sweeps WHERE sweep_id = ?", -1, &st, NULL))
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    printf("sweep %s", name);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 1) != SQLITE_NULL) {
        const char *host = (const char *)sqlite3_column_text(st, 0);
        int64_t pid = sqlite3_column_int64(st, 1);
        int local = host && !strcmp(host, sched_hostname());
        int alive = local ? sched_proc_alive(pid) : cg_wall_time() - sqlite3_column_double(st, 2) < 120;
        printf(": %s by pid %lld on %s (heartbeat %.0f s ago)", alive ? "running" : "scheduler gone",
               (long long)pid, host ? host : "?", cg_wall_time() - sqlite3_column_double(st, 2));
        *active = alive;
    } else {
        printf(": not running");
    }
    printf("\n");
    sqlite3_finalize(st);

    /* the mean task time over all stages: the guess for stages with no finished task yet */
    double overall = -1;
    if (sqlite3_prepare_v2(db, "SELECT AVG(ended_at - started_at) FROM tasks WHERE state = 'done' AND task_id IN " SWEEP_TASKS,
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) overall = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
    }
    /* per stage: counts by state, mean duration of done tasks, remaining work */
    if (sqlite3_prepare_v2(db,
                           "SELECT " STAGE_EXPR " AS stage, COUNT(*), SUM(state = 'done'), SUM(state = 'running'), "
                           "SUM(state = 'queued'), SUM(state = 'failed'), SUM(state = 'crashed'), SUM(state = 'cancelled'), "
                           "AVG(CASE WHEN state = 'done' THEN ended_at - started_at END), "
                           "SUM(CASE WHEN state = 'running' THEN 1 - COALESCE(progress, 0) ELSE 0 END), MIN(task_id) "
                           "FROM tasks WHERE task_id IN " SWEEP_TASKS " GROUP BY stage ORDER BY MIN(task_id)",
                           -1, &st, NULL))
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    printf("  %-18s %5s %5s %5s %6s %5s %7s %9s %8s\n", "stage", "tasks", "done", "run", "queued", "fail",
           "crashed", "cancelled", "mean");
    double remaining = 0;
    int running = 0, unknown = 0, all = 0, done = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int n = sqlite3_column_int(st, 1), d = sqlite3_column_int(st, 2), r = sqlite3_column_int(st, 3);
        int left = n - d - r;
        double mean = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 8);
        fmt_secs(a, sizeof a, mean);
        printf("  %-18s %5d %5d %5d %6d %5d %7d %9d %8s\n", (const char *)sqlite3_column_text(st, 0), n, d, r,
               sqlite3_column_int(st, 4), sqlite3_column_int(st, 5), sqlite3_column_int(st, 6),
               sqlite3_column_int(st, 7), mean < 0 ? "-" : a);
        running += r, all += n, done += d;
        if (mean < 0 && (left || r)) {
            unknown = 1;
            mean = overall;
        }
        if (mean >= 0) remaining += mean * (left + sqlite3_column_double(st, 9));
    }
    sqlite3_finalize(st);
    if (done < all && !*active && running == 0) {
        printf("  %d/%d tasks done; not running (re-run the sweep to resume)\n", done, all);
    } else if (done < all) {
        double eta = remaining / (running > 0 ? running : 1);
        fmt_secs(a, sizeof a, eta);
        if (unknown && overall < 0)
            printf("  %d/%d tasks done; ETA unknown until a task finishes\n", done, all);
        else
            printf("  %d/%d tasks done; ETA %s%s\n", done, all, a,
                   unknown ? " (rough: stages without a finished task are guessed from the others)" : "");
    } else {
        printf("  all %d tasks done\n", all);
    }
    *active |= running > 0;

    /* runs */
    if (sqlite3_prepare_v2(db, "SELECT run, state, n_done, n_tasks FROM v_runs WHERE sweep = ? ORDER BY run_id", -1, &st, NULL))
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    printf("  runs:\n");
    while (sqlite3_step(st) == SQLITE_ROW)
        printf("    %-11s %d/%d  %s\n", (const char *)sqlite3_column_text(st, 1), sqlite3_column_int(st, 2),
               sqlite3_column_int(st, 3), (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);

    /* running tasks as they report (local: the heartbeat and the live sink; Slurm: the job's
     * progress file, read by the scheduler): progress, last loss and tokens/s, where */
    if (sqlite3_prepare_v2(db, "SELECT " STAGE_EXPR ", key, progress, heartbeat_at, job_id, host, "
                               "(SELECT m.value FROM metrics m WHERE m.task_id = t.task_id AND m.name_id = "
                               "(SELECT name_id FROM metric_names WHERE name = 'loss') ORDER BY m.step DESC LIMIT 1), "
                               "(SELECT m.value FROM metrics m WHERE m.task_id = t.task_id AND m.name_id = "
                               "(SELECT name_id FROM metric_names WHERE name = 'tokens_per_s') ORDER BY m.step DESC LIMIT 1) "
                               "FROM tasks t WHERE task_id IN " SWEEP_TASKS " AND state = 'running' ORDER BY started_at LIMIT 20",
                           -1, &st, NULL))
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    for (int nr = 0; sqlite3_step(st) == SQLITE_ROW; nr++) {
        if (!nr) printf("  running:\n");
        printf("    %-18s %.12s %3.0f%%", (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
               100 * sqlite3_column_double(st, 2));
        if (sqlite3_column_type(st, 6) != SQLITE_NULL) printf("  loss %.4f", sqlite3_column_double(st, 6));
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) printf("  %.0f tok/s", sqlite3_column_double(st, 7));
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) printf("  Slurm job %s", (const char *)sqlite3_column_text(st, 4));
        else if (sqlite3_column_type(st, 5) != SQLITE_NULL) printf("  on %s", (const char *)sqlite3_column_text(st, 5));
        if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
            fmt_secs(b, sizeof b, cg_wall_time() - sqlite3_column_double(st, 3));
            printf(", heard from %s ago", b);
        }
        printf("\n");
    }
    sqlite3_finalize(st);

    /* failures */
    if (sqlite3_prepare_v2(db, "SELECT " STAGE_EXPR ", key, state, attempts, max_attempts, error, ended_at - started_at FROM tasks "
                               "WHERE task_id IN " SWEEP_TASKS " AND state IN ('failed','crashed') ORDER BY task_id", -1, &st, NULL))
        return cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    int nf = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (!nf++) printf("  failures:\n");
        fmt_secs(b, sizeof b, sqlite3_column_double(st, 6));
        printf("    %-7s %s %.12s after %d attempt(s) (%s): %s\n", (const char *)sqlite3_column_text(st, 2),
               (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
               sqlite3_column_int(st, 3), b,
               sqlite3_column_text(st, 5) ? (const char *)sqlite3_column_text(st, 5) : "(no error text)");
    }
    sqlite3_finalize(st);
    return CG_OK;
}

static int status_once(const char *db_path, const char *only, int *active) {
    sqlite3 *db;
    int rc = store_open(db_path, STORE_READONLY, &db);
    if (rc) return rc;
    sqlite3_stmt *st;
    *active = 0;
    if (sqlite3_prepare_v2(db, "SELECT sweep_id, name FROM sweeps WHERE ?1 IS NULL OR name = ?1 ORDER BY sweep_id", -1, &st, NULL)) {
        rc = cg_err(CG_EFAIL, "results db: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (only) sqlite3_bind_text(st, 1, only, -1, SQLITE_STATIC);
    int n = 0;
    while (rc == CG_OK && sqlite3_step(st) == SQLITE_ROW) {
        int act;
        if (n++) printf("\n");
        rc = status_sweep(db, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1), &act);
        *active |= act;
    }
    sqlite3_finalize(st);
    if (rc == CG_OK && n == 0)
        rc = only ? cg_err(CG_EUSER, "there is no sweep named '%s' in results db '%s'", only, db_path)
                  : (printf("no sweeps in results db '%s'\n", db_path), CG_OK);
out:
    store_close(db);
    return rc;
}

int cmd_status(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, OPT_DB}, {"sweep", required_argument, NULL, OPT_SWEEP},
        {"watch", no_argument, NULL, OPT_WATCH}, {"interval", required_argument, NULL, OPT_INTERVAL},
        {"help", no_argument, NULL, OPT_HELP}, {NULL, 0, NULL, 0}};
    const char *db = store_default_path(), *only = NULL;
    int watch = 0, rc = CG_OK;
    double interval = 2;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DB: db = optarg; break;
        case OPT_SWEEP: only = optarg; break;
        case OPT_WATCH: watch = 1; break;
        case OPT_INTERVAL:
            rc = cg_parse_double(optarg, "--interval", &interval);
            if (rc == CG_OK && !(interval >= 0.1)) rc = cg_err(CG_EUSER, "--interval must be at least 0.1 s");
            break;
        case OPT_HELP: case 'h':
            printf("usage: cgvlm status [--db PATH] [--sweep NAME] [--watch [--interval S]]\n\n"
                   "progress of every sweep (or one): tasks per stage and state, mean task time, ETA, every\n"
                   "run's state, and the failed or crashed tasks with their error text.\n"
                   "\n"
                   "  --db PATH      the results db (default $CGVLM_DB, else results.db)\n"
                   "  --sweep NAME   only this sweep (default: every sweep in the db)\n"
                   "  --watch        redraw until the sweep stops (Ctrl-C leaves; the sweep keeps running)\n"
                   "  --interval S   seconds between redraws with --watch (default 2, at least 0.1)\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("status", argv, opts));
        }
        if (rc) return cg_report(rc);
    }
    if (optind != argc) return cg_report(cg_err(CG_EUSER, "status: unexpected argument '%s'", argv[optind]));
    int active = 0;
    do {
        if (watch && isatty(1)) printf("\033[H\033[2J");
        rc = status_once(db, only, &active);
        fflush(stdout);
        if (rc || !watch || !active) break;
        struct timespec ts = {(time_t)interval, (long)((interval - floor(interval)) * 1e9)};
        nanosleep(&ts, NULL);
    } while (1);
    return cg_report(rc);
}

/* ---------------------------------------------------------------- cancel */

int cmd_cancel(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, NULL, OPT_DB},
                                         {"sweep", required_argument, NULL, OPT_SWEEP},
                                         {"help", no_argument, NULL, OPT_HELP}, {NULL, 0, NULL, 0}};
    const char *db_path = store_default_path(), *name = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DB: db_path = optarg; break;
        case OPT_SWEEP: name = optarg; break;
        case OPT_HELP: case 'h':
            printf("usage: cgvlm cancel --sweep NAME [--db PATH]\n\n"
                   "asks the scheduler running the sweep to stop: its running tasks checkpoint and are\n"
                   "marked cancelled; re-running the sweep resumes them. With the Slurm backend and no\n"
                   "scheduler alive, scancels the sweep's jobs.\n"
                   "\n"
                   "  --sweep NAME   the sweep to stop (see 'cgvlm status' for the names)\n"
                   "  --db PATH      the results db (default $CGVLM_DB, else results.db)\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("cancel", argv, opts));
        }
    }
    if (!name || optind != argc) return cg_report(cg_err(CG_EUSER, "cancel: give --sweep NAME; see 'cgvlm cancel --help'"));
    sqlite3 *db;
    int rc = store_open(db_path, STORE_READONLY, &db);
    if (rc == CG_OK) rc = sched_cancel_sweep(db, name);
    int orphans = 0;   /* no scheduler, but Slurm jobs it left: cancel those */
    if (rc == CG_EUSER && db && slurm_cancel_orphans(db, name, &orphans) == CG_OK && orphans > 0) {
        cg_err_clear();
        rc = CG_OK;
        printf("sweep '%s' has no scheduler; cancelled its %d Slurm job(s); re-run the sweep to record them and resume\n",
               name, orphans);
    }
    store_close(db);
    return cg_report(rc);
}

/* ---------------------------------------------------------------- task (internal) */

int cmd_task(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, OPT_DB},           {"workspace", required_argument, NULL, OPT_WS},
        {"key", required_argument, NULL, OPT_KEY},         {"attempt", required_argument, NULL, OPT_ATTEMPT},
        {"threads", required_argument, NULL, OPT_THREADS}, {"worker", no_argument, NULL, OPT_WORKER},
        {"spec", required_argument, NULL, OPT_SPEC},
        {"help", no_argument, NULL, OPT_HELP},             {NULL, 0, NULL, 0}};
    const char *db = store_default_path(), *ws = default_workspace(), *key = NULL, *spec = NULL;
    int attempt = 0, threads = ncores(), worker = 0, rc = CG_OK;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DB: db = optarg; break;
        case OPT_WS: ws = optarg; break;
        case OPT_KEY: key = optarg; break;
        case OPT_ATTEMPT: rc = cg_parse_int(optarg, "--attempt", 1, 1 << 30, &attempt); break;
        case OPT_THREADS: rc = cg_parse_int(optarg, "--threads", 1, 4096, &threads); break;
        case OPT_WORKER: worker = 1; break;
        case OPT_SPEC: spec = optarg; break;
        case OPT_HELP: case 'h':
            printf("usage: cgvlm task --key KEY [--db PATH] [--workspace DIR] [--attempt N] [--threads N]\n"
                   "       cgvlm task --worker --db PATH --workspace DIR   (the local backend's worker)\n"
                   "       cgvlm task --spec FILE   (a Slurm job: no db; results go to the task's journal)\n\n"
                   "(internal) runs one attempt of one task of the results db: what the scheduler's workers\n"
                   "and Slurm jobs execute. Without --attempt the task is claimed first.\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("task", argv, opts));
        }
        if (rc) return cg_report(rc);
    }
    if (worker) return task_worker(db, ws, threads);
    if (spec) return task_spec_main(spec);
    if (!key || optind != argc) return cg_report(cg_err(CG_EUSER, "task: give --key KEY; see 'cgvlm task --help'"));
    const char *dev = getenv("CGVLM_DEVICE");
    return task_main(db, ws, key, attempt, threads, dev ? dev : "cpu", getenv("CGVLM_DEVICE_FORCE"));
}

/* ---------------------------------------------------------------- bench sched */

int bench_sched(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, NULL, OPT_JSON},       {"tasks", required_argument, NULL, OPT_TASKS},
        {"workers", required_argument, NULL, SCHED_OPT_WORKERS}, {"sleep-ms", required_argument, NULL, OPT_SLEEP},
        SCHED_BACKEND_LONG_OPTS,
        {"help", no_argument, NULL, OPT_HELP},       {NULL, 0, NULL, 0}};
    int json = 0, ntasks = 1000, sleep_ms = 0, rc = CG_OK;
    sched_cli cli;
    sched_cli_init(&cli);
    cli.workers = ncores();
    cli.max_attempts = 1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled;
        if ((rc = sched_cli_option(&cli, c, optarg, &handled))) return cg_report(rc);
        if (handled) continue;
        switch (c) {
        case OPT_JSON: json = 1; break;
        case OPT_TASKS: rc = cg_parse_int(optarg, "--tasks", 6, 1000000, &ntasks); break;
        case OPT_SLEEP: rc = cg_parse_int(optarg, "--sleep-ms", 0, 60000, &sleep_ms); break;
        case OPT_HELP: case 'h':
            printf("usage: cgvlm bench sched [--json] [--tasks N] [--workers N] [--sleep-ms MS]\n"
                   "                         [--backend local|slurm [--partition P] ...]\n\n"
                   "runs a noop sweep of about N tasks (chains of 6 stages, default 1000, each sleeping MS)\n"
                   "through the whole scheduler (expansion, recording, claims, worker processes, artifact\n"
                   "publication) in a temporary workspace and reports the overhead per task:\n"
                   "(wall - tasks x sleep / workers) / tasks.\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("bench sched", argv, opts));
        }
        if (rc) return cg_report(rc);
    }
    char tmpl[] = "/tmp/cgvlm-bench-sched-XXXXXX";
    if (!mkdtemp(tmpl)) return cg_report(cg_err(CG_EFAIL, "cannot create a temporary directory"));
    char *db_path = cg_fmt("%s/results.db", tmpl), *ws = cg_fmt("%s/ws", tmpl);
    int workers = cli.workers;
    cli.db = db_path, cli.workspace = ws;
    int nruns = (ntasks + EXP_NSTAGES - 1) / EXP_NSTAGES;
    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "name", "bench-sched");
    cJSON *base = cJSON_AddObjectToObject(spec, "base");
    cJSON_AddStringToObject(base, "pipeline", "noop");
    cJSON *noop = cJSON_AddObjectToObject(base, "noop");
    cJSON_AddNumberToObject(noop, "sleep_ms", sleep_ms);
    cJSON_AddBoolToObject(noop, "output", 0);   /* trivial: the stage writes nothing; its (empty) artifact is still published */
    cJSON *axis = cJSON_AddArrayToObject(cJSON_AddObjectToObject(spec, "axes"), "world.seed");
    for (int i = 0; i < nruns; i++) cJSON_AddItemToArray(axis, cJSON_CreateNumber(i));
    sweep sw;
    double t0 = cg_mono_time();
    rc = sweep_from_spec(spec, NULL, "bench", CGVLM_GIT, &sw);
    cJSON_Delete(spec);
    if (rc == CG_OK) {
        int q = cg_quiet;
        cg_quiet = 1;
        rc = sched_execute(&sw, &cli, 0);
        cg_quiet = q;
        sweep_free(&sw);
    }
    double wall = cg_mono_time() - t0;
    int tasks = nruns * EXP_NSTAGES;
    double ideal = tasks * sleep_ms / 1000.0 / workers;
    double over = (wall - ideal) / tasks * 1000.0;
    cg_rm_rf(tmpl);
    free(db_path), free(ws);
    if (rc) return cg_report(cg_err_wrap(rc, "bench sched"));
    if (json)
        printf("{\"bench\":\"sched\",\"backend\":\"%s\",\"tasks\":%d,\"workers\":%d,\"sleep_ms\":%d,\"wall_s\":%.3f,\"ideal_s\":%.3f,"
               "\"overhead_ms_per_task\":%.3f,\"target_ms\":5,\"cores\":%d}\n",
               sched_slurm.enabled ? "slurm" : "local", tasks, workers, sleep_ms, wall, ideal, over, ncores());
    else
        printf("sched (%s): %d noop tasks (%d runs x 6 stages), %d workers, %d ms each: wall %.2f s, ideal %.2f s, "
               "overhead %.2f ms per task (target <= 5)\n", sched_slurm.enabled ? "slurm" : "local", tasks, nruns, workers, sleep_ms, wall, ideal, over);
    return CG_OK;
}
