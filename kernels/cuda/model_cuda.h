/* model_cuda.h: the CG-VLM model of core/model.h on one GPU (kernels/cuda/model_cuda.cu), with the
 * same parameter layout: four device arenas (params, grads, AdamW m and v) of the host model's
 * nvalues floats at the host model's offsets, so a whole arena copies in one transfer and the CPU
 * model stays the owner of checkpoints and the oracle of the maths. The functions live in the
 * CUDA plugin (kernels/cuda/plugin.h); cgvlm calls them through kernels/gpu_loader.c, which loads
 * the plugin on first use. Without CUDA in the build, or without a plugin that loads, every entry
 * point fails with CG_EFAIL and says why ("built without CUDA", "cannot load libcgvlm_cuda.so").
 *
 * Lifecycle:
 *     model m; model_init(&m, &cfg, seed);          (or a checkpoint loaded into it)
 *     model_cuda *g; model_cuda_create(&g, &m);     uploads params, moments and the step count
 *     loop:  model_cuda_step(g, &batch, MODE_INSTRUCT, &hp, lr, 1.0f, &losses, &norm);
 *     model_cuda_download(g, &m);                   params, grads, moments, step count → host
 *     model_cuda_free(g);
 * model_cuda_step is zero_grad + forward + backward + clip + AdamW. The first step of a shape
 * (mode, B, T, image type, targets/content present, AdamW constants, precision, attention kind)
 * runs eagerly (a warm-up: every kernel is loaded before a capture), the second is captured as a
 * CUDA graph and launched; later steps of that shape replay the graph (the
 * learning rate, step number and clipping threshold are read from device memory, so they may
 * change every step). The eager pieces (forward, backward, clip, adamw) are there for tests and
 * for callers that need them apart.
 *
 * All four modes of core/model.h are implemented (MODE_LM, MODE_CLIP, MODE_ALIGN, MODE_INSTRUCT)
 * with the same trainable groups. Differences from the CPU that do not change the maths: L_gen
 * runs the tied head over every text position (positions without a target contribute 0) so that
 * the step's shapes do not depend on the data; n_targets is counted on the device.
 */
#ifndef CG_MODEL_CUDA_H
#define CG_MODEL_CUDA_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct model_cuda model_cuda;

/* 1 when this binary has the CUDA model: built with CUDA and the plugin loads (loads it). */
int model_cuda_available(void);
/* Allocates the device arenas for m's configuration and uploads m (params, m, v, step count).
 * CG_EFAIL with a message when there is no GPU or the build has no CUDA. */
int model_cuda_create(model_cuda **out, const model *m);
void model_cuda_free(model_cuda *g);
/* Host → device: params, grads, m, v and the step count. */
int model_cuda_upload(model_cuda *g, const model *m);
/* Device → host: params, grads, m, v and the step count (m must have g's configuration). */
int model_cuda_download(model_cuda *g, model *m);
/* CUDA_PREC_FP32 / _TF32 / _BF16 of kernels/cuda/cuda_ops.h for the matrix products (default
 * TF32). CG_EUSER for an unknown value. */
int model_cuda_set_precision(model_cuda *g, int prec);

/* How attention runs: CUDA_ATTN_MATMUL (default: cuBLAS products, the (T,T) probabilities
 * stored per layer, as on the CPU) or CUDA_ATTN_FUSED (kernels/cuda/ops.cu's flash-style kernels:
 * nothing (T,T) stored; head sizes <= 64). CG_EUSER for an unknown kind or too large heads. */
enum { CUDA_ATTN_MATMUL = 0, CUDA_ATTN_FUSED = 1 };
int model_cuda_set_attention(model_cuda *g, int attn);

/* Eager pieces, the same contracts as model_forward / model_backward / model_zero_grad /
 * model_clip_grad / model_adamw_step (trainable = the mode of the last forward). */
int model_cuda_forward(model_cuda *g, const model_batch *batch, int mode, model_losses *out);
int model_cuda_backward(model_cuda *g);
int model_cuda_zero_grad(model_cuda *g);
int model_cuda_clip_grad(model_cuda *g, float max_norm, float *norm);
int model_cuda_adamw_step(model_cuda *g, const adamw_params *hp, float lr);
/* Logits at every position (as model_logits): out (B, P+T, V) on the host. */
int model_cuda_logits(model_cuda *g, const model_batch *batch, int mode, float *out);

/* One whole training step (graph-captured per shape); *norm = the gradient norm before clipping
 * (may be NULL). AdamW applies the clipping factor as it reads the gradients, so afterwards the
 * gradient arena holds the unclipped gradients (model_clip_grad's in-place scaling is skipped). */
int model_cuda_step(model_cuda *g, const model_batch *batch, int mode, const adamw_params *hp,
                    float lr, float max_norm, model_losses *out, float *norm);
/* One eager training step with device timings: ms[0] zero-grad + forward, ms[1] backward,
 * ms[2] clipping + AdamW (CUDA events; launch gaps included, host work not). */
int model_cuda_profile_step(model_cuda *g, const model_batch *batch, int mode,
                            const adamw_params *hp, float lr, float max_norm, double ms[3]);
/* Where the device time of the last model_cuda_profile_step went: one entry per section of the
 * step ("lm fwd fc", "lm bwd attention", "optimizer adamw", ...; a layer's sections add over the
 * layers), largest first, their times adding up to the step's. Returns the number of entries
 * written (at most max; 0 before the first profile step). */
#define CUDA_OP_TIMES_MAX 64
typedef struct {
    char name[32];
    int calls;  /* sections of this name in the step (e.g. one per layer) */
    double ms;
} cuda_op_time;
int model_cuda_profile_ops(const model_cuda *g, cuda_op_time *out, int max);
/* 0 to always run eagerly (for comparisons), 1 (default; CGVLM_CUDA_GRAPHS=0 in the environment
 * makes 0 the default) to capture and replay graphs; a shape whose capture fails runs eagerly
 * (with a warning on stderr). */
void model_cuda_use_graphs(model_cuda *g, int on);
/* Number of graphs captured so far (tests: a shape is captured once, at its second step). */
int model_cuda_graph_captures(const model_cuda *g);

/* `cgvlm bench train --device cuda`: times `steps` training steps (after `warmup`, which includes
 * the graph capture) of cfg in mode on the synthetic batch of core/bench_train.c (B rows of T text
 * tokens; targets on every text position but the last; content on every one but the first).
 * ms per step is host wall time around model_cuda_step (batch upload, graph replay, reading the
 * losses back), median and best. */
typedef struct {
    double ms_median, ms_best;
    double flops;          /* model_step_flops of the step */
    double phase_ms[3];    /* one eager step: forward, backward, clip + AdamW (device time) */
    double graph_ms;       /* the step's graph replayed alone, back to back (device time, median
                            * of 10): ms_median - graph_ms is the host's share (batch upload,
                            * launch, reading the losses back) */
    float loss_first, loss_last;
    long params;
    int seq;               /* sequence length through the LM (P + T in image modes) */
    char device[128];      /* the GPU's name */
    cuda_op_time ops[CUDA_OP_TIMES_MAX]; /* the last eager step's sections (model_cuda_profile_ops) */
    int n_ops;
} cuda_bench_result;
int cuda_bench_train(const model_config *cfg, int mode, int B, int T, int steps, int warmup,
                     int prec, int attn, cuda_bench_result *out);

/* One cuBLAS product alone (kernels/cuda/bench_gemm.cu): row-major C (M,N) = op(A) (M,K) ·
 * op(B) (K,N), op = transposed where ta/tb, fp32 output; *ms = the median over iters (after 3
 * warm-ups) of CUDA event times. kind: plain fp32, TF32, bf16 tensor cores on fp32 operands
 * (CUBLAS_COMPUTE_32F_FAST_16BF), or bf16 operands (fp32 accumulation). */
enum { CUDA_GEMM_FP32, CUDA_GEMM_TF32, CUDA_GEMM_BF16_ON_FP32, CUDA_GEMM_BF16 };
int cuda_bench_gemm(int M, int N, int K, int ta, int tb, int kind, int iters, double *ms);

#ifdef __cplusplus
}
#endif

#endif
