/* stage_train.c: the training stages' shared parts: config reads, the model of a stage, weights
 * in and out, the world's location, and the training loop with checkpoints (see stage_train.h). */
#define _GNU_SOURCE
#include "experiments/stage_train.h"
#include "core/checkpoint.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/model_cuda.h"
#include "kernels/gpu.h"
#include "kernels/kernels.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <assert.h>
#include <cblas.h>
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_NAME "checkpoint.safetensors"
#define WEIGHTS_NAME "model.safetensors"

/* ---------------------------------------------------------------- config */

static const cJSON *cfg_item(const cJSON *cfg, const char *path) {
    const cJSON *j = cg_json_path(cfg, path);
    assert(j && "a resolved config has every known key");
    return j;
}

int64_t stage_cfg_int(const cJSON *cfg, const char *path) {
    const cJSON *j = cfg_item(cfg, path);
    assert(cJSON_IsNumber(j));
    return (int64_t)j->valuedouble;
}

double stage_cfg_num(const cJSON *cfg, const char *path) {
    const cJSON *j = cfg_item(cfg, path);
    assert(cJSON_IsNumber(j));
    return j->valuedouble;
}

const char *stage_cfg_str(const cJSON *cfg, const char *path) {
    const cJSON *j = cfg_item(cfg, path);
    assert(cJSON_IsString(j));
    return j->valuestring;
}

int stage_cfg_bool(const cJSON *cfg, const char *path) {
    const cJSON *j = cfg_item(cfg, path);
    assert(cJSON_IsBool(j));
    return cJSON_IsTrue(j);
}

void stage_vlm_config(const cJSON *cfg, model_config *mc) {
    memset(mc, 0, sizeof *mc);
    mc->image_size = (int)stage_cfg_int(cfg, "model.image_size");
    mc->patch = (int)stage_cfg_int(cfg, "model.patch");
    mc->vit_dim = (int)stage_cfg_int(cfg, "model.vit_dim");
    mc->vit_layers = (int)stage_cfg_int(cfg, "model.vit_layers");
    mc->vit_heads = (int)stage_cfg_int(cfg, "model.vit_heads");
    mc->lm_dim = (int)stage_cfg_int(cfg, "model.lm_dim");
    mc->lm_layers = (int)stage_cfg_int(cfg, "model.lm_layers");
    mc->lm_heads = (int)stage_cfg_int(cfg, "model.lm_heads");
    mc->ctx = (int)stage_cfg_int(cfg, "model.ctx");
    mc->vocab = (int)stage_cfg_int(cfg, "model.vocab");
    mc->adapter = strcmp(stage_cfg_str(cfg, "model.adapter"), "linear") == 0 ? ADAPTER_LINEAR : ADAPTER_MLP2X;
    mc->pool = (int)stage_cfg_int(cfg, "align.pool");
    mc->tau = (float)stage_cfg_num(cfg, "align.tau");
    mc->learn_tau = stage_cfg_bool(cfg, "align.learn_tau");
    mc->lambda = (float)stage_cfg_num(cfg, "align.lambda");
    mc->batch = (int)stage_cfg_int(cfg, "align.batch");
}

/* The LM of a run with a stand-in ViT (one 8-wide layer, one patch). */
void stage_lm_only_config(const cJSON *cfg, model_config *mc) {
    stage_vlm_config(cfg, mc);
    mc->image_size = 8, mc->patch = 8;
    mc->vit_dim = 8, mc->vit_layers = 1, mc->vit_heads = 1;
    mc->adapter = ADAPTER_MLP2X;
    mc->pool = 1, mc->tau = 0.07f, mc->learn_tau = 0, mc->lambda = 0;
}

/* The ViT of a run with a stand-in LM (one 8-wide layer) whose context holds the visual tokens and
 * text_T tokens, and whose vocabulary is the world's (the CLIP bag of words). */
void stage_vit_only_config(const cJSON *cfg, int vocab, int text_T, model_config *mc) {
    stage_vlm_config(cfg, mc);
    int g = mc->image_size / mc->patch;
    mc->lm_dim = 8, mc->lm_layers = 1, mc->lm_heads = 1;
    mc->ctx = g * g + text_T;
    mc->vocab = vocab;
    mc->adapter = ADAPTER_MLP2X;
    mc->pool = 1, mc->tau = 0.07f, mc->learn_tau = 0, mc->lambda = 0;
}

void stage_train_opts_from(const cJSON *cfg, const char *section, stage_train_opts *o) {
    char key[64];
#define GET(field, name, fn)                                   \
    snprintf(key, sizeof key, "%s.%s", section, name);         \
    o->field = fn(cfg, key)
    memset(o, 0, sizeof *o);
    o->stage = section;
    GET(lr, "lr", stage_cfg_num);
    GET(weight_decay, "weight_decay", stage_cfg_num);
    GET(clip, "clip", stage_cfg_num);
    GET(batch, "batch", (int)stage_cfg_int);
    GET(warmup, "warmup", (int)stage_cfg_int);
    if (strcmp(section, "instruct") != 0) {   /* instruct derives its steps from epochs */
        GET(steps, "steps", stage_cfg_int);
    }
#undef GET
}

void stage_use_threads(const stage_ctx *ctx) {
    if (ctx->threads <= 0) return;
    omp_set_num_threads(ctx->threads);
    openblas_set_num_threads(ctx->threads);
}

void stage_follow_threads(stage_ctx *ctx) {
    static double last_check;
    const char *path = getenv("CGVLM_THREADS_FILE");
    if (!path || !*path || ctx->threads <= 0) return;
    double now = cg_mono_time();
    if (last_check > 0 && now - last_check < 1.0) return;
    last_check = now;
    char buf[32] = {0};
    FILE *fp = fopen(path, "r");
    if (!fp) return;   /* no share written yet: the --threads the task started with */
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    int share;
    if (cg_parse_int(buf, "threads file", 1, 4096, &share) != CG_OK) {
        cg_err_clear();   /* a file caught half-written by hand: keep the count */
        return;
    }
    if (share == ctx->threads) return;
    if (!cg_quiet)
        fprintf(stderr, "cgvlm: %s: %d -> %d threads (the scheduler's share of the cores)\n", ctx->kind,
                ctx->threads, share);
    ctx->threads = share;
    omp_set_num_threads(share);   /* OpenBLAS stays at one thread: the kernels split the work */
}

/* ---------------------------------------------------------------- the world */

int stage_world_dir(const stage_ctx *ctx, char **dir) {
    *dir = NULL;
    if (!ctx->upstream[EXP_WORLD])
        return cg_err(CG_EFAIL, "stage '%s' was given no world artifact (re-run the sweep so the "
                      "world stage runs first)", ctx->kind);
    *dir = cg_strdup(ctx->upstream[EXP_WORLD]);
    return CG_OK;
}

int stage_vlm_open(stage_ctx *ctx, uint64_t seed, char **world, model *m, int *have_model,
                   data_vocab *vocab) {
    int rc = stage_world_dir(ctx, world);
    if (rc) return rc;
    model_config mc;
    stage_vlm_config(ctx->run_config, &mc);
    if ((rc = model_init(m, &mc, seed))) return rc;
    *have_model = 1;
    return stage_load_vocab(*world, mc.vocab, vocab);
}

/* ---------------------------------------------------------------- weights */

static int has_prefix(const char *name, const char *const *prefixes) {
    if (!prefixes) return 1;
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

static void add_param(ckpt_writer *w, const char *name, const model_param *p, const float *data) {
    int64_t shape[2] = {p->shape[0], p->shape[1]};
    ckpt_writer_add_f32(w, name, data, p->ndim, shape);
}

static void add_common_meta(ckpt_writer *w, const stage_ctx *ctx, const char *stage) {
    ckpt_writer_meta(w, "format", "cgvlm");
    ckpt_writer_meta(w, "version", "1");
    ckpt_writer_meta(w, "stage", stage);
    ckpt_writer_meta(w, "config_key", ctx->key ? ctx->key : "");
}

char *stage_weights_path(const char *dir) { return cg_path_join(dir, WEIGHTS_NAME); }

const char *const stage_vlm_prefixes[] = {"vit.", "adapter.", "lm.", "con.", NULL};

int stage_load_vocab(const char *world_dir, int max_words, data_vocab *v) {
    char *path = cg_path_join(world_dir, "vocab.txt");
    int rc = data_vocab_load(path, v);
    if (rc == CG_OK && max_words > 0 && v->n > max_words)
        rc = cg_err(CG_EUSER, "the world's vocabulary '%s' has %d words but model.vocab is %d: "
                    "raise model.vocab", path, v->n, max_words);
    free(path);
    return rc;
}

int stage_check_images(const cJSON *cfg, int S) {
    int64_t want = stage_cfg_int(cfg, "model.image_size");
    if (S != want)
        return cg_err(CG_EUSER, "the world's images are %dx%d pixels but model.image_size is %lld: "
                      "generate the world with world.image_size = %lld", S, S, (long long)want,
                      (long long)want);
    return CG_OK;
}

int stage_load_upstream(const stage_ctx *ctx, model *m, exp_stage up, const char *const *prefixes) {
    if (!ctx->upstream[up])
        return cg_err(CG_EFAIL, "stage '%s' has no '%s' input", ctx->kind, exp_stage_name(up));
    char *path = stage_weights_path(ctx->upstream[up]);
    int rc = stage_load_weights(m, path, prefixes);
    if (rc) cg_err_wrap(rc, "cannot load the %s weights", exp_stage_name(up));
    free(path);
    return rc;
}

int stage_save_weights(const stage_ctx *ctx, model *m, const char *path,
                       const char *const *prefixes) {
    ckpt_writer *w = ckpt_writer_new();
    add_common_meta(w, ctx, ctx->kind);
    for (int i = 0; i < model_num_params(m); i++) {
        const model_param *p = model_param_at(m, i);
        if (has_prefix(p->name, prefixes)) add_param(w, p->name, p, p->data);
    }
    int rc = ckpt_writer_save(w, path);
    ckpt_writer_free(w);
    return rc;
}

static int read_param(ckpt_file *f, const char *name, const model_param *p, float *dst) {
    int64_t shape[2] = {p->shape[0], p->shape[1]};
    return ckpt_read_f32(f, name, p->ndim, shape, dst);
}

int stage_load_weights(model *m, const char *path, const char *const *prefixes) {
    ckpt_file *f = NULL;
    int rc = ckpt_open(path, &f);
    for (int i = 0; rc == CG_OK && i < model_num_params(m); i++) {
        model_param *p = model_param_at(m, i);
        if (has_prefix(p->name, prefixes)) rc = read_param(f, p->name, p, p->data);
    }
    ckpt_close(f);
    return rc;
}

/* ---------------------------------------------------------------- checkpoints */

static int save_checkpoint(const stage_ctx *ctx, model *m, const stage_train_opts *o,
                           int64_t step) {
    /* the steps done are durable before a checkpoint says they are: a journal that cannot be
     * written fails the stage here, and the resume redoes them from the previous checkpoint */
    int rc = metrics_flush(ctx->metrics);
    if (rc) return rc;
    char *path = cg_path_join(ctx->work_dir, CKPT_NAME);
    char name[96];
    char num[32];
    ckpt_writer *w = ckpt_writer_new();
    add_common_meta(w, ctx, o->stage);
    snprintf(num, sizeof num, "%lld", (long long)step);
    ckpt_writer_meta(w, "step", num);
    snprintf(num, sizeof num, "%d", model_step_count(m));
    ckpt_writer_meta(w, "adam_step", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)o->seed);
    ckpt_writer_meta(w, "seed", num);
    snprintf(num, sizeof num, "%lld", (long long)o->steps);
    ckpt_writer_meta(w, "steps", num);
    for (int i = 0; i < model_num_params(m); i++) {
        const model_param *p = model_param_at(m, i);
        add_param(w, p->name, p, p->data);
        if (!model_mode_trains(o->mode, p->group)) continue;
        snprintf(name, sizeof name, "adam.m.%s", p->name);
        add_param(w, name, p, p->m);
        snprintf(name, sizeof name, "adam.v.%s", p->name);
        add_param(w, name, p, p->v);
    }
    rc = ckpt_writer_save(w, path);
    ckpt_writer_free(w);
    free(path);
    return rc;
}

static int meta_i64(ckpt_file *f, const char *key, int64_t *out) {
    const char *s = ckpt_meta(f, key);
    if (!s) return cg_err(CG_EUSER, "checkpoint '%s' has no '%s' in its metadata", ckpt_path(f), key);
    return cg_parse_i64(s, key, 0, INT64_MAX, out);
}

/* Restores the state of a checkpoint if work_dir has one; *start = the steps it has done. */
static int load_checkpoint(const stage_ctx *ctx, model *m, const stage_train_opts *o,
                           int64_t *start) {
    *start = 0;
    char *path = cg_path_join(ctx->work_dir, CKPT_NAME);
    ckpt_file *f = NULL;
    int rc = CG_OK;
    if (!cg_file_exists(path)) goto out;
    rc = ckpt_open(path, &f);
    if (rc) {
        char *msg = cg_strdup(cg_errmsg());
        rc = cg_err(rc, "%s; delete it to start this task over", msg);
        free(msg);
        goto out;
    }
    const char *stage = ckpt_meta(f, "stage"), *key = ckpt_meta(f, "config_key");
    if (!stage || strcmp(stage, o->stage) != 0 || !key || strcmp(key, ctx->key ? ctx->key : "") != 0) {
        rc = cg_err(CG_EUSER, "checkpoint '%s' belongs to another task (stage '%s', key '%.12s'); "
                    "delete it to start this task over", path, stage ? stage : "?", key ? key : "?");
        goto out;
    }
    int64_t step = 0, adam_step = 0, seed = 0, steps = 0;
    if ((rc = meta_i64(f, "step", &step)) || (rc = meta_i64(f, "adam_step", &adam_step)) ||
        (rc = meta_i64(f, "seed", &seed)) || (rc = meta_i64(f, "steps", &steps)))
        goto out;
    if ((uint64_t)seed != o->seed || steps != o->steps || step > o->steps) {
        rc = cg_err(CG_EUSER, "checkpoint '%s' was written for another schedule (seed %lld, %lld "
                    "steps); delete it to start this task over", path, (long long)seed, (long long)steps);
        goto out;
    }
    char name[96];
    for (int i = 0; rc == CG_OK && i < model_num_params(m); i++) {
        model_param *p = model_param_at(m, i);
        rc = read_param(f, p->name, p, p->data);
        if (rc || !model_mode_trains(o->mode, p->group)) continue;
        snprintf(name, sizeof name, "adam.m.%s", p->name);
        rc = read_param(f, name, p, p->m);
        if (rc) break;
        snprintf(name, sizeof name, "adam.v.%s", p->name);
        rc = read_param(f, name, p, p->v);
    }
    if (rc) goto out;
    model_set_step_count(m, (int)adam_step);
    *start = step;
    if (!cg_quiet && step < o->steps)
        cg_info("%s: resuming from the checkpoint at step %lld of %lld", o->stage, (long long)step,
                (long long)o->steps);
out:
    if (rc) cg_err_wrap(rc, "cannot resume %s", o->stage);
    ckpt_close(f);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- progress */

static void fmt_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%.0fs", s);
}

static void progress_line(const stage_train_opts *o, int64_t step, int64_t start, float loss,
                          double tok_s, double elapsed, int tty) {
    if (cg_quiet) return;
    int64_t done = step + 1;
    int64_t every = o->steps >= 10 ? o->steps / 10 : 1;
    if (!tty && done % every != 0 && done != o->steps) return;
    char eta[32];
    double per = done > start ? elapsed / (double)(done - start) : 0;
    fmt_eta(eta, sizeof eta, per * (double)(o->steps - done));
    fprintf(stderr, "%s%s step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s%s", tty ? "\r" : "",
            o->stage, (long long)done, (long long)o->steps, (double)loss, tok_s, eta,
            tty ? "\033[K" : "\n");
    if (tty && done == o->steps) fputc('\n', stderr);
}

/* ---------------------------------------------------------------- the loop */

/* Text tokens of a batch that are not padding, plus the visual tokens of image modes. */
static int64_t batch_tokens(const model_batch *b, int mode, int P) {
    int64_t n = 0;
    for (long k = 0; k < (long)b->B * b->T; k++) n += b->tokens[k] != DATA_PAD;
    if (mode == MODE_ALIGN || mode == MODE_INSTRUCT || mode == MODE_CLIP) n += (int64_t)b->B * P;
    return n;
}

/* Σ w² over the trained parameters (non-finite when one of them is). */
static double trained_sumsq(model *m, int mode) {
    double s = 0;
    for (int i = 0; i < model_num_params(m); i++) {
        const model_param *p = model_param_at(m, i);
        if (model_mode_trains(mode, p->group)) s += sumsq(p->data, p->numel);
    }
    return s;
}

/* A non-finite loss or gradient: stop before the update reaches the weights. */
static int diverged(const stage_train_opts *o, int64_t step, const char *what, float value,
                    int64_t last_ckpt) {
    char kept[96];
    if (last_ckpt > 0)
        snprintf(kept, sizeof kept, "the last good checkpoint (step %lld) is kept", (long long)last_ckpt);
    else
        snprintf(kept, sizeof kept, "no checkpoint was written");
    return cg_err(CG_EUSER, "%s diverged at step %lld: the %s is %g (lr %g); %s; lower %s.lr and "
                  "re-run", o->stage, (long long)step, what, (double)value, o->lr, kept, o->stage);
}

int stage_train_loop(stage_ctx *ctx, model *m, batch_set *data, const stage_train_opts *o) {
    int64_t start = 0;
    int rc = load_checkpoint(ctx, m, o, &start);
    if (rc) return rc;
    if (start >= o->steps) return CG_OK;
    stage_use_threads(ctx);
    /* On a GPU the step runs in the CUDA plugin (one graph per shape); the host model stays the
     * record: it is refreshed from the device before every checkpoint and at the end. */
    model_cuda *gpu = NULL;
    if (ctx->device && !strncmp(ctx->device, "cuda", 4)) {
        if (cg_gpu_count() == 0) /* an input error: retrying on this node cannot help */
            return cg_err(CG_EUSER, "%s: device '%s' was asked for but this node has no usable GPU "
                          "(see 'cgvlm env'); set device to auto or cpu", o->stage, ctx->device);
        if ((rc = model_cuda_create(&gpu, m)))
            return cg_err_wrap(rc, "%s on device %s", o->stage, ctx->device);
        const char *prec = stage_cfg_str(ctx->run_config, "precision");
        rc = model_cuda_set_precision(gpu, !strcmp(prec, "bf16")   ? CUDA_PREC_BF16
                                           : !strcmp(prec, "fp32") ? CUDA_PREC_FP32
                                                                   : CUDA_PREC_TF32);
        if (rc) {
            model_cuda_free(gpu);
            return rc;
        }
    } else if (strcmp(stage_cfg_str(ctx->run_config, "precision"), "tf32") && !cg_quiet) {
        cg_info("%s: precision %s is for GPU steps; on the CPU every product is fp32", o->stage,
                stage_cfg_str(ctx->run_config, "precision"));
    }
    int64_t every = stage_cfg_int(ctx->run_config, "checkpoint_every");
    adamw_params hp = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = (float)o->weight_decay};
    batch_prepare(data, o->batch, o->seed);
    if (!gpu) model_reserve(m, o->batch, data->T);
    int tty = cg_stderr_is_tty();
    int P = model_num_patches(m);
    double t0 = cg_mono_time(), t_last = t0;
    int64_t tok_since = 0;
    double tok_s = 0;
    int64_t last_ckpt = start;
    for (int64_t step = start; step < o->steps; step++) {
        if (stage_progress(ctx, (double)step / (double)o->steps) == STAGE_CANCELLED) {
            if (step > last_ckpt && gpu) rc = model_cuda_download(gpu, m);
            if (rc == CG_OK && step > last_ckpt) rc = save_checkpoint(ctx, m, o, step);
            if (!cg_quiet) cg_info("%s: cancelled at step %lld; checkpoint kept", o->stage, (long long)step);
            if (rc == CG_OK) rc = STAGE_CANCELLED;
            goto out;
        }
        model_batch b;
        batch_at(data, step, &b);
        model_losses L;
        float gnorm;
        float lr = lr_cosine((int)step, o->warmup, (int)o->steps, (float)o->lr,
                             (float)(o->lr * STAGE_MIN_LR_FRACTION));
        if (gpu) {
            /* one call: zero-grad, forward, backward, clip, AdamW; a non-finite loss leaves bad
             * weights on the device only: the host model (the checkpoints) never sees them */
            rc = model_cuda_step(gpu, &b, o->mode, &hp, lr, (float)o->clip, &L, &gnorm);
            if (rc) {
                cg_err_wrap(rc, "%s step %lld", o->stage, (long long)step);
                goto out;
            }
            if (!isfinite(L.loss)) { rc = diverged(o, step, "loss", L.loss, last_ckpt); goto out; }
            if (!isfinite(gnorm)) { rc = diverged(o, step, "gradient norm", gnorm, last_ckpt); goto out; }
        } else {
            model_zero_grad(m);
            rc = model_forward(m, &b, o->mode, &L);
            if (rc) {
                cg_err_wrap(rc, "%s step %lld", o->stage, (long long)step);
                goto out;
            }
            if (!isfinite(L.loss)) { rc = diverged(o, step, "loss", L.loss, last_ckpt); goto out; }
            model_backward(m);
            gnorm = model_clip_grad(m, (float)o->clip);
            if (!isfinite(gnorm)) { rc = diverged(o, step, "gradient norm", gnorm, last_ckpt); goto out; }
            model_adamw_step(m, &hp, lr);
        }

        tok_since += batch_tokens(&b, o->mode, P);
        double now = cg_mono_time();
        if (now - t_last >= 1.0 || step + 1 == o->steps || step == start) {
            tok_s = now > t_last ? (double)tok_since / (now - t_last) : 0;
            metrics_scalar(ctx->metrics, "tokens_per_s", step, tok_s);
            tok_since = 0;
            t_last = now;
        }
        metrics_scalar(ctx->metrics, "loss", step, L.loss);
        if (o->mode == MODE_ALIGN) {
            metrics_scalar(ctx->metrics, "loss_gen", step, L.gen);
            metrics_scalar(ctx->metrics, "loss_con", step, L.con);
        } else if (o->mode == MODE_CLIP) {
            metrics_scalar(ctx->metrics, "loss_con", step, L.con);
        } else {
            metrics_scalar(ctx->metrics, "loss_gen", step, L.gen);
        }
        metrics_scalar(ctx->metrics, "lr", step, lr);
        metrics_scalar(ctx->metrics, "grad_norm", step, gnorm);
        progress_line(o, step, start, L.loss, tok_s, now - t0, tty);
        if ((step + 1) % every == 0 || step + 1 == o->steps) {
            if (gpu && (rc = model_cuda_download(gpu, m))) goto out;
            /* the update may have overflowed a weight without the loss showing it yet */
            double w2 = trained_sumsq(m, o->mode);
            if (!isfinite(w2)) { rc = diverged(o, step, "weights' norm", (float)w2, last_ckpt); goto out; }
            if ((rc = save_checkpoint(ctx, m, o, step + 1))) goto out;
            last_ckpt = step + 1;
        }
    }
out:
    model_cuda_free(gpu);
    return rc;
}
