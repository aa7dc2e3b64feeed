/* stage_driver.c: runs a run's chain of stages in one process, without the scheduler, for the
 * stage tests (resume after SIGKILL/SIGINT, divergence) and for quick experiments.
 *
 *   stage_driver WORKSPACE CONFIG [--set path=value]... [--until STAGE] [--only STAGE]
 *
 * Task dirs: WORKSPACE/artifacts/KEY (published outputs; a task whose artifact exists is
 * skipped), WORKSPACE/work/KEY (checkpoints), WORKSPACE/staging/KEY, and every metric in the
 * journal WORKSPACE/journal/STAGE-KEY12.jsonl (appended; KEY12 = the key's first 12 characters). SIGINT/SIGTERM set the cancel flag: the
 * running stage checkpoints and the driver exits with STAGE_CANCELLED (3). */
#include "core/metrics.h"
#include "experiments/experiment.h"
#include "experiments/stage.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t cancel_flag = 0;
static void on_signal(int sig) { (void)sig; cancel_flag = 1; }

/* Every ancestor's artifact, as the scheduler gives them (instruct sees the world too). */
static void give_ancestors(const exp_plan *plan, int s, char **art, stage_ctx *ctx) {
    const exp_task *t = &plan->task[s];
    for (int d = 0; d < t->ndeps; d++) {
        ctx->upstream[t->deps[d]] = art[t->deps[d]];
        give_ancestors(plan, t->deps[d], art, ctx);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: stage_driver WORKSPACE CONFIG [--set path=value]... [--until STAGE]\n");
        return 2;
    }
    const char *ws = argv[1];
    cJSON *cfg = NULL;
    int rc = exp_load(argv[2], &cfg);
    int until = EXP_EVAL, only = -1;
    for (int i = 3; rc == CG_OK && i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) rc = exp_set_arg(cfg, argv[++i]);
        else if (!strcmp(argv[i], "--until") && i + 1 < argc) {
            until = exp_stage_from_name(argv[++i]);
            if (until < 0) rc = cg_err(CG_EUSER, "unknown stage '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = exp_stage_from_name(argv[++i]);
            if (only < 0) rc = cg_err(CG_EUSER, "unknown stage '%s'", argv[i]);
        } else rc = cg_err(CG_EUSER, "unknown argument '%s'", argv[i]);
    }
    if (rc == CG_OK) rc = exp_resolve(cfg);
    exp_plan plan;
    if (rc == CG_OK) rc = exp_plan_make(cfg, "stage-driver", &plan);
    if (rc) {
        cJSON_Delete(cfg);
        return cg_report(rc);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char *art[EXP_NSTAGES] = {0};
    char *jdir = cg_path_join(ws, "journal");
    rc = cg_mkdir_p(jdir);
    for (int s = 0; rc == CG_OK && s <= until; s++) {
        exp_task *t = &plan.task[s];
        char *a = cg_fmt("%s/artifacts/%s", ws, t->key), *w = cg_fmt("%s/work/%s", ws, t->key);
        char *st = cg_fmt("%s/staging/%s", ws, t->key);
        char *jp = cg_fmt("%s/%s-%.12s.jsonl", jdir, exp_stage_name(t->stage), t->key);
        art[s] = a;
        if (cg_is_dir(a) || (only >= 0 && s != only)) {
            free(w), free(st), free(jp);
            continue;
        }
        cg_rm_rf(st);
        char *artdir = cg_fmt("%s/artifacts", ws);
        if ((rc = cg_mkdir_p(w)) || (rc = cg_mkdir_p(st)) || (rc = cg_mkdir_p(artdir))) goto next;
        metrics_sink *sink = NULL;
        if ((rc = metrics_journal_open(jp, &sink))) goto next;
        stage_ctx ctx = {.kind = t->kind, .stage = t->stage, .key = t->key, .run_config = cfg,
                         .stage_config = t->config, .workspace = ws, .work_dir = w, .out_dir = st,
                         .metrics = sink, .cancel = &cancel_flag, .attempt = 1, .threads = 0,
                         .device = "cpu"};
        give_ancestors(&plan, s, art, &ctx);
        rc = stage_execute(&ctx);
        metrics_close(sink);
        if (rc == CG_OK && rename(st, a) != 0) rc = cg_err(CG_EFAIL, "cannot publish '%s'", a);
        if (rc && rc != STAGE_CANCELLED) cg_err_wrap(rc, "stage %s", t->kind);
    next:
        free(artdir), free(w), free(st), free(jp);
    }
    for (int s = 0; s < EXP_NSTAGES; s++) free(art[s]);
    free(jdir);
    exp_plan_free(&plan);
    cJSON_Delete(cfg);
    if (rc == STAGE_CANCELLED) {
        fprintf(stderr, "stage_driver: cancelled\n");
        return STAGE_CANCELLED;
    }
    return cg_report(rc);
}
