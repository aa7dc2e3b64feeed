/* model.h: the CG-VLM model of DESIGN.md §1 on the CPU — ViT, adapter, GPT-2-style LM, the
 * generative and contrastive losses, the CLIP-style ViT pretraining objective, AdamW — behind one
 * small API that the stage runner and the benchmarks call.
 *
 * Lifecycle:
 *     model_config cfg; model_config_preset(&cfg, "tiny");   (or fill it; model_config_check)
 *     model m; model_init(&m, &cfg, seed);                    params, grads, moments: 1 arena each
 *     model_reserve(&m, B, T);                                activations: 1 arena (optional:
 *                                                             the first forward does it)
 *     loop:  model_zero_grad(&m);
 *            model_forward(&m, &batch, MODE_ALIGN, &losses);
 *            model_backward(&m);
 *            norm = model_clip_grad(&m, 1.0f);
 *            model_adamw_step(&m, &hp, lr_cosine(step, ...));
 *     model_free(&m);
 * Nothing is allocated inside the loop once the activation arena has the batch's size.
 *
 * Modes (= what a stage computes and trains; "trainable" is decided by the mode of the LAST
 * forward, used by model_backward, model_clip_grad and model_adamw_step):
 *   MODE_LM        lm_pretrain: text only, L = L_gen; trains lm.*.
 *   MODE_CLIP      vit_pretrain (clip): image-level InfoNCE between ViT and a bag-of-words caption
 *                  encoder; trains vit.* and clip.* (clip.logit_scale only when learn_tau).
 *   MODE_ALIGN     align: L = L_gen + λ·L_con (L_con skipped when λ = 0); trains adapter.*
 *                  (+ con.logit_scale when learn_tau). The ViT runs forward only, the LM passes
 *                  gradients through without computing its weight gradients.
 *   MODE_INSTRUCT  instruct: L = L_gen; trains adapter.* and lm.*; the ViT runs forward only.
 *
 * Losses: L_gen = mean cross-entropy of the tied head at the target positions (logits are only
 * computed there). L_con (align, λ > 0): v̄_i = mean over the P/k² windows of unit(k×k average
 * pool of image i's adapter outputs); t̄_j = mean over caption j's content tokens (batch.content)
 * of unit(lm.wte[token]); ½[CE(e^ls·v̄t̄ᵀ, diag) + CE(its transpose, diag)] with ls = logit_scale
 * (t̄ takes no gradient in align: the LM is frozen there). CLIP (vit_pretrain): image = unit(
 * clip.img_proj(mean over patches of the ViT output)), caption = unit(clip.txt_proj(mean of
 * clip.bow.wte over the content tokens, all tokens when content is NULL)), same symmetric InfoNCE
 * with clip.logit_scale.
 *
 * Threads: OpenMP's (omp_set_num_threads / OMP_NUM_THREADS); the kernels set OpenBLAS to one
 * thread and split every matrix product themselves, into row chunks that depend on the shape only,
 * so the thread count never changes a result (tests/train/test_threads.c). On a shared machine run
 * with OMP_WAIT_POLICY=passive (see docs/PERFORMANCE.md).
 *
 * Sequences: in image modes row b is P visual tokens (the adapter outputs, P = (S/p)²) followed by
 * the batch's T text tokens; positions count across both, so P + T <= ctx. targets[b,t] is the
 * token to predict from text position t (sequence position P+t), -1 = no loss; the loader puts
 * tokens[b,t+1] there for the caption/answer tokens and <eos>. L_gen is the mean over all targets.
 *
 * Images: uint8 (B,S,S,3) normalised x/255 - 0.5, or float (B,S,S,3) already normalised.
 *
 * Parameter names (one tensor each, PyTorch Linear layout (out,in) for weights):
 *   vit.patch.w (dv, p*p*3)  vit.patch.b (dv)  vit.pos (P, dv)
 *   vit.h.{l}.ln1.w / .b (dv)   vit.h.{l}.attn.qkv.w (3dv, dv) .b (3dv)
 *   vit.h.{l}.attn.proj.w (dv, dv) .b   vit.h.{l}.ln2.w / .b
 *   vit.h.{l}.mlp.fc.w (4dv, dv) .b (4dv)   vit.h.{l}.mlp.proj.w (dv, 4dv) .b (dv)
 *   vit.lnf.w / .b (dv)
 *   adapter.fc1.w (d, dv) .b (d)            adapter.fc2.w (d, d) .b (d)   (fc2: mlp2x only)
 *   lm.wte (V, d)  lm.wpe (ctx, d)  lm.h.{l}.* as for the ViT with d  lm.lnf.w / .b (d)
 *   con.logit_scale (1)                                                   (learn_tau only)
 *   clip.img_proj.w (dv, dv) .b  clip.bow.wte (V, dv)  clip.txt_proj.w (dv, dv) .b
 *   clip.logit_scale (1)                                                  (learn_tau only)
 * A patch is flattened as p×p×3 values in (y, x, channel) order; patches row-major on the grid.
 * logit_scale = ln(1/τ): logits = exp(logit_scale)·s (CLIP's parameterisation), init ln(1/tau).
 *
 * Weight decay (AdamW, decoupled) applies to the 2-D weights of linear layers (*.w with two
 * dimensions, i.e. patch, qkv, proj, fc, adapter and clip projections); NOT to LayerNorm
 * parameters, biases, embeddings (lm.wte, lm.wpe, vit.pos, clip.bow.wte) or logit scales.
 *
 * Init (seeded, one rng stream per tensor): linear weights and embeddings N(0, 0.02), lm.wpe
 * N(0, 0.01), residual projections (attn.proj.w, mlp.proj.w) N(0, 0.02/sqrt(2·layers)), biases 0,
 * LayerNorm weight 1 and bias 0; CLIP's projections N(0, dv^-1/2) and its bag-of-words
 * embedding N(0, 1) (vectors that are unit-normalised next must not start tiny).
 *
 * Determinism: same seed and same batches give bitwise identical results, at any thread count.
 */
#ifndef CG_MODEL_H
#define CG_MODEL_H

#include <stdint.h>

enum model_adapter { ADAPTER_LINEAR = 0, ADAPTER_MLP2X = 1 };
enum model_mode { MODE_LM = 0, MODE_CLIP = 1, MODE_ALIGN = 2, MODE_INSTRUCT = 3 };
/* parameter groups (bit flags), for trainable masks */
enum { GROUP_VIT = 1, GROUP_CLIP = 2, GROUP_ADAPTER = 4, GROUP_LM = 8, GROUP_CON = 16 };

typedef struct {
    int image_size, patch;              /* S, p: P = (S/p)² visual tokens */
    int vit_dim, vit_layers, vit_heads; /* dv, L_v, heads */
    int lm_dim, lm_layers, lm_heads;    /* d, L, heads */
    int ctx, vocab;                     /* max sequence length (visual + text), V */
    int adapter;                        /* ADAPTER_LINEAR or ADAPTER_MLP2X */
    int pool;                           /* k: L_con pools k×k patch windows */
    float tau;                          /* temperature of L_con and CLIP (init when learnt) */
    int learn_tau;                      /* 1: logit_scale = ln(1/τ) is a parameter */
    float lambda;                       /* weight of L_con in MODE_ALIGN */
    int batch;                          /* the standard batch size (benchmarks, reserve) */
} model_config;

/* One named parameter tensor; grad, m, v sit at the same offset in their own arenas. */
typedef struct {
    char name[40];
    int ndim;
    int shape[2];
    long numel;
    float *data, *grad, *m, *v;
    int group; /* GROUP_* */
    int decay; /* 1 when AdamW's weight decay applies */
} model_param;

typedef struct {
    int B, T;                 /* batch rows, text tokens per row */
    const uint8_t *images_u8; /* (B,S,S,3) or NULL */
    const float *images_f32;  /* (B,S,S,3) normalised, or NULL */
    const int *tokens;        /* (B,T) */
    const int *targets;       /* (B,T), -1 = no loss; NULL = no L_gen (MODE_CLIP ignores it) */
    const uint8_t *content;   /* (B,T) 1 = caption content token (L_con, CLIP); may be NULL
                                    outside MODE_ALIGN/MODE_CLIP */
} model_batch;

typedef struct {
    float loss;    /* what backward differentiates: gen + λ·con (align), gen, or con (clip) */
    float gen;     /* L_gen (0 when there are no targets) */
    float con;     /* L_con in align, the CLIP loss in clip mode, else 0 */
    int n_targets; /* number of target tokens in L_gen */
} model_losses;

typedef struct {
    float beta1, beta2, eps, weight_decay;
} adamw_params;

typedef struct model model;

/* ---- configuration ---- */
/* Fills cfg with a standard size of DESIGN.md §1 ("tiny", "small", "base"), adapter mlp2x, pool
 * k=2, tau 0.07 fixed, lambda 1. CG_EUSER for an unknown name. */
int model_config_preset(model_config *cfg, const char *name);
/* CG_OK, or CG_EUSER with a message naming the first inconsistent field. */
int model_config_check(const model_config *cfg);

/* Stage/mode names: "lm_pretrain" or "lm", "vit_pretrain" or "clip", "align", "instruct".
 * CG_EUSER for another name. model_mode_name gives the stage name. */
int model_mode_parse(const char *name, int *mode);
const char *model_mode_name(int mode);
/* "linear" or "mlp2x"; CG_EUSER for another name. */
int model_adapter_parse(const char *name, int *adapter);

/* ---- lifecycle ---- */
int model_init(model *m, const model_config *cfg, uint64_t seed); /* CG_EUSER on a bad config */
void model_free(model *m);
/* Sizes the activation arena for B rows of up to T text tokens (T <= ctx). */
void model_reserve(model *m, int B, int T);

/* ---- parameters ---- */
int model_num_params(const model *m);
model_param *model_param_at(model *m, int i);
model_param *model_find_param(model *m, const char *name); /* NULL when absent */
long model_num_values(const model *m);                     /* total parameter count */
/* Copies the values of every tensor whose name starts with prefix ("vit.", "lm.", "" for all)
 * from src to dst (e.g. the ViT of vit_pretrain and the LM of lm_pretrain into the align model).
 * Moments are not copied. CG_EUSER when a tensor is missing in src or its shape differs. */
int model_copy_params(model *dst, model *src, const char *prefix);
/* 1 when a parameter of this group is trained in this mode. */
int model_mode_trains(int mode, int group);
int model_num_patches(const model *m); /* P */

/* ---- training ---- */
/* CG_OK, or CG_EUSER naming what is wrong with a batch for this mode (shapes against ctx, token
 * and target ids, images and the L_con content mask); P_image = the model's visual tokens. The
 * one check, shared by the CPU model and the CUDA plugin. */
int model_batch_check(const model_config *cfg, int P_image, const model_batch *batch, int mode);
/* Forward pass; fills *out. CG_EUSER on a malformed batch (shapes, token ids, missing images). */
int model_forward(model *m, const model_batch *batch, int mode, model_losses *out);
/* Gradients of the last forward's loss, ADDED to the parameter gradients of the trainable
 * tensors (frozen tensors get no gradient work). */
void model_backward(model *m);
void model_zero_grad(model *m);
/* Global L2 norm of the trainable gradients; scales them to max_norm when larger (max_norm <= 0:
 * no clipping). Returns the norm before clipping. */
float model_clip_grad(model *m, float max_norm);
/* One AdamW step with learning rate lr on the trainable tensors of the last forward's mode. */
void model_adamw_step(model *m, const adamw_params *hp, float lr);
int model_step_count(const model *m);       /* AdamW steps taken */
void model_set_step_count(model *m, int t); /* for checkpoint restore */
/* Linear warmup from 0 over `warmup` steps, then cosine from max_lr to min_lr at total_steps. */
float lr_cosine(int step, int warmup, int total_steps, float max_lr, float min_lr);

/* ---- evaluation ----
 * These run forward passes of their own and overwrite the activations: call model_backward only
 * right after the model_forward it differentiates. */
/* Σ log p(target) per row (and the number of targets) under the model; mode MODE_LM (text only)
 * or any image mode (all run the image + text forward, without L_con). */
int model_sequence_logprob(model *m, const model_batch *batch, int mode, double *logprob /* (B) */,
                           int *count /* (B) */);
/* Logits at every sequence position (visual ones included): out (B, P+T, V) in image modes,
 * (B, T, V) in MODE_LM. */
int model_logits(model *m, const model_batch *batch, int mode, float *out);
/* Greedy decoding: row b continues tokens[b, 0..prompt_len[b]) by n_new tokens, written to
 * out (B, n_new). batch->tokens has T columns (T >= max prompt_len; content beyond the prompt is
 * ignored); needs P + max(prompt_len) + n_new - 1 <= ctx. */
int model_generate(model *m, const model_batch *batch, int mode, const int *prompt_len /* (B) */,
                   int n_new, int *out /* (B,n_new) */);
/* v̄ (B,d): mean of the unit-normalised k×k-pooled adapter outputs of each image. */
int model_image_embed(model *m, const model_batch *batch, float *out /* (B,d) */);
/* t̄ (B,d): mean of the unit-normalised wte rows of each caption's content tokens. */
int model_caption_embed(model *m, const model_batch *batch, float *out /* (B,d) */);

/* Bytes held in the model's arenas: parameters, gradients, 2 AdamW moments, activations (with
 * the per-layer sets a training stack keeps), in MiB. */
double model_arena_mb(const model *m);

/* Floating-point operations of one training step (forward + backward) for mode and batch shape,
 * counting 2 per multiply-add of the matrix products and attention (see core/model.c). */
double model_step_flops(const model *m, int mode, int B, int T, int n_targets);

/* ---- the model's state (read-only outside core/) ---- */
typedef struct block_params block_params;
struct acts;

struct model {
    model_config cfg;
    int P, K; /* visual tokens; patch length p*p*3 */
    /* parameters, gradients, AdamW moments: four arenas of nvalues floats, same offsets */
    float *params_mem, *grads_mem, *m_mem, *v_mem;
    long nvalues;
    model_param *params;
    int nparams;
    /* typed views into params_mem */
    float *vit_patch_w, *vit_patch_b, *vit_pos, *vit_lnf_w, *vit_lnf_b;
    float *ad_fc1_w, *ad_fc1_b, *ad_fc2_w, *ad_fc2_b;
    float *wte, *wpe, *lm_lnf_w, *lm_lnf_b;
    float *con_logit_scale; /* NULL unless learn_tau */
    float *clip_img_w, *clip_img_b, *clip_bow_wte, *clip_txt_w, *clip_txt_b, *clip_logit_scale;
    block_params *vit_blocks, *lm_blocks;
    /* activations: one arena, sized by model_reserve for cap_B rows of cap_T text tokens */
    float *acts_mem;
    long acts_size;
    int *ints_mem;
    int cap_B, cap_T;
    struct acts *acts;
    /* the last forward */
    int mode, B, T, Ttot, n_targets, has_con;
    int train; /* 1: the last forward was model_forward (backward may follow), 0: an evaluation */
    model_batch batch; /* the last forward's batch: its arrays must stay alive until
                                    model_backward */
    int opt_step;
};

#endif
