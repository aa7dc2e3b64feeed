/* kernels.h: the compute primitives of the training core, one plain function per layer and
 * direction (llm.c style). The CPU versions live in kernels/cpu/ (OpenBLAS sgemm for matrix
 * products, OpenMP for the rest); a CUDA port implements the same names with the same maths.
 *
 * Conventions, for every function here:
 *   - dimension letters: B batch, T sequence length, C channels, OC output channels, NH heads,
 *     V vocabulary, N rows (B*T flattened), P patches, S image side, D embedding width;
 *   - all tensors are row-major float32; shapes are written next to each argument;
 *   - a Linear weight is (OC,C) (PyTorch layout): out = inp · Wᵀ + b;
 *   - backward functions ACCUMULATE (+=) into every gradient they are given, so callers zero
 *     gradient buffers first; a NULL gradient pointer means "not needed": that work is skipped
 *     (frozen weights cost no weight-gradient work);
 *   - determinism: work splits that depend on the sizes only (matrix rows in fixed chunks, one
 *     sgemm call each), no float atomics, reductions in a fixed order, so the same inputs give
 *     bitwise identical outputs at any thread count (tests/train/test_threads.c).
 */
#ifndef CG_KERNELS_H
#define CG_KERNELS_H

#include <stdint.h>

/* ---- dense layers (kernels/cpu/dense.c) ---- */

/* C (M,N) = op(A)·op(B) + beta·C, row-major, op = transpose when trans_*: the one matrix product
 * every kernel uses. On the CPU the M rows are split over the OpenMP threads and each part is a
 * single-threaded OpenBLAS sgemm: one thread pool, not two (OpenBLAS's own threads and OpenMP's
 * spin against each other on small machines), and deterministic for a given thread count. It sets
 * OpenBLAS to one thread on first use. */
void gemm(int trans_a, int trans_b, int M, int N, int K, const float *A /* op(A): (M,K) */, int lda,
          const float *B /* op(B): (K,N) */, int ldb, float beta, float *C /* (M,N) */, int ldc);

/* out = inp · weightᵀ + bias (bias may be NULL). */
void matmul_forward(float *out /* (N,OC) */, const float *inp /* (N,C) */,
                    const float *weight /* (OC,C) */, const float *bias /* (OC) or NULL */, int N,
                    int C, int OC);
void matmul_backward(float *dinp /* (N,C) or NULL */, float *dweight /* (OC,C) or NULL */,
                     float *dbias /* (OC) or NULL */, const float *dout /* (N,OC) */,
                     const float *inp /* (N,C) */, const float *weight /* (OC,C) */, int N, int C,
                     int OC);

/* out = (inp - mean) * rstd * weight + bias per row, eps 1e-5; mean and rstd are saved. */
void layernorm_forward(float *out /* (N,C) */, float *mean /* (N) */, float *rstd /* (N) */,
                       const float *inp /* (N,C) */, const float *weight /* (C) */,
                       const float *bias /* (C) */, int N, int C);
void layernorm_backward(float *dinp /* (N,C) or NULL */, float *dweight /* (C) or NULL */,
                        float *dbias /* (C) or NULL */, const float *dout /* (N,C) */,
                        const float *inp /* (N,C) */, const float *weight /* (C) */,
                        const float *mean /* (N) */, const float *rstd /* (N) */, int N, int C);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))). */
void gelu_forward(float *out /* (N) */, const float *inp /* (N) */, int N);
void gelu_backward(float *dinp /* (N) */, const float *inp /* (N) */, const float *dout /* (N) */,
                   int N);

/* out = a + b (the residual connection; its backward is "add dout to both"). */
void residual_forward(float *out /* (N) */, const float *a /* (N) */, const float *b /* (N) */,
                      int N);

/* The input of a transformer: the first P positions of each row are given vectors `vis` (visual
 * tokens, or all positions for the ViT: P == T, tokens NULL), the other T-P are wte[token];
 * every position adds its position embedding wpe[t]. */
void encoder_forward(float *out /* (B,T,C) */, const float *vis /* (B,P,C) or NULL */,
                     const int *tokens /* (B,T-P) or NULL */, const float *wte /* (V,C) or NULL */,
                     const float *wpe /* (>=T,C) */, int B, int T, int P, int C);
void encoder_backward(float *dvis /* (B,P,C) or NULL */, float *dwte /* (V,C) or NULL */,
                      float *dwpe /* (>=T,C) or NULL */, const float *dout /* (B,T,C) */,
                      const int *tokens /* (B,T-P) or NULL */, int B, int T, int P, int C);

/* Cuts images into non-overlapping p×p patches, row-major over the patch grid; one patch is its
 * p×p×3 values in (y, x, channel) order. Pixels are normalised x/255 - 0.5 from uint8, or copied
 * from float images (already normalised). Exactly one of img_u8, img_f32 is non-NULL. */
void patchify_forward(float *out /* (B,P,p*p*3) */, const uint8_t *img_u8 /* (B,S,S,3) */,
                      const float *img_f32 /* (B,S,S,3) */, int B, int S, int p);

/* ---- attention (kernels/cpu/attention.c) ---- */

/* Multi-head scaled dot-product attention over qkv = [q | k | v] (each C wide, head h takes
 * channels h*hs..(h+1)*hs, hs = C/NH). causal=1 masks future positions (LM), 0 is bidirectional
 * (ViT). att keeps the softmax probabilities for the backward pass. */
void attention_forward(float *out /* (B,T,C) */, float *att /* (B,NH,T,T) */,
                       const float *qkv /* (B,T,3C) */, int B, int T, int C, int NH, int causal);
void attention_backward(float *dqkv /* (B,T,3C) */, float *datt /* (B,NH,T,T) scratch */,
                        const float *dout /* (B,T,C) */, const float *qkv /* (B,T,3C) */,
                        const float *att /* (B,NH,T,T) */, int B, int T, int C, int NH, int causal);

/* ---- losses and pooling (kernels/cpu/losses.c) ---- */

/* Fused tied-head classifier on N selected rows: logits = x · wteᵀ, softmax, cross-entropy with
 * targets. probs keeps the softmax; losses[n] = -log p(target). */
void classifier_forward(float *losses /* (N) */, float *probs /* (N,V) */,
                        const float *x /* (N,C) */, const float *wte /* (V,C) */,
                        const int *targets /* (N) */, int N, int C, int V);
/* Backward of `scale * sum(losses)`: dlogits = scale (p - onehot), overwriting probs. */
void classifier_backward(float *dx /* (N,C) or NULL */, float *dwte /* (V,C) or NULL */,
                         float *probs /* (N,V), in: p, out: dlogits */, const float *x /* (N,C) */,
                         const float *wte /* (V,C) */, const int *targets /* (N) */, float scale,
                         int N, int C, int V);

/* k×k average pooling over a gh×gw grid of positions: (B, gh*gw, C) → (B, (gh/k)*(gw/k), C). */
void avgpool_forward(float *out /* (B,P/k²,C) */, const float *inp /* (B,P,C) */, int B, int gh,
                     int gw, int k, int C);
void avgpool_backward(float *dinp /* (B,P,C) */, const float *dout /* (B,P/k²,C) */, int B, int gh,
                      int gw, int k, int C);

/* Rows scaled to unit L2 norm: out = x / max(|x|, 1e-12); rnorm keeps 1/max(|x|, 1e-12). */
void l2norm_forward(float *out /* (N,C) */, float *rnorm /* (N) */, const float *inp /* (N,C) */,
                    int N, int C);
void l2norm_backward(float *dinp /* (N,C) */, const float *dout /* (N,C) */,
                     const float *out /* (N,C) */, const float *rnorm /* (N) */, int N, int C);

/* Mean over the positions of each row whose mask is non-zero (all positions when mask is NULL):
 * out[b] = Σ_t mask[b,t] inp[b,t] / Σ_t mask[b,t]; a row with no masked position gives 0. */
void masked_mean_forward(float *out /* (B,C) */, const float *inp /* (B,T,C) */,
                         const uint8_t *mask /* (B,T) or NULL */, int B, int T, int C);
void masked_mean_backward(float *dinp /* (B,T,C) */, const float *dout /* (B,C) */,
                          const uint8_t *mask /* (B,T) or NULL */, int B, int T, int C);

/* Rows of an embedding table: out[b,t] = table[tokens[b,t]]. */
void embedding_forward(float *out /* (N,C) */, const int *tokens /* (N) */,
                       const float *table /* (V,C) */, int N, int C);
void embedding_backward(float *dtable /* (V,C) */, const float *dout /* (N,C) */,
                        const int *tokens /* (N) */, int N, int C);

/* Symmetric InfoNCE (CLIP-style) over a batch of pairs: s = a·bᵀ, logits = exp(logit_scale)·s,
 * loss = ½[CE(logits, rows→diag) + CE(logitsᵀ, rows→diag)]. probs keeps the two softmaxes
 * (row-wise of logits, then row-wise of logitsᵀ). Returns the loss. */
float contrastive_forward(float *probs /* (2,B,B) */, const float *a /* (B,D) */,
                          const float *b /* (B,D) */, float logit_scale, int B, int D);
/* Backward of `scale * loss`. dlogit_scale may be NULL (fixed temperature). */
void contrastive_backward(float *da /* (B,D) or NULL */, float *db /* (B,D) or NULL */,
                          float *dlogit_scale /* (1) or NULL */, const float *probs /* (2,B,B) */,
                          const float *a /* (B,D) */, const float *b /* (B,D) */, float logit_scale,
                          float scale, int B, int D);

/* ---- optimizer (kernels/cpu/optim.c) ---- */

/* One AdamW update of n values (decoupled weight decay: p -= lr (m̂/(√v̂+eps) + wd p)). t is the
 * 1-based step for bias correction. */
void adamw_update(float *param, const float *grad, float *m, float *v, long n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int t);
/* Σ x² in double, summed in a fixed order (the same for any thread count). */
double sumsq(const float *x, long n);
/* x *= s. */
void scale_inplace(float *x, long n, float s);

#endif
