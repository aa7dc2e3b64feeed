/* stage.c: the stage dispatch table, the noop stage (tests, benchmarks) and the world stage's
 * entry (see stage.h). */
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "experiments/world.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*stage_fn)(stage_ctx *ctx);

/* Every kind the scheduler knows. A new kind: its function in experiments/stage_KIND.c, a line here. */
static const struct {
    const char *kind;
    stage_fn fn;
} stage_table[] = {
    {"noop", stage_noop},
    {"world", stage_world},
    {"lm_pretrain", stage_lm_pretrain},
    {"vit_pretrain", stage_vit_pretrain},
    {"align", stage_align},
    {"instruct", stage_instruct},
    {"eval", stage_eval},
};

int stage_kind_known(const char *kind) {
    for (size_t i = 0; i < CG_ARRAY_LEN(stage_table); i++)
        if (!strcmp(stage_table[i].kind, kind)) return 1;
    return 0;
}

int stage_execute(stage_ctx *ctx) {
    for (size_t i = 0; i < CG_ARRAY_LEN(stage_table); i++) {
        if (!strcmp(stage_table[i].kind, ctx->kind)) return stage_table[i].fn(ctx);
    }
    return cg_err(CG_EUSER, "unknown stage kind '%s'", ctx->kind);
}

int stage_progress(stage_ctx *ctx, double fraction) {
    stage_follow_threads(ctx);
    if (ctx->progress) ctx->progress(ctx->progress_arg, fraction);
    return stage_cancelled(ctx) ? STAGE_CANCELLED : CG_OK;
}

/* ---------------------------------------------------------------- world */


/* The world stage: world_generate into the staging dir, from the stage's "world" section. */
int stage_world(stage_ctx *ctx) {
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(ctx->stage_config, "world");
    world_options o;
    world_options_default(&o);
    int64_t seed = 0, v[7];
    static const char *const counts[] = {"image_size", "n_align", "n_instruct", "n_corpus",
                                         "n_corpus_heldout", "n_bench", "n_heldout"};
    int rc = cg_json_get_int(w, "seed", 1, &seed);
    for (size_t i = 0; i < CG_ARRAY_LEN(counts) && rc == CG_OK; i++) rc = cg_json_get_int(w, counts[i], 1, &v[i]);
    if (rc) return cg_err_wrap(rc, "world stage config");
    o.seed = (uint64_t)seed;
    o.image_size = (int)v[0], o.n_align = (int)v[1], o.n_instruct = (int)v[2], o.n_corpus = (int)v[3];
    o.n_corpus_heldout = (int)v[4], o.n_bench = (int)v[5], o.n_heldout = (int)v[6];
    if (stage_progress(ctx, 0) == STAGE_CANCELLED) return STAGE_CANCELLED;
    /* world_generate takes SIGINT/SIGTERM itself while it runs (and stops cleanly): a stop
     * request then surfaces as its error, which is a cancellation here (it restarts from zero) */
    rc = world_generate(ctx->out_dir, &o, 1, NULL);
    if (rc && strstr(cg_errmsg(), "interrupted by signal")) {
        *ctx->cancel = 1;
        return STAGE_CANCELLED;
    }
    if (rc == CG_OK) stage_progress(ctx, 1);
    return rc;
}

/* ---------------------------------------------------------------- noop */

/* The noop stage stands in for any stage of the graph. Its knobs (config "noop" object):
 *   sleep_ms        work for that long, in 10 ms slices, checkpointing the time done in
 *                   work_dir/noop.ckpt: a cancelled or crashed attempt resumes where it was;
 *   crash_attempts, crash_mode   die (SIGKILL to itself, or abort()) on the first N attempts;
 *   fail_message    fail with that error, every attempt (fail_input: as an input error, which
 *                   the scheduler does not retry);
 *   output          write out_dir/noop.json (key, stage, attempt, resumed_ms: the work done by
 *                   earlier attempts, from the checkpoint; upstream: the stages whose artifacts
 *                   it was given);
 *   metrics         log the scalar "noop_ms" (step = ms done) every slice and the eval
 *                   noop/attempts at the end (tests of metric ingestion across resumes);
 *   log             append "KEY STAGE ATTEMPT\n" to this file when the stage completes (the
 *                   fault tests count these lines: a task must complete once). */

static int64_t read_ckpt(const char *path) {
    char *text = NULL;
    int64_t done = 0;
    if (cg_read_file(path, &text, NULL) == CG_OK) {
        if (cg_parse_i64(text, "noop checkpoint", 0, INT64_MAX, &done) != CG_OK) done = 0;
        free(text);
    }
    cg_err_clear();
    return done;
}

static int write_ckpt(const stage_ctx *ctx, const char *path, int64_t done_ms) {
    int rc = cg_mkdir_p(ctx->work_dir);
    if (rc) return rc;
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", (long long)done_ms);
    return cg_write_file_atomic(path, text, (size_t)n);
}

static int append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return cg_err(CG_EFAIL, "cannot open noop log '%s': %s", path, strerror(errno));
    size_t n = strlen(line);
    ssize_t w = write(fd, line, n);   /* one write with O_APPEND: lines never interleave */
    int rc = (w == (ssize_t)n && fsync(fd) == 0) ? CG_OK
             : cg_err(CG_EFAIL, "cannot append to noop log '%s': %s", path, strerror(errno));
    close(fd);
    return rc;
}

int stage_noop(stage_ctx *ctx) {
    const cJSON *knobs = cJSON_GetObjectItemCaseSensitive(ctx->stage_config, "noop");
    int64_t sleep_ms = 0, crash_attempts = 0;
    int output = 1, metrics = 0, fail_input = 0;
    const char *log = "", *fail = NULL, *crash_mode = "kill";
    int rc = CG_OK;
    if (knobs && ((rc = cg_json_get_int(knobs, "sleep_ms", 0, &sleep_ms)) ||
                  (rc = cg_json_get_int(knobs, "crash_attempts", 0, &crash_attempts)) ||
                  (rc = cg_json_get_bool(knobs, "output", 0, &output)) ||
                  (rc = cg_json_get_bool(knobs, "metrics", 0, &metrics)) ||
                  (rc = cg_json_get_bool(knobs, "fail_input", 0, &fail_input)) ||
                  (rc = cg_json_get_str(knobs, "log", 0, &log)) ||
                  (rc = cg_json_get_str(knobs, "fail_message", 0, &fail)) ||
                  (rc = cg_json_get_str(knobs, "crash_mode", 0, &crash_mode))))
        return cg_err_wrap(rc, "noop stage config");

    char *ckpt = cg_path_join(ctx->work_dir, "noop.ckpt");
    int64_t done = read_ckpt(ckpt);
    if (ctx->attempt <= crash_attempts) {
        if (!strcmp(crash_mode, "abort")) abort();
        kill(getpid(), SIGKILL);
    }
    double t0 = cg_mono_time();
    int64_t start = done;
    while (done < sleep_ms) {
        if (stage_progress(ctx, (double)done / (double)sleep_ms) == STAGE_CANCELLED) {
            rc = write_ckpt(ctx, ckpt, done);
            if (rc == CG_OK) rc = STAGE_CANCELLED;
            goto out;
        }
        if (metrics && (rc = metrics_scalar(ctx->metrics, "noop_ms", done, (double)done))) goto out;
        int64_t slice = sleep_ms - done < 10 ? sleep_ms - done : 10;
        struct timespec ts = {(time_t)(slice / 1000), (long)(slice % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        done = start + (int64_t)((cg_mono_time() - t0) * 1000.0);
        if (done > sleep_ms) done = sleep_ms;
    }
    if (fail) {
        rc = cg_err(fail_input ? CG_EUSER : CG_EFAIL, "%s", fail);
        goto out;
    }
    if (metrics && ((rc = metrics_scalar(ctx->metrics, "noop_ms", done, (double)done)) ||
                    (rc = metrics_eval(ctx->metrics, "noop", "attempts", "", ctx->attempt, 1))))
        goto out;
    if (output) {
        /* a plain write: the scheduler publishes out_dir by one rename, so a crash before that
         * leaves nothing; the noop skips the fsync a real artifact's bytes would deserve */
        char *path = cg_path_join(ctx->out_dir, "noop.json");
        FILE *fp = fopen(path, "w");
        cg_buf up;   /* the upstream stages whose artifacts the stage was given */
        cg_buf_init(&up);
        for (int u = 0; u < EXP_NSTAGES; u++)
            if (ctx->upstream[u] && cg_is_dir(ctx->upstream[u]))
                cg_buf_addf(&up, "%s\"%s\"", up.len ? "," : "", exp_stage_name((exp_stage)u));
        int ok = fp && fprintf(fp, "{\"key\":\"%s\",\"stage\":\"%s\",\"attempt\":%d,\"resumed_ms\":%lld,"
                               "\"upstream\":[%s]}\n", ctx->key, exp_stage_name(ctx->stage), ctx->attempt,
                               (long long)start, up.data ? up.data : "") > 0;
        cg_buf_free(&up);
        if (fp && fclose(fp) != 0) ok = 0;
        if (!ok) rc = cg_err(CG_EFAIL, "cannot write '%s': %s", path, strerror(errno));
        free(path);
        if (rc) goto out;
    }
    if (stage_cancelled(ctx)) {  /* last chance to stop before completing */
        rc = STAGE_CANCELLED;
        goto out;
    }
    if (*log) {
        char *line = cg_fmt("%s %s %d\n", ctx->key, exp_stage_name(ctx->stage), ctx->attempt);
        rc = append_line(log, line);
        free(line);
    }
out:
    free(ckpt);
    return rc;
}
