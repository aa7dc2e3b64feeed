/* stage.h: the contract between the scheduler and the stage implementations.
 *
 * The scheduler runs every task in its own process (`cgvlm task`), builds a stage_ctx and calls
 * stage_execute(), which dispatches on ctx->kind through the table in stage.c. A stage:
 *   - reads its settings from ctx->stage_config (the canonical sub-config its key was computed
 *     from) and, for anything else, from ctx->run_config (see experiment.h for which keys are safe);
 *   - reads its inputs from ctx->upstream[EXP_...] (the published artifact dirs of all its
 *     ancestor tasks, NULL for stages that are not upstream of it);
 *   - keeps checkpoints in ctx->work_dir, which survives failed, crashed and cancelled attempts:
 *     on start, resume from what is there; it is not created in advance (cg_mkdir_p it before the
 *     first checkpoint) and is removed once the task is done;
 *   - writes its outputs into ctx->out_dir (staging; empty at start). After a CG_OK return the
 *     scheduler publishes it atomically as <workspace>/artifacts/<key> and records it;
 *   - logs step metrics and evaluations through ctx->metrics (core/metrics.h);
 *   - calls stage_progress() regularly, at least once a minute (it is the task's heartbeat, and
 *     the progress `cgvlm status` shows); when it returns
 *     STAGE_CANCELLED (Ctrl-C, `cgvlm cancel`, the scheduler gone), it writes a checkpoint and
 *     returns STAGE_CANCELLED promptly;
 *   - returns CG_OK, STAGE_CANCELLED, or an error rc with cg_err() text (kept as the task's error).
 *
 * Adding a kind: write experiments/stage_KIND.c defining `int stage_KIND(stage_ctx *ctx)`
 * (prototypes below) and replace its NULL in stage.c's table: one line.
 */
#ifndef CG_STAGE_H
#define CG_STAGE_H

#include "core/metrics.h"
#include "experiments/experiment.h"

#include <cjson/cJSON.h>
#include <signal.h>

/* A stage stopped because it was asked to (not a failure): the task becomes 'cancelled'. */
enum { STAGE_CANCELLED = 3 };

typedef struct stage_ctx stage_ctx;
struct stage_ctx {
    const char *kind;            /* "world", "lm_pretrain", ..., "noop" */
    exp_stage stage;             /* the stage it is (a noop stand-in says which it stands for) */
    const char *key;             /* the task key (64 hex chars) */
    const cJSON *run_config;     /* the resolved experiment config of a run using this task */
    const cJSON *stage_config;   /* the stage's canonical sub-config */
    const char *workspace;       /* the workspace root */
    const char *work_dir;        /* persistent per task: checkpoints, resumes (may not exist yet) */
    const char *out_dir;         /* staging output dir, published on success (created, empty) */
    const char *upstream[EXP_NSTAGES]; /* published artifact dir of every ancestor stage (direct
                                        * or not: instruct sees world, lm/vit_pretrain, align) */
    metrics_sink *metrics;       /* never NULL */
    volatile sig_atomic_t *cancel; /* set asynchronously: checkpoint and return STAGE_CANCELLED */
    /* Heartbeat + progress (0..1) for status/ETA; called through stage_progress(). May be NULL. */
    void (*progress)(void *arg, double fraction);
    void *progress_arg;
    int attempt;                 /* 1 for the first attempt */
    int threads;                 /* CPU threads the stage may use */
    const char *device;          /* "cpu", "cuda", "cuda:N": the config's, or for "auto" the slot's */
};

/* Runs ctx->kind. CG_EUSER for an unknown kind. */
int stage_execute(stage_ctx *ctx);
/* 1 if kind is in the table (implemented or not). */
int stage_kind_known(const char *kind);

/* Reports progress (throttled heartbeat); returns STAGE_CANCELLED when the stage must stop. */
int stage_progress(stage_ctx *ctx, double fraction);
/* 1 when the stage must checkpoint and stop. */
static inline int stage_cancelled(const stage_ctx *ctx) { return ctx->cancel && *ctx->cancel; }

/* Stage implementations, one per kind (the table in stage.c). */
int stage_noop(stage_ctx *ctx);          /* stage.c: tests and benchmarks */
int stage_world(stage_ctx *ctx);         /* stage.c: the world generator */
int stage_lm_pretrain(stage_ctx *ctx);
int stage_vit_pretrain(stage_ctx *ctx);
int stage_align(stage_ctx *ctx);
int stage_instruct(stage_ctx *ctx);
int stage_eval(stage_ctx *ctx);

#endif
