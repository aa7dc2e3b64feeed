/* task_slurm.c: the Slurm job's side: `cgvlm task --spec FILE` runs one attempt from the spec
 * the scheduler wrote, without ever opening the results db (it may sit on NFS, where SQLite's
 * locks cannot be trusted). What the stage reports goes to the task's journal; the attempt's
 * outcome is the journal's last record:
 *   {"t":"outcome","attempt":N,"state":"done|failed|cancelled","error":..,"exit":..,"host":..,
 *    "job":..,"started":..,"ended":..,"artifact":"artifacts/KEY","size":..,"sha256":..}
 * appended and fsync'ed after every metric. The scheduler ingests it (journal_ingest.c).
 *
 * While the stage runs, its progress goes to <workspace>/work/KEY/progress.json, rewritten
 * atomically at most every SLURM_PROGRESS_S seconds:
 *   {"attempt":N,"fraction":0.42,"wall":..,"loss":{"step":120,"value":2.31},
 *    "tokens_per_s":{"step":120,"value":5400}}
 * (the last loss and tokens/s the stage logged); the scheduler's poll reads it for its running
 * jobs (backend_slurm.c), so `cgvlm status` and its terminal line show Slurm tasks live. */
#define _GNU_SOURCE
#include "core/metrics.h"
#include "experiments/stage.h"
#include "sweeps/backend_slurm.h"
#include "sweeps/task.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t spec_cancel = 0;

/* ---------------------------------------------------------------- live progress */

/* A sink that keeps the last loss and tokens/s the stage logged (teed beside the journal). */
typedef struct {
    metrics_sink self;
    int have[2];
    int64_t step[2];
    double value[2];
} peek_sink;

static const char *const peek_names[2] = {"loss", "tokens_per_s"};

static int peek_scalar(void *ctx, const char *name, int64_t step, double value) {
    peek_sink *p = ctx;
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, peek_names[i])) p->have[i] = 1, p->step[i] = step, p->value[i] = value;
    return CG_OK;
}

typedef struct {
    char *path;          /* work/KEY/progress.json */
    int attempt;
    double last;         /* monotonic time of the last write; < 0: never */
    const peek_sink *peek;
} progress_file;

/* stage_progress's callback: a missed write is no failure (the scheduler reads the next one). */
static void write_progress(void *arg, double fraction) {
    progress_file *pf = arg;
    double now = cg_mono_time();
    if (pf->last >= 0 && now - pf->last < SLURM_PROGRESS_S && fraction < 1) return;
    pf->last = now;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "attempt", pf->attempt);
    cJSON_AddNumberToObject(o, "fraction", fraction);
    cJSON_AddNumberToObject(o, "wall", cg_wall_time());
    for (int i = 0; i < 2; i++) {
        if (!pf->peek->have[i]) continue;
        cJSON *m = cJSON_AddObjectToObject(o, peek_names[i]);
        cJSON_AddNumberToObject(m, "step", (double)pf->peek->step[i]);
        cJSON_AddNumberToObject(m, "value", pf->peek->value[i]);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (cg_write_file_atomic(pf->path, text, strlen(text)) != CG_OK) cg_err_clear();
    cJSON_free(text);
}

static void on_stop(int sig) {
    (void)sig;
    spec_cancel = 1;
}

static int write_outcome(const char *journal, int attempt, const char *state, const char *error, int exit_status,
                         double started, const char *artifact, int64_t size, const char *sha) {
    cJSON *o = cJSON_CreateObject();
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *job = getenv("SLURM_JOB_ID");
    cJSON_AddStringToObject(o, "t", "outcome");
    cJSON_AddNumberToObject(o, "attempt", attempt);
    cJSON_AddStringToObject(o, "state", state);
    if (error) cJSON_AddStringToObject(o, "error", error);
    cJSON_AddNumberToObject(o, "exit", exit_status);
    cJSON_AddStringToObject(o, "host", host);
    if (job) cJSON_AddStringToObject(o, "job", job);
    cJSON_AddNumberToObject(o, "started", started);
    cJSON_AddNumberToObject(o, "ended", cg_wall_time());
    if (artifact) {
        cJSON_AddStringToObject(o, "artifact", artifact);
        cJSON_AddNumberToObject(o, "size", (double)size);
        cJSON_AddStringToObject(o, "sha256", sha);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int rc = CG_OK;
    int fd = open(journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    size_t n = strlen(line);
    line[n] = '\n';   /* replaces the NUL: write n + 1 bytes, no terminator needed */
    if (fd < 0 || write(fd, line, n + 1) != (ssize_t)(n + 1) || fsync(fd) != 0)
        rc = cg_err(CG_EFAIL, "cannot write the outcome to journal '%s': %s", journal, strerror(errno));
    if (fd >= 0) close(fd);
    cJSON_free(line);
    return rc;
}

static const char *spec_str(const cJSON *spec, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int task_spec_main(const char *spec_path) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    double started = cg_wall_time();

    cJSON *spec = NULL;
    char *text = NULL, *work = NULL, *staging = NULL, *final = NULL, *rel = NULL;
    metrics_sink *sink = NULL, *tee = NULL;
    peek_sink peek = {.self = {.ctx = &peek, .scalar = peek_scalar}};
    progress_file pf = {NULL, 0, -1, &peek};
    size_t len;
    int rc = cg_read_file(spec_path, &text, &len);
    if (rc == CG_OK) rc = cg_json_parse(text, spec_path, &spec);
    free(text);
    if (rc) return cg_report(rc);
    const char *key = spec_str(spec, "key"), *kind = spec_str(spec, "kind"), *ws = spec_str(spec, "workspace");
    const char *journal = spec_str(spec, "journal"), *device = spec_str(spec, "device");
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(spec, "attempt");
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(spec, "threads");
    const cJSON *stage_cfg = cJSON_GetObjectItemCaseSensitive(spec, "stage_config");
    const cJSON *run_cfg = cJSON_GetObjectItemCaseSensitive(spec, "run_config");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(spec, "upstream");
    if (!key || !kind || !ws || !journal || !cJSON_IsNumber(att) || !cJSON_IsObject(stage_cfg) ||
        !cJSON_IsObject(run_cfg) || !cJSON_IsObject(up)) {
        cJSON_Delete(spec);
        return cg_report(cg_err(CG_EUSER, "task spec '%s' lacks a field (key, kind, workspace, journal, attempt, "
                                          "stage_config, run_config, upstream)", spec_path));
    }
    int attempt = att->valueint, result = TASK_FAILED;

    work = cg_fmt("%s/work/%s", ws, key);
    staging = cg_fmt("%s/staging/%s.%d", ws, key, attempt);
    rel = cg_fmt("artifacts/%s", key);
    final = cg_path_join(ws, rel);
    if ((rc = cg_mkdir_p(work)) || (rc = metrics_journal_open(journal, &sink)))
        goto fail;
    tee = metrics_tee(sink, &peek.self);
    pf.path = cg_path_join(work, "progress.json");
    pf.attempt = attempt;

    const char *stage_device = "cpu";   /* cuda:N: pinned to the N-th of the job's GPUs */
    if ((rc = task_pin_gpu(device ? device : "cpu", &stage_device))) goto fail;
    /* the CPUs Slurm gave the job (a --slurm-arg=--cpus-per-task=N wins over the kind's cpus) */
    int nthreads = cJSON_IsNumber(threads) && threads->valueint > 0 ? threads->valueint : 1;
    const char *given = getenv("SLURM_CPUS_PER_TASK");
    int cpus;
    if (given && cg_parse_int(given, "SLURM_CPUS_PER_TASK", 1, 4096, &cpus) == CG_OK) nthreads = cpus;
    cg_err_clear();
    printf("cgvlm task %.12s: %s, attempt %d, device %s, %d thread(s)\n", key, kind, attempt, device ? device : "cpu",
           nthreads);
    fflush(stdout);
    stage_ctx ctx = {
        .kind = kind, .stage = EXP_EVAL, .key = key, .run_config = run_cfg, .stage_config = stage_cfg,
        .workspace = ws, .work_dir = work, .out_dir = staging, .metrics = tee, .cancel = &spec_cancel,
        .progress = write_progress, .progress_arg = &pf, .attempt = attempt, .threads = nthreads,
        .device = stage_device,
    };
    int stage = exp_stage_from_name(kind);
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(stage_cfg, "stage");
    if (stage < 0 && cJSON_IsString(sn)) stage = exp_stage_from_name(sn->valuestring);
    if (stage >= 0) ctx.stage = (exp_stage)stage;
    for (const cJSON *u = up->child; u && rc == CG_OK; u = u->next) {
        int s = exp_stage_from_name(u->string);
        if (s < 0 || !cJSON_IsString(u)) {
            rc = cg_err(CG_EUSER, "task spec '%s': bad upstream entry '%s'", spec_path, u->string);
        } else if (!cg_is_dir(u->valuestring)) {
            rc = cg_err(CG_EFAIL, "upstream %s artifact '%s' is missing (is the workspace on a filesystem "
                                  "this node shares?)", u->string, u->valuestring);
        } else {
            ctx.upstream[s] = u->valuestring;
        }
    }
    if (rc) goto fail;
    cg_rm_rf(staging);
    if ((rc = cg_mkdir_p(staging))) goto fail;
    rc = stage_execute(&ctx);
    int frc = metrics_flush(sink);
    metrics_close(tee);
    metrics_close(sink);
    sink = tee = NULL;
    if (rc == CG_OK) rc = frc;
    if (rc == CG_OK) {
        int64_t size = 0;
        char sha[65];
        if ((rc = task_publish(staging, final)) == CG_OK && (rc = task_artifact_digest(final, &size, sha)) == CG_OK &&
            (rc = write_outcome(journal, attempt, "done", NULL, TASK_DONE, started, rel, size, sha)) == CG_OK) {
            result = TASK_DONE;
            goto out;
        }
    }
    if (rc == STAGE_CANCELLED) {
        cg_rm_rf(staging);
        rc = write_outcome(journal, attempt, "cancelled", "cancelled; its checkpoint is kept for the next attempt",
                           TASK_CANCELLED, started, NULL, 0, NULL);
        result = rc ? TASK_FAILED : TASK_CANCELLED;
        if (rc) cg_report(rc);
        goto out;
    }
fail:
    metrics_close(tee);
    tee = NULL;
    if (sink) metrics_close(sink);
    sink = NULL;
    {
        char *err = cg_strdup(cg_errmsg()[0] ? cg_errmsg() : "failed");
        fprintf(stderr, "cgvlm task %.12s: %s\n", key, err);
        /* an error in the task's input fails every attempt the same way: exit status 2, no retry */
        result = rc == CG_EUSER ? TASK_BAD_INPUT : TASK_FAILED;
        if (write_outcome(journal, attempt, "failed", err, result, started, NULL, 0, NULL)) cg_report(CG_EFAIL);
        free(err);
    }
    cg_rm_rf(staging);
out:
    free(pf.path);
    free(work), free(staging), free(final), free(rel);
    cJSON_Delete(spec);
    return result;
}
