/* stage_train.h: what the training stages share: reading the resolved config, building the model
 * of a stage, loading and publishing weights (safetensors), the world's files, and the one
 * training loop with its checkpoints, resume, cancellation and divergence handling.
 *
 * The training loop (stage_train_loop), one step:
 *   batch_at(seed, step) -> forward -> loss finite? -> backward -> clip (norm finite?) ->
 *   AdamW with lr_cosine(step) -> metrics -> progress -> checkpoint every checkpoint_every steps.
 * A checkpoint (work_dir/checkpoint.safetensors, core/checkpoint.h) holds every parameter of the
 * model, the AdamW moments of the trained ones, the AdamW step count and the number of steps
 * done; batches are a pure function of (seed, step), so that is the whole state: a run resumed
 * from it continues bitwise identically (same thread count). A non-finite loss or gradient
 * norm stops the stage before the update is applied, with an error naming the step; the last
 * checkpoint on disk (written from finite weights) is left as it is.
 */
#ifndef CG_STAGE_TRAIN_H
#define CG_STAGE_TRAIN_H

#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "experiments/stage.h"

#include <cjson/cJSON.h>
#include <stdint.h>


/* Typed reads of the resolved run config (every known key is present after exp_resolve; a
 * missing or mistyped key is a bug, asserted). */
int64_t stage_cfg_int(const cJSON *cfg, const char *path);
double stage_cfg_num(const cJSON *cfg, const char *path);
const char *stage_cfg_str(const cJSON *cfg, const char *path);
int stage_cfg_bool(const cJSON *cfg, const char *path);

/* Sets the OpenMP and OpenBLAS thread counts to ctx->threads (when > 0). Results are bitwise the
 * same at any thread count (kernels/kernels.h). */
void stage_use_threads(const stage_ctx *ctx);
/* Between steps (stage_progress): takes the share of the cores the local scheduler gives this
 * task right now, from the file $CGVLM_THREADS_FILE (sweeps/backend_local.c rewrites it as tasks
 * start and end), at most once a second. The results do not depend on the thread count
 * (kernels/kernels.h), so only the speed changes. */
void stage_follow_threads(stage_ctx *ctx);

/* The model configuration of the vision-language model of a run (model.* and align.*). */
void stage_vlm_config(const cJSON *cfg, model_config *mc);

/* A model for a stage that trains one tower only, so that its initialisation and output depend
 * only on the keys of that stage's sub-config: the LM of a run with a fixed stand-in ViT
 * (lm_pretrain), or the ViT of a run with a fixed stand-in LM over `vocab` words and text_T
 * tokens (vit_pretrain). */
void stage_lm_only_config(const cJSON *cfg, model_config *mc);
void stage_vit_only_config(const cJSON *cfg, int vocab, int text_T, model_config *mc);

/* The world's directory: ctx->upstream[EXP_WORLD] (the scheduler gives every stage all of its
 * ancestors' artifacts, so instruct and eval see the world too). */
int stage_world_dir(const stage_ctx *ctx, char **dir);

/* Weights: `model.safetensors` in a stage's output holds the parameters named by `prefixes`
 * (NULL-terminated, e.g. {"lm.", NULL}), plus metadata stage/config key. */
int stage_save_weights(const stage_ctx *ctx, model *m, const char *path,
                       const char *const *prefixes);
/* Loads every model parameter whose name starts with one of `prefixes` from the file; each must
 * be present with the model's shape. */
int stage_load_weights(model *m, const char *path, const char *const *prefixes);
/* Loads the `prefixes` parameters from the weights an upstream stage published. */
int stage_load_upstream(const stage_ctx *ctx, model *m, exp_stage up, const char *const *prefixes);
/* The parameters of the vision-language model (vit., adapter., lm., con.; not the CLIP heads). */
extern const char *const stage_vlm_prefixes[];
/* The world's vocab.txt; CG_EUSER when it has more words than max_words (model.vocab; 0: any). */
int stage_load_vocab(const char *world_dir, int max_words, data_vocab *v);
/* The start of the stages that run the whole model (align, instruct, eval): the world's
 * directory, the run's model initialised with `seed` (*have_model = 1 once it needs model_free)
 * and the world's vocabulary. On an error the caller frees what was set, as on success. */
int stage_vlm_open(stage_ctx *ctx, uint64_t seed, char **world, model *m, int *have_model,
                   data_vocab *vocab);
/* CG_EUSER unless the world's images are model.image_size pixels wide. */
int stage_check_images(const cJSON *cfg, int S);
/* Joins dir and "model.safetensors" (malloc'ed). */
char *stage_weights_path(const char *dir);

/* One training run of a stage. */
typedef struct {
    const char *stage;      /* for messages and checkpoint metadata */
    int mode;               /* MODE_* */
    int64_t steps;
    int batch, warmup;
    double lr, weight_decay, clip;
    uint64_t seed;          /* data order */
} stage_train_opts;

/* Runs steps [resume point, steps) of the model on `data`. Returns CG_OK when all steps are done
 * (a final checkpoint is on disk), STAGE_CANCELLED after checkpointing when asked to stop, or an
 * error (divergence: CG_EUSER naming the step). */
int stage_train_loop(stage_ctx *ctx, model *m, batch_set *data, const stage_train_opts *o);
/* Reads lr, warmup, weight_decay, clip, batch, steps of a config section ("lm_pretrain", ...). */
void stage_train_opts_from(const cJSON *cfg, const char *section, stage_train_opts *o);

/* The minimum learning rate of the cosine schedule, as a fraction of the peak. */
#define STAGE_MIN_LR_FRACTION 0.1

#endif
