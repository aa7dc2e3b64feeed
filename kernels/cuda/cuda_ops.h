/* cuda_ops.h: the compute primitives of kernels/kernels.h on the GPU (kernels/cuda/ops.cu), one
 * function per layer and direction, the same maths and the same argument order as the CPU
 * versions, names prefixed cuda_. Every tensor argument is a DEVICE pointer; every function only
 * enqueues work on the library's stream (cuda_stream) and returns at once, so a whole training
 * step can be captured as a CUDA graph. Only the cuda_ctx_* and memory helpers synchronise.
 *
 * Conventions beyond kernels.h:
 *   - backward functions accumulate (+=) like the CPU ones; a NULL gradient skips its work; the
 *     _to variants WRITE (=) their input gradient instead (weight gradients still accumulate),
 *     which spares the model a memset and a read of buffers that start at zero;
 *   - scalars that the CPU returns (losses, norms) are written to device pointers instead, and
 *     scalars that change between steps (the logit scale, the learning rate) are read from device
 *     pointers, so a captured graph stays valid;
 *   - determinism: no float atomics anywhere; every reduction runs in a fixed order, so the same
 *     inputs give bitwise identical outputs from run to run (cuBLAS in its default mode is
 *     deterministic for a fixed stream, handle and workspace);
 *   - matrix products go through cuBLAS with the precision chosen by cuda_ctx_set_precision:
 *     CUDA_PREC_FP32 (plain fp32, for the oracle checks), CUDA_PREC_TF32 (tensor cores, fp32
 *     storage; the default) or CUDA_PREC_BF16 (CUBLAS_COMPUTE_32F_FAST_16BF on fp32 operands:
 *     cuBLAS MAY round them to bf16, and on the H100 it mostly picks the TF32 kernels instead,
 *     measured: the same times and losses). Real bf16 products take bf16 operands: the _bf16
 *     functions below, whose operands are bf16 copies (cuda_bf16) that the producing kernel writes
 *     directly; they multiply exactly and accumulate in fp32, whatever the precision setting.
 *     Weights, gradients and AdamW state stay fp32 (AdamW refreshes the weights' bf16 copy).
 *   - scatter-adds into embedding tables (dwte) use a token index built on the host
 *     (cuda_token_index): for each table row, the list of rows of dout that add into it, in order.
 *
 * Shapes use the letters of kernels.h: B batch, T sequence, C channels, OC output channels,
 * NH heads, V vocabulary, N rows, P patches, S image side, D embedding width.
 */
#ifndef CG_CUDA_OPS_H
#define CG_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { CUDA_PREC_FP32 = 0, CUDA_PREC_TF32 = 1, CUDA_PREC_BF16 = 2 };
/* a bf16 value in device memory (its 16 bits; C callers need no CUDA header) */
typedef uint16_t cuda_bf16;

/* ---- context: one device, one stream, one cuBLAS handle for the process ---- */
/* Creates the stream and the cuBLAS handle on device 0 (idempotent). CG_EFAIL with a message when
 * there is no usable GPU. */
int cuda_ctx_init(void);
void cuda_ctx_set_precision(int prec);     /* CUDA_PREC_*; applies to products enqueued later */
/* 1 (default; CGVLM_CUDA_LT=0 in the environment turns it off): a product with a bias or a
 * residual is one cuBLASLt call with an epilogue; 0: cuBLAS, then a bias/residual kernel. Turns
 * itself off, with a warning, when cuBLASLt refuses a product. */
void cuda_ctx_set_lt(int on);
int cuda_ctx_lt(void);
int cuda_ctx_precision(void);
/* Waits for the stream; CG_EFAIL with the CUDA error text if any enqueued work failed. */
int cuda_ctx_sync(void);
/* CG_EFAIL when the last launch failed (checked after each op in debug paths and tests). */
int cuda_ctx_check(const char *what);
const char *cuda_prec_name(int prec);      /* "fp32", "tf32", "bf16" */
void *cuda_ctx_stream(void);               /* the library's cudaStream_t, for .cu callers */

/* ---- device memory (so that C callers never include CUDA headers) ---- */
void *cuda_alloc(size_t bytes);            /* zeroed; aborts with a message when out of memory */
void cuda_free(void *p);
void cuda_upload(void *dst, const void *src, size_t bytes);      /* synchronous */
void cuda_download(void *dst, const void *src, size_t bytes);    /* synchronous */
void cuda_upload_async(void *dst, const void *src, size_t bytes); /* on the stream */
void cuda_memset0(void *p, size_t bytes);                        /* on the stream */

/* ---- dense layers ---- */
void cuda_matmul_forward(float *out /* (N,OC) */, const float *inp /* (N,C) */,
                         const float *weight /* (OC,C) */, const float *bias /* (OC) or NULL */,
                         int N, int C, int OC);
/* out = (inp · weightᵀ + bias) + residual: matmul_forward followed by residual_forward. */
void cuda_matmul_residual_forward(float *out /* (N,OC) */, const float *inp /* (N,C) */,
                                  const float *weight /* (OC,C) */,
                                  const float *bias /* (OC) or NULL */,
                                  const float *residual /* (N,OC) */, int N, int C, int OC);
void cuda_matmul_backward(float *dinp /* (N,C) or NULL */, float *dweight /* (OC,C) or NULL */,
                          float *dbias /* (OC) or NULL */, const float *dout /* (N,OC) */,
                          const float *inp /* (N,C) */, const float *weight /* (OC,C) */, int N,
                          int C, int OC);
void cuda_matmul_backward_to(float *dinp /* (N,C) */, float *dweight /* (OC,C) or NULL */,
                             float *dbias /* (OC) or NULL */, const float *dout /* (N,OC) */,
                             const float *inp /* (N,C) */, const float *weight /* (OC,C) */, int N,
                             int C, int OC);
/* ---- bf16 operands (see the conventions above) ---- */
/* dst = src rounded to bf16 (to nearest even), elementwise */
void cuda_to_bf16(cuda_bf16 *dst /* (n) */, const float *src /* (n) */, long n);
/* out = inp · weightᵀ + bias (+ residual when not NULL), fp32 out, bf16 operands */
void cuda_matmul_forward_bf16(float *out /* (N,OC) */, const cuda_bf16 *inp /* (N,C) */,
                              const cuda_bf16 *weight /* (OC,C) */,
                              const float *bias /* (OC) or NULL */,
                              const float *residual /* (N,OC) or NULL */, int N, int C, int OC);
/* matmul_backward with bf16 operands: dout_bf = dout in bf16 (dbias sums the fp32 dout); dinp is
 * added to (dinp_acc = 1) or written (0); dweight accumulates; NULL gradients are skipped */
void cuda_matmul_backward_bf16(float *dinp /* (N,C) or NULL */, float *dweight /* (OC,C) or NULL */,
                               float *dbias /* (OC) or NULL */, const float *dout /* (N,OC) */,
                               const cuda_bf16 *dout_bf /* (N,OC) */,
                               const cuda_bf16 *inp /* (N,C) */,
                               const cuda_bf16 *weight /* (OC,C) */, int N, int C, int OC,
                               int dinp_acc);
/* layernorm_forward with the output in bf16 only (mean and rstd fp32) */
void cuda_layernorm_forward_bf16(cuda_bf16 *out /* (N,C) */, float *mean /* (N) */,
                                 float *rstd /* (N) */, const float *inp /* (N,C) */,
                                 const float *weight /* (C) */, const float *bias /* (C) */, int N,
                                 int C);
/* gelu_forward with the output in bf16 only */
void cuda_gelu_forward_bf16(cuda_bf16 *out /* (N) */, const float *inp /* (N) */, long N);
/* gelu_backward_to writing the input gradient twice: fp32 and bf16 */
void cuda_gelu_backward_to_bf16(float *dinp /* (N) */, cuda_bf16 *dinp_bf /* (N) */,
                                const float *inp /* (N) */, const float *dout /* (N) */, long N);

void cuda_layernorm_forward(float *out /* (N,C) */, float *mean /* (N) */, float *rstd /* (N) */,
                            const float *inp /* (N,C) */, const float *weight /* (C) */,
                            const float *bias /* (C) */, int N, int C);
void cuda_layernorm_backward(float *dinp /* (N,C) or NULL */, float *dweight /* (C) or NULL */,
                             float *dbias /* (C) or NULL */, const float *dout /* (N,C) */,
                             const float *inp /* (N,C) */, const float *weight /* (C) */,
                             const float *mean /* (N) */, const float *rstd /* (N) */, int N, int C);
void cuda_gelu_forward(float *out /* (N) */, const float *inp /* (N) */, long N);
void cuda_gelu_backward(float *dinp /* (N) */, const float *inp /* (N) */,
                        const float *dout /* (N) */, long N);
void cuda_gelu_backward_to(float *dinp /* (N) */, const float *inp /* (N) */,
                           const float *dout /* (N) */, long N);
void cuda_residual_forward(float *out /* (N) */, const float *a /* (N) */, const float *b /* (N) */,
                           long N);
/* dst += src, elementwise (the backward of a copy or of a residual branch). */
void cuda_add_inplace(float *dst /* (N) */, const float *src /* (N) */, long N);
void cuda_encoder_forward(float *out /* (B,T,C) */, const float *vis /* (B,P,C) or NULL */,
                          const int *tokens /* (B,T-P) or NULL */, const float *wte /* (V,C) */,
                          const float *wpe /* (>=T,C) */, int B, int T, int P, int C);
/* As encoder_backward; dwte needs the token index of the text positions (cuda_token_index with
 * row_of = "sequence row": b*T + P + t), whose rows address dout directly. */
void cuda_encoder_backward(float *dvis /* (B,P,C) or NULL */, float *dwte /* (V,C) or NULL */,
                           float *dwpe /* (>=T,C) or NULL */, const float *dout /* (B,T,C) */,
                           const int *tok_start /* (V+1) */, const int *tok_rows /* (B*(T-P)) */,
                           int V, int B, int T, int P, int C);
/* The text rows of a sequence tensor (b, P+t) ↔ a compact tensor (b*T + t): to_seq = 0 copies
 * seq's rows into compact, 1 writes compact's rows into seq (its visual rows are left alone). */
void cuda_text_rows(float *compact /* (B*T,C) */, float *seq /* (B,P+T,C) */, int B, int T, int P,
                    int C, int to_seq);
void cuda_patchify_forward(float *out /* (B,P,p*p*3) */, const uint8_t *img_u8 /* (B,S,S,3) */,
                           const float *img_f32 /* (B,S,S,3) */, int B, int S, int p);

/* ---- attention (matrix products through cuBLAS, batched over B*NH) ---- */
/* Scratch (device floats) for one call: the per-head pointer arrays of the batched products (5
 * forward, 9 backward, each B·NH pointers, placed at the scratch's first 16-byte boundary) and,
 * for the backward, datt (B,NH,T,T): the two helpers below. The products run in place on qkv,
 * out, dout and dqkv; one launch per product when every head's matrix is 16-byte aligned (the
 * buffers are, T is even and the head size a multiple of 4), else one per batch row or head. */
long cuda_attention_scratch_forward(int B, int T, int C, int NH);
long cuda_attention_scratch_backward(int B, int T, int C, int NH);
void cuda_attention_forward(float *out /* (B,T,C) */, float *att /* (B,NH,T,T) */,
                            const float *qkv /* (B,T,3C) */, float *scratch, int B, int T, int C,
                            int NH, int causal);
void cuda_attention_backward(float *dqkv /* (B,T,3C) */, const float *dout /* (B,T,C) */,
                             const float *qkv /* (B,T,3C) */, const float *att /* (B,NH,T,T) */,
                             float *scratch, int B, int T, int C, int NH, int causal);

void cuda_attention_backward_to(float *dqkv /* (B,T,3C) */, const float *dout /* (B,T,C) */,
                                const float *qkv /* (B,T,3C) */, const float *att /* (B,NH,T,T) */,
                                float *scratch, int B, int T, int C, int NH, int causal);

/* Fused attention: the same maths without storing the (T,T) probabilities: lse (B,NH,T) keeps
 * each row's log-sum-exp for the backward, which recomputes the probabilities; it needs the
 * forward's output `out` too. Head size C/NH <= 64. Scratch: cuda_attention_fused_scratch floats,
 * for the forward and the backward alike. */
long cuda_attention_fused_scratch(int B, int T, int C, int NH);
void cuda_attention_fused_forward(float *out /* (B,T,C) */, float *lse /* (B,NH,T) */,
                                  const float *qkv /* (B,T,3C) */, float *scratch, int B, int T,
                                  int C, int NH, int causal);
void cuda_attention_fused_backward(float *dqkv /* (B,T,3C) */, const float *dout /* (B,T,C) */,
                                   const float *qkv /* (B,T,3C) */, const float *out /* (B,T,C) */,
                                   const float *lse /* (B,NH,T) */, float *scratch, int B, int T,
                                   int C, int NH, int causal);
void cuda_attention_fused_backward_to(float *dqkv /* (B,T,3C) */, const float *dout /* (B,T,C) */,
                                      const float *qkv /* (B,T,3C) */,
                                      const float *out /* (B,T,C) */, const float *lse /* (B,NH,T) */,
                                      float *scratch, int B, int T, int C, int NH, int causal);

/* ---- losses and pooling ---- */
/* Fused tied-head classifier over N rows; a target < 0 marks a row without loss (loss 0, and its
 * gradient row is 0). logits = x·wteᵀ are computed into probs and softmaxed in place. */
void cuda_classifier_forward(float *losses /* (N) */, float *probs /* (N,V) */,
                             const float *x /* (N,C) */, const float *wte /* (V,C) */,
                             const int *targets /* (N) */, int N, int C, int V);
/* Backward of `(*scale) * sum(losses)`; scale is a device scalar (e.g. 1/n_targets). */
void cuda_classifier_backward(float *dx /* (N,C) or NULL */, float *dwte /* (V,C) or NULL */,
                              float *probs /* (N,V), in: p, out: dlogits */,
                              const float *x /* (N,C) */, const float *wte /* (V,C) */,
                              const int *targets /* (N) */, const float *scale /* (1) */, int N,
                              int C, int V);
/* loss[0] = Σ losses[i] / count(targets >= 0) (0 when none) and inv_n[0] = 1/count (0 when none),
 * summed in double in a fixed order. */
void cuda_mean_loss(float *loss /* (1) */, float *inv_n /* (1) */, const float *losses /* (N) */,
                    const int *targets /* (N) */, int N);
void cuda_avgpool_forward(float *out /* (B,P/k²,C) */, const float *inp /* (B,P,C) */, int B,
                          int gh, int gw, int k, int C);
void cuda_avgpool_backward(float *dinp /* (B,P,C) */, const float *dout /* (B,P/k²,C) */, int B,
                           int gh, int gw, int k, int C);
void cuda_l2norm_forward(float *out /* (N,C) */, float *rnorm /* (N) */,
                         const float *inp /* (N,C) */, int N, int C);
void cuda_l2norm_backward(float *dinp /* (N,C) */, const float *dout /* (N,C) */,
                          const float *out /* (N,C) */, const float *rnorm /* (N) */, int N, int C);
void cuda_masked_mean_forward(float *out /* (B,C) */, const float *inp /* (B,T,C) */,
                              const uint8_t *mask /* (B,T) or NULL */, int B, int T, int C);
void cuda_masked_mean_backward(float *dinp /* (B,T,C) */, const float *dout /* (B,C) */,
                               const uint8_t *mask /* (B,T) or NULL */, int B, int T, int C);
void cuda_embedding_forward(float *out /* (N,C) */, const int *tokens /* (N) */,
                            const float *table /* (V,C) */, int N, int C);
/* dtable[v] += Σ dout[r] over the rows r of v in the token index, in index order. */
void cuda_embedding_backward(float *dtable /* (V,C) */, const float *dout /* (rows,C) */,
                             const int *tok_start /* (V+1) */, const int *tok_rows /* (n) */,
                             int V, int C);
/* Symmetric InfoNCE; logit_scale is a device scalar, the loss is written to loss[0]. */
void cuda_contrastive_forward(float *loss /* (1) */, float *probs /* (2,B,B) */,
                              const float *a /* (B,D) */, const float *b /* (B,D) */,
                              const float *logit_scale /* (1) */, int B, int D);
/* Backward of `scale * loss`; scratch holds 2*B*B floats. */
void cuda_contrastive_backward(float *da /* (B,D) or NULL */, float *db /* (B,D) or NULL */,
                               float *dlogit_scale /* (1) or NULL */,
                               const float *probs /* (2,B,B) */, const float *a /* (B,D) */,
                               const float *b /* (B,D) */, const float *logit_scale /* (1) */,
                               float scale, float *scratch /* (2,B,B) */, int B, int D);

/* ---- optimizer: over segments (offset, length, decay) of one arena ---- */
typedef struct {
    long off, n;
    int decay; /* 1: weight decay applies */
} cuda_segment;
/* Per-step values the optimizer reads from the device (so a captured graph serves every step). */
typedef struct {
    float lr;
    int t;           /* 1-based AdamW step */
    float max_norm;  /* clipping threshold (<= 0: none) */
} cuda_step_args;
/* AdamW on every segment: param -= lr (m̂/(√v̂+eps) + wd·decay·param), as adamw_update, with
 * the gradient multiplied by grad_scale[0] first (device scalar, e.g. the clipping factor of
 * cuda_clip_grad with apply = 0; NULL = 1). param_bf (or NULL): the parameters' bf16 copy, at
 * the same offsets, refreshed with each updated value. */
void cuda_adamw_update(float *param, cuda_bf16 *param_bf /* or NULL */, const float *grad, float *m,
                       float *v,
                       const cuda_segment *segs /* device (nseg) */, int nseg, long max_seg,
                       const cuda_step_args *args /* device */,
                       const float *grad_scale /* (1) device or NULL */, float beta1, float beta2,
                       float eps, float weight_decay);
/* Global-norm clipping over the segments: norm[0] = sqrt(Σ x²) summed in double in a fixed order,
 * norm[1] = the clipping factor: max_norm/norm when norm > max_norm (args->max_norm > 0), else 1;
 * apply = 1 scales the gradients by it, apply = 0 leaves that to cuda_adamw_update's grad_scale
 * (one pass over the gradients fewer). partial: scratch of cuda_clip_partials(nseg) doubles. */
int cuda_clip_partials(int nseg);
void cuda_clip_grad(float *grad, const cuda_segment *segs /* device */, int nseg, long max_seg,
                    const cuda_step_args *args /* device */, double *partial, float *norm /* (2) */,
                    int apply);

/* ---- host helpers ---- */
/* Builds the token index of N tokens (host arrays): start (V+1) and rows (N), rows of token v at
 * rows[start[v] .. start[v+1]), each row r mapped through row_of(r) = (r / per) * stride + off +
 * r % per (per = N, stride = 0, off = 0 for the identity). Tokens outside [0, V) are skipped. */
void cuda_token_index(int *start /* (V+1) */, int *rows /* (N) */, const int *tokens /* (N) */,
                      int N, int V, int per, int stride, int off);

#ifdef __cplusplus
}
#endif

#endif
