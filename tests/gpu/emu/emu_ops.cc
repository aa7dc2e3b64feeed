/* emu_ops.cc: the contract of kernels/cuda/cuda_ops.h implemented on the host with the CPU kernels
 * of kernels/kernels.h, and the fake CUDA runtime of tests/gpu/emu/cuda_runtime.h (graphs record
 * closures at capture, replay them at launch). Linked with kernels/cuda/model_cuda.cu compiled as
 * host C++ and tests/gpu/test_gpu_model.c, it checks the GPU model's orchestration (buffers,
 * modes, token indexes, gradient flags, segments, graph capture and replay) against core/model.c
 * without a GPU: the gpu_emu test. "Device" memory is host memory (ASan sees its bounds in the
 * sanitizer build); the attention and contrastive scratch buffers are filled with garbage at each
 * call, so one that is too small or read before it is written shows.
 *
 * CGVLM_EMU_JITTER=E multiplies the outputs of the products (matmul, attention, classifier) and
 * the layernorm gradients by 1 + E·u, u in [-1, 1] a hash of the index and the value (the same in
 * an eager run and a replay): a stand-in for the GPU's other summation order, to calibrate the
 * tolerances of test_gpu_model.c (see there). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <vector>

#include "cuda_runtime.h"

extern "C" {
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"
#include "util/util.h"
}

static double jit_eps = -1;
static void jitter(float *p, long n) {
    if (jit_eps < 0) {
        const char *e = getenv("CGVLM_EMU_JITTER");
        jit_eps = e ? strtod(e, NULL) : 0.0;
    }
    if (!p || jit_eps == 0.0) return;
    for (long i = 0; i < n; i++) {
        unsigned bits;
        memcpy(&bits, &p[i], sizeof bits);
        unsigned long long h = (bits * 0x9E3779B97F4A7C15ull) ^ ((unsigned long long)i * 0xC2B2AE3D27D4EB4Full);
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 32;
        double u = (double)(h >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        p[i] = (float)(p[i] * (1.0 + jit_eps * u));
    }
}

typedef std::vector<std::function<void()>> oplist;
static oplist *rec = nullptr;
static long n_recorded = 0, n_replayed = 0;

void emu_record(std::function<void()> f) {
    if (rec) {
        rec->push_back(f);
        n_recorded++;
    } else
        f();
}
#define EMU(...) emu_record([=]() { __VA_ARGS__; })
/* a broken contract: checked in every build type (assert is off in Release) */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "emu: %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#define NOT_CAPTURING(what)                                                                        \
    do {                                                                                           \
        if (rec) {                                                                                 \
            fprintf(stderr, "emu: %s during graph capture\n", what);                               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    NOT_CAPTURING("nested capture");
    rec = new oplist;
    return 0;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    *g = rec;
    rec = nullptr;
    return 0;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = new oplist(*(oplist *)g);
    return 0;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete (oplist *)g;
    return 0;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete (oplist *)e;
    return 0;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    NOT_CAPTURING("graph launch");
    for (auto &f : *(oplist *)e) f(), n_replayed++;
    return 0;
}
/* at exit: how much went through graphs (0 captured would mean the graph path went untested) */
static struct emu_report {
    ~emu_report() { printf("emu: %ld ops captured into graphs, %ld replayed\n", n_recorded, n_replayed); }
} report;
cudaError_t cudaGetLastError(void) { return 0; }
const char *cudaGetErrorString(cudaError_t) { return "emu"; }
/* an event is the host time at which the work before it ran (the emulation runs each op as it is
 * enqueued, outside a capture) */
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = cg_calloc(1, sizeof(double));
    return 0;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    double *t = (double *)e;
    EMU(*t = cg_mono_time());
    return 0;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)((*(double *)b - *(double *)a) * 1e3);
    return 0;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return 0; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free(e);
    return 0;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    snprintf(p->name, sizeof p->name, "emu");
    return 0;
}

extern "C" {
int cg_gpu_built(void) { return 1; }
int cg_gpu_count(void) { return 1; }
void cg_gpu_describe(cg_buf *out) { cg_buf_adds(out, "0: emu\n"); }
int model_cuda_available(void) { return 1; }

static int prec = CUDA_PREC_TF32, lt = 1;
int cuda_ctx_init(void) { return CG_OK; }
void cuda_ctx_set_precision(int p) { prec = p; }
void cuda_ctx_set_lt(int on) { lt = on; }
int cuda_ctx_lt(void) { return lt; }
int cuda_ctx_precision(void) { return prec; }
int cuda_ctx_sync(void) {
    NOT_CAPTURING("sync");
    return CG_OK;
}
int cuda_ctx_check(const char *) { return CG_OK; }
const char *cuda_prec_name(int p) { return p == 0 ? "fp32" : p == 1 ? "tf32" : "bf16"; }
void *cuda_ctx_stream(void) { return (void *)1; }

void *cuda_alloc(size_t bytes) {
    NOT_CAPTURING("alloc");
    if (!bytes) bytes = 16;
    void *p = calloc(1, bytes); /* ASan checks the bounds */
    REQUIRE(p);
    return p;
}
void cuda_free(void *p) {
    NOT_CAPTURING("free");
    free(p);
}
void cuda_upload(void *d, const void *s, size_t n) {
    NOT_CAPTURING("upload");
    memcpy(d, s, n);
}
void cuda_download(void *d, const void *s, size_t n) {
    NOT_CAPTURING("download");
    memcpy(d, s, n);
}
void cuda_upload_async(void *d, const void *s, size_t n) {
    NOT_CAPTURING("upload_async (would capture a read of host memory)");
    memcpy(d, s, n);
}
void cuda_memset0(void *p, size_t n) { EMU(memset(p, 0, n)); }

/* ---- dense ---- */
void cuda_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                         int OC) {
    EMU(matmul_forward(out, inp, w, b, N, C, OC); jitter(out, (long)N * OC));
}
void cuda_matmul_residual_forward(float *out, const float *inp, const float *w, const float *b,
                                  const float *res, int N, int C, int OC) {
    EMU(matmul_forward(out, inp, w, b, N, C, OC); jitter(out, (long)N * OC); residual_forward(out, out, res, N * OC));
}
void cuda_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, int N, int C, int OC) {
    EMU(matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC); jitter(dinp, (long)N * C); jitter(dw, (long)OC * C); jitter(db, OC));
}
void cuda_matmul_backward_to(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, int N, int C, int OC) {
    REQUIRE(dinp);
    EMU(memset(dinp, 0, sizeof(float) * (size_t)N * C);
        matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC); jitter(dinp, (long)N * C); jitter(dw, (long)OC * C); jitter(db, OC));
}
/* bf16 as the GPU rounds it (to nearest even), and back */
static cuda_bf16 bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (cuda_bf16)((u >> 16) | 0x40u);
    return (cuda_bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static std::vector<float> widen(const cuda_bf16 *p, long n) {
    std::vector<float> f((size_t)n);
    for (long i = 0; i < n; i++) {
        uint32_t u = (uint32_t)p[i] << 16;
        memcpy(&f[(size_t)i], &u, 4);
    }
    return f;
}
static void narrow(cuda_bf16 *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
}
void cuda_to_bf16(cuda_bf16 *dst, const float *src, long n) { EMU(narrow(dst, src, n)); }
void cuda_matmul_forward_bf16(float *out, const cuda_bf16 *inp, const cuda_bf16 *w, const float *b,
                              const float *res, int N, int C, int OC) {
    EMU(std::vector<float> fi = widen(inp, (long)N * C), fw = widen(w, (long)OC * C);
        matmul_forward(out, fi.data(), fw.data(), b, N, C, OC); jitter(out, (long)N * OC);
        if (res) residual_forward(out, out, res, N * OC));
}
void cuda_matmul_backward_bf16(float *dinp, float *dw, float *db, const float *dout,
                               const cuda_bf16 *dout_bf, const cuda_bf16 *inp, const cuda_bf16 *w,
                               int N, int C, int OC, int dinp_acc) {
    EMU(std::vector<float> fd = widen(dout_bf, (long)N * OC), fi = widen(inp, (long)N * C),
        fw = widen(w, (long)OC * C);
        if (dinp && !dinp_acc) memset(dinp, 0, sizeof(float) * (size_t)N * C);
        matmul_backward(dinp, dw, NULL, fd.data(), fi.data(), fw.data(), N, C, OC);
        if (db) matmul_backward(NULL, NULL, db, dout, fi.data(), fw.data(), N, C, OC);
        jitter(dinp, (long)N * C); jitter(dw, (long)OC * C); jitter(db, OC));
}
void cuda_layernorm_forward_bf16(cuda_bf16 *out, float *mean, float *rstd, const float *inp,
                                 const float *w, const float *b, int N, int C) {
    EMU(std::vector<float> o((size_t)N * C); layernorm_forward(o.data(), mean, rstd, inp, w, b, N, C);
        narrow(out, o.data(), (long)N * C));
}
void cuda_gelu_forward_bf16(cuda_bf16 *out, const float *inp, long N) {
    EMU(std::vector<float> o((size_t)N); gelu_forward(o.data(), inp, (int)N); narrow(out, o.data(), N));
}
void cuda_gelu_backward_to_bf16(float *dinp, cuda_bf16 *dinp_bf, const float *inp, const float *dout,
                                long N) {
    EMU(memset(dinp, 0, sizeof(float) * (size_t)N); gelu_backward(dinp, inp, dout, (int)N);
        narrow(dinp_bf, dinp, N));
}
void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int N, int C) {
    EMU(layernorm_forward(out, mean, rstd, inp, w, b, N, C));
}
void cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, int N, int C) {
    EMU(layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C); jitter(dinp, (long)N * C); jitter(dw, C); jitter(db, C));
}
void cuda_gelu_forward(float *out, const float *inp, long N) { EMU(gelu_forward(out, inp, (int)N)); }
void cuda_gelu_backward(float *dinp, const float *inp, const float *dout, long N) {
    EMU(gelu_backward(dinp, inp, dout, (int)N));
}
void cuda_gelu_backward_to(float *dinp, const float *inp, const float *dout, long N) {
    EMU(memset(dinp, 0, sizeof(float) * (size_t)N); gelu_backward(dinp, inp, dout, (int)N));
}
void cuda_residual_forward(float *out, const float *a, const float *b, long N) {
    EMU(residual_forward(out, a, b, (int)N));
}
void cuda_add_inplace(float *dst, const float *src, long N) {
    EMU(for (long i = 0; i < N; i++) dst[i] += src[i]);
}
void cuda_encoder_forward(float *out, const float *vis, const int *tokens, const float *wte,
                          const float *wpe, int B, int T, int P, int C) {
    EMU(encoder_forward(out, vis, tokens, wte, wpe, B, T, P, C));
}
static void emb_back(float *dtable, const float *dout, const int *start, const int *rows, int V, int C) {
    for (int v = 0; v < V; v++)
        for (int k = start[v]; k < start[v + 1]; k++)
            for (int c = 0; c < C; c++) dtable[(long)v * C + c] += dout[(long)rows[k] * C + c];
}
void cuda_encoder_backward(float *dvis, float *dwte, float *dwpe, const float *dout,
                           const int *tok_start, const int *tok_rows, int V, int B, int T, int P,
                           int C) {
    EMU(if (dvis) for (int b = 0; b < B; b++) for (int t = 0; t < P; t++) for (int c = 0; c < C; c++)
            dvis[((long)b * P + t) * C + c] += dout[((long)b * T + t) * C + c];
        if (dwpe) for (int t = 0; t < T; t++) for (int c = 0; c < C; c++) {
            float s = 0;
            for (int b = 0; b < B; b++) s += dout[((long)b * T + t) * C + c];
            dwpe[(long)t * C + c] += s;
        }
        if (dwte && T > P) emb_back(dwte, dout, tok_start, tok_rows, V, C));
}
void cuda_text_rows(float *compact, float *seq, int B, int T, int P, int C, int to_seq) {
    EMU(for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) {
        float *c = compact + ((long)b * T + t) * C, *q = seq + ((long)b * (P + T) + P + t) * C;
        if (to_seq) memcpy(q, c, sizeof(float) * (size_t)C);
        else memcpy(c, q, sizeof(float) * (size_t)C);
    });
}
void cuda_patchify_forward(float *out, const uint8_t *u8, const float *f32, int B, int S, int p) {
    EMU(patchify_forward(out, u8, f32, B, S, p));
}

/* ---- attention ---- */
/* as kernels/cuda/ops.cu: 16-byte alignment room, the pointer arrays (5 forward, 9 backward, of
 * B·NH pointers, rounded up to 64 floats), then the backward's (B,NH,T,T) datt */
static long att_ptr_floats(int n, long nbh) { return (2L * n * nbh + 63) & ~63L; }
long cuda_attention_scratch_forward(int B, int T, int C, int NH) {
    (void)T, (void)C;
    return 4 + att_ptr_floats(5, (long)B * NH);
}
long cuda_attention_scratch_backward(int B, int T, int C, int NH) {
    (void)C;
    return 4 + att_ptr_floats(9, (long)B * NH) + (long)B * NH * T * T;
}
long cuda_attention_fused_scratch(int B, int T, int C, int NH) {
    return 7L * B * T * C + (long)B * NH * T;
}
void cuda_attention_forward(float *out, float *att, const float *qkv, float *scratch, int B, int T,
                            int C, int NH, int causal) {
    EMU(memset(scratch, 0xff, sizeof(float) * cuda_attention_scratch_forward(B, T, C, NH));
        attention_forward(out, att, qkv, B, T, C, NH, causal); jitter(out, (long)B * T * C));
}
static void att_back(float *dqkv, const float *dout, const float *qkv, const float *att,
                     float *scratch, int B, int T, int C, int NH, int causal, int acc) {
    long BTC = (long)B * T * C;
    memset(scratch, 0xff, sizeof(float) * cuda_attention_scratch_backward(B, T, C, NH));
    if (!acc) memset(dqkv, 0, sizeof(float) * 3 * BTC);
    float *datt = scratch + 4 + att_ptr_floats(9, (long)B * NH);
    attention_backward(dqkv, datt, dout, qkv, att, B, T, C, NH, causal);
    jitter(dqkv, 3 * BTC);
}
void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                             float *scratch, int B, int T, int C, int NH, int causal) {
    EMU(att_back(dqkv, dout, qkv, att, scratch, B, T, C, NH, causal, 1));
}
void cuda_attention_backward_to(float *dqkv, const float *dout, const float *qkv, const float *att,
                                float *scratch, int B, int T, int C, int NH, int causal) {
    EMU(att_back(dqkv, dout, qkv, att, scratch, B, T, C, NH, causal, 0));
}
void cuda_attention_fused_forward(float *out, float *lse, const float *qkv, float *scratch, int B,
                                  int T, int C, int NH, int causal) {
    EMU(memset(scratch, 0xff, sizeof(float) * cuda_attention_fused_scratch(B, T, C, NH));
        float *att = (float *)malloc(sizeof(float) * (size_t)B * NH * T * T);
        attention_forward(out, att, qkv, B, T, C, NH, causal);
        for (long i = 0; i < (long)B * NH * T; i++) lse[i] = 0.5f; free(att));
}
static void fused_back(float *dqkv, const float *dout, const float *qkv, const float *out,
                       const float *lse, float *scratch, int B, int T, int C, int NH, int causal,
                       int acc) {
    memset(scratch, 0xff, sizeof(float) * cuda_attention_fused_scratch(B, T, C, NH));
    long n = (long)B * NH * T;
    for (long i = 0; i < n; i++) REQUIRE(lse[i] == 0.5f); /* the forward's lse buffer */
    float *att = (float *)malloc(sizeof(float) * (size_t)n * T),
          *datt = (float *)malloc(sizeof(float) * (size_t)n * T),
          *o2 = (float *)malloc(sizeof(float) * (size_t)B * T * C);
    attention_forward(o2, att, qkv, B, T, C, NH, causal);
    for (long i = 0; i < (long)B * T * C; i++) REQUIRE(o2[i] == out[i]); /* `out` is the forward's */
    if (!acc) memset(dqkv, 0, sizeof(float) * 3 * B * T * C);
    attention_backward(dqkv, datt, dout, qkv, att, B, T, C, NH, causal);
    free(att), free(datt), free(o2);
}
void cuda_attention_fused_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                   const float *lse, float *scratch, int B, int T, int C, int NH,
                                   int causal) {
    EMU(fused_back(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, causal, 1));
}
void cuda_attention_fused_backward_to(float *dqkv, const float *dout, const float *qkv,
                                      const float *out, const float *lse, float *scratch, int B,
                                      int T, int C, int NH, int causal) {
    EMU(fused_back(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, causal, 0));
}

/* ---- losses ---- */
static void cls_fwd(float *losses, float *probs, const float *x, const float *wte, const int *tg,
                    int N, int C, int V) {
    gemm(0, 1, N, V, C, x, C, wte, C, 0.0f, probs, V);
    for (int n = 0; n < N; n++) {
        float *p = probs + (long)n * V, mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) mx = fmaxf(mx, p[j]);
        for (int j = 0; j < V; j++) s += (p[j] = expf(p[j] - mx));
        for (int j = 0; j < V; j++) p[j] /= s;
        REQUIRE(tg[n] >= -1 && tg[n] < V);
        losses[n] = tg[n] >= 0 ? -logf(p[tg[n]]) : 0.0f;
    }
}
void cuda_classifier_forward(float *losses, float *probs, const float *x, const float *wte,
                             const int *targets, int N, int C, int V) {
    if (N) EMU(cls_fwd(losses, probs, x, wte, targets, N, C, V));
}
static void cls_bwd(float *dx, float *dwte, float *probs, const float *x, const float *wte,
                    const int *tg, const float *scale, int N, int C, int V) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < V; j++) {
            float *p = probs + (long)n * V + j;
            *p = tg[n] < 0 ? 0.0f : (*p - (j == tg[n])) * scale[0];
        }
    if (dx) gemm(0, 0, N, C, V, probs, V, wte, C, 1.0f, dx, C);
    if (dwte) gemm(1, 0, V, C, N, probs, V, x, C, 1.0f, dwte, C);
    jitter(dx, (long)N * C); jitter(dwte, (long)V * C);
}
void cuda_classifier_backward(float *dx, float *dwte, float *probs, const float *x, const float *wte,
                              const int *targets, const float *scale, int N, int C, int V) {
    if (N) EMU(cls_bwd(dx, dwte, probs, x, wte, targets, scale, N, C, V));
}
void cuda_mean_loss(float *loss, float *inv_n, const float *losses, const int *targets, int N) {
    EMU(double s = 0, c = 0; for (int i = 0; i < N; i++) if (targets[i] >= 0) s += losses[i], c++;
        loss[0] = c > 0 ? (float)(s / c) : 0.0f; inv_n[0] = c > 0 ? (float)(1.0 / c) : 0.0f);
}
void cuda_avgpool_forward(float *out, const float *inp, int B, int gh, int gw, int k, int C) {
    EMU(avgpool_forward(out, inp, B, gh, gw, k, C));
}
void cuda_avgpool_backward(float *dinp, const float *dout, int B, int gh, int gw, int k, int C) {
    EMU(avgpool_backward(dinp, dout, B, gh, gw, k, C));
}
void cuda_l2norm_forward(float *out, float *rn, const float *inp, int N, int C) {
    EMU(l2norm_forward(out, rn, inp, N, C));
}
void cuda_l2norm_backward(float *dinp, const float *dout, const float *out, const float *rn, int N,
                          int C) {
    EMU(l2norm_backward(dinp, dout, out, rn, N, C));
}
void cuda_masked_mean_forward(float *out, const float *inp, const uint8_t *mask, int B, int T, int C) {
    EMU(masked_mean_forward(out, inp, mask, B, T, C));
}
void cuda_masked_mean_backward(float *dinp, const float *dout, const uint8_t *mask, int B, int T,
                               int C) {
    EMU(masked_mean_backward(dinp, dout, mask, B, T, C));
}
void cuda_embedding_forward(float *out, const int *tokens, const float *table, int N, int C) {
    EMU(embedding_forward(out, tokens, table, N, C));
}
void cuda_embedding_backward(float *dtable, const float *dout, const int *start, const int *rows,
                             int V, int C) {
    EMU(emb_back(dtable, dout, start, rows, V, C));
}
void cuda_contrastive_forward(float *loss, float *probs, const float *a, const float *b,
                              const float *ls, int B, int D) {
    EMU(loss[0] = contrastive_forward(probs, a, b, ls[0], B, D));
}
void cuda_contrastive_backward(float *da, float *db, float *dls, const float *probs, const float *a,
                               const float *b, const float *ls, float scale, float *scratch, int B,
                               int D) {
    EMU(memset(scratch, 0xff, sizeof(float) * 2 * B * B);
        contrastive_backward(da, db, dls, probs, a, b, ls[0], scale, B, D));
}

/* ---- optimizer ---- */
void cuda_adamw_update(float *param, cuda_bf16 *param_bf, const float *grad, float *m, float *v, const cuda_segment *segs,
                       int nseg, long max_seg, const cuda_step_args *args, const float *grad_scale,
                       float beta1, float beta2, float eps, float wd) {
    EMU(float gs = grad_scale ? grad_scale[0] : 1.0f; float lr = args->lr, t = (float)args->t;
        float bc1 = 1.0f - powf(beta1, t), bc2 = 1.0f - powf(beta2, t);
        for (int s = 0; s < nseg; s++) {
            REQUIRE(segs[s].n <= max_seg);
            float decay = segs[s].decay ? wd : 0.0f;
            for (long k = 0; k < segs[s].n; k++) {
                long i = segs[s].off + k;
                float g = gs == 1.0f ? grad[i] : grad[i] * gs;
                float mi = beta1 * m[i] + (1.0f - beta1) * g, vi = beta2 * v[i] + (1.0f - beta2) * g * g;
                m[i] = mi, v[i] = vi;
                param[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + decay * param[i]);
                if (param_bf) param_bf[i] = bf16_of(param[i]);
            }
        });
}
int cuda_clip_partials(int nseg) { return nseg * 64; }
void cuda_clip_grad(float *grad, const cuda_segment *segs, int nseg, long max_seg,
                    const cuda_step_args *args, double *partial, float *norm, int apply) {
    EMU(double ss = 0; for (int i = 0; i < nseg * 64; i++) partial[i] = 0;
        for (int s = 0; s < nseg; s++) {
            REQUIRE(segs[s].n <= max_seg);
            for (long k = 0; k < segs[s].n; k++) ss += (double)grad[segs[s].off + k] * grad[segs[s].off + k];
        } float nrm = (float)sqrt(ss), mx = args->max_norm;
        norm[0] = nrm; norm[1] = mx > 0.0f && nrm > mx ? mx / nrm : 1.0f;
        if (apply && norm[1] != 1.0f) for (int s = 0; s < nseg; s++) for (long k = 0; k < segs[s].n; k++)
            grad[segs[s].off + k] *= norm[1]);
}

void cuda_token_index(int *start, int *rows, const int *tokens, int N, int V, int per, int stride,
                      int off) {
    memset(start, 0, sizeof(int) * (size_t)(V + 1));
    for (int r = 0; r < N; r++)
        if (tokens[r] >= 0 && tokens[r] < V) start[tokens[r] + 1]++;
    for (int v = 0; v < V; v++) start[v + 1] += start[v];
    std::vector<int> fill(start, start + V);
    for (int r = 0; r < N; r++) {
        int t = tokens[r];
        if (t < 0 || t >= V) continue;
        rows[fill[t]++] = (r / per) * stride + off + r % per;
    }
}
}
