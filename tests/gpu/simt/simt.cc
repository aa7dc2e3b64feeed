/* simt.cc: a CPU emulation of just enough CUDA to run kernels/cuda/ops.cu (the gpu_simt_ops test):
 * a kernel with barriers or warp shuffles runs one fiber per CUDA thread (ucontext), scheduled
 * round-robin, a barrier released when every live thread of the block (warp) waits on it, so a
 * divergent __syncthreads or shuffle shows as a deadlock and a shuffle from an exited lane is
 * caught; other kernels run their threads in a plain loop. Launch configurations are checked
 * against the hardware limits (1024 threads, 48 KiB of dynamic shared memory, grid y/z <= 65535),
 * shared memory starts as garbage. cuBLAS and cuBLASLt are reference loops that check their
 * arguments (leading dimensions, cuBLASLt's shapes and alignments) and round the inputs to tf32 or
 * bf16 as the compute type says. The stream is synchronous; graphs record closures. Device memory
 * is host memory, filled with garbage when allocated. */
#include "simt_fake.h"

#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <vector>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

/* ---------------- fibers ---------------- */
enum { RUN, AT_BLOCK, AT_WARP, DONE };
struct fiber {
    ucontext_t uc;
    int state;
    unsigned tid;
};
static std::vector<fiber> fibers;
static std::vector<char *> stacks;
static ucontext_t sched_uc;
static int cur = -1;
static float slots[1024];
static std::vector<char> dyn_smem;
static std::function<void()> *cur_kernel;
static int fiber_mode;
static const size_t STACK = 64 * 1024;

void *emu_dyn_smem(void) { return dyn_smem.data(); }

static void set_thread(unsigned t, dim3 b) {
    threadIdx.x = t % b.x;
    threadIdx.y = (t / b.x) % b.y;
    threadIdx.z = t / (b.x * b.y);
}

static void fiber_main(void) {
    (*cur_kernel)();
    fibers[cur].state = DONE;
    swapcontext(&fibers[cur].uc, &sched_uc);
}

static void wait_state(int st) {
    if (!fiber_mode) {
        fprintf(stderr, "simt: a barrier/shuffle in a kernel run without fibers\n");
        abort();
    }
    fibers[cur].state = st;
    swapcontext(&fibers[cur].uc, &sched_uc);
}

void __syncthreads(void) { wait_state(AT_BLOCK); }
void __syncwarp(unsigned mask) {
    if (mask != 0xffffffffu) { fprintf(stderr, "simt: partial mask\n"); abort(); }
    wait_state(AT_WARP);
}
float __shfl_xor_sync(unsigned mask, float v, int o) {
    if (mask != 0xffffffffu) { fprintf(stderr, "simt: partial mask\n"); abort(); }
    unsigned t = fibers[cur].tid, lane = t % 32, base = t - lane;
    slots[t] = v;
    wait_state(AT_WARP);
    float r = slots[base + (lane ^ (unsigned)o)];
    if (fibers[base + (lane ^ (unsigned)o)].state == DONE) { fprintf(stderr, "simt: shuffle from an exited lane\n"); abort(); }
    wait_state(AT_WARP);
    return r;
}
float __shfl_sync(unsigned mask, float v, int src) {
    if (mask != 0xffffffffu) { fprintf(stderr, "simt: partial mask\n"); abort(); }
    unsigned t = fibers[cur].tid, lane = t % 32, base = t - lane;
    slots[t] = v;
    wait_state(AT_WARP);
    float r = slots[base + (unsigned)src];
    wait_state(AT_WARP);
    (void)lane;
    return r;
}

static void run_block_fibers(unsigned n, dim3 b) {
    if (fibers.size() < n) fibers.resize(n);
    while (stacks.size() < n) stacks.push_back((char *)malloc(STACK));
    for (unsigned t = 0; t < n; t++) {
        fiber &f = fibers[t];
        getcontext(&f.uc);
        f.uc.uc_stack.ss_sp = stacks[t];
        f.uc.uc_stack.ss_size = STACK;
        f.uc.uc_link = &sched_uc;
        makecontext(&f.uc, fiber_main, 0);
        f.state = RUN;
        f.tid = t;
    }
    fiber_mode = 1;
    for (;;) {
        int progress = 0, live = 0;
        for (unsigned t = 0; t < n; t++) {
            if (fibers[t].state != RUN) continue;
            cur = (int)t;
            set_thread(t, b);
            swapcontext(&sched_uc, &fibers[t].uc);
            progress = 1;
        }
        /* release barriers */
        for (unsigned t = 0; t < n; t++) live += fibers[t].state != DONE;
        if (!live) break;
        int at_block = 0;
        for (unsigned t = 0; t < n; t++) at_block += fibers[t].state == AT_BLOCK;
        if (at_block == live) {
            for (unsigned t = 0; t < n; t++) if (fibers[t].state == AT_BLOCK) fibers[t].state = RUN;
            continue;
        }
        int released = 0;
        for (unsigned w = 0; w * 32 < n; w++) {
            unsigned lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
            int lv = 0, aw = 0;
            for (unsigned t = lo; t < hi; t++) lv += fibers[t].state != DONE, aw += fibers[t].state == AT_WARP;
            if (lv && aw == lv) {
                for (unsigned t = lo; t < hi; t++) if (fibers[t].state == AT_WARP) fibers[t].state = RUN;
                released = 1;
            }
        }
        if (!released && !progress) {
            fprintf(stderr, "simt: deadlock (divergent barrier or shuffle) in block %u,%u\n", blockIdx.x, blockIdx.y);
            abort();
        }
    }
    fiber_mode = 0;
}

static void launch_now(dim3 g, dim3 b, size_t smem, std::function<void()> k, bool sync) {
    unsigned n = b.x * b.y * b.z;
    if (n == 0 || n > 1024 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535) {
        fprintf(stderr, "simt: invalid launch configuration grid %u,%u,%u block %u,%u,%u\n", g.x, g.y, g.z, b.x, b.y, b.z);
        abort();
    }
    if (smem > 48 * 1024) { fprintf(stderr, "simt: %zu bytes of dynamic shared memory\n", smem); abort(); }
    cur_kernel = &k;
    blockDim = b;
    gridDim = g;
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
                dyn_smem.assign(smem + 16, (char)0xff);
                if (sync) run_block_fibers(n, b);
                else
                    for (unsigned t = 0; t < n; t++) { set_thread(t, b); k(); }
            }
}

/* ---------------- recording (graphs) ---------------- */
typedef std::vector<std::function<void()>> oplist;
static oplist *rec;
void emu_record(std::function<void()> f) {
    if (rec) rec->push_back(f);
    else f();
}
void emu_launch_sync(dim3 g, dim3 b, size_t smem, std::function<void()> k) {
    emu_record([=]() { launch_now(g, b, smem, k, true); });
}
void emu_launch(dim3 g, dim3 b, size_t smem, std::function<void()> k) {
    emu_record([=]() { launch_now(g, b, smem, k, false); });
}
#define NOCAP(w) do { if (rec) { fprintf(stderr, "simt: %s during capture\n", w); abort(); } } while (0)

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return 0; }
cudaError_t cudaSetDevice(int) { return 0; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (void *)0x5; return 0; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { NOCAP("sync"); return 0; }
cudaError_t cudaMalloc(void **p, size_t n) { NOCAP("malloc"); *p = malloc(n); memset(*p, 0xcd, n); return 0; }
cudaError_t cudaFree(void *p) { NOCAP("free"); free(p); return 0; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { NOCAP("memcpy"); memcpy(d, s, n); return 0; }
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { emu_record([=]() { memset(p, v, n); }); return 0; }
cudaError_t cudaGetLastError(void) { return 0; }
const char *cudaGetErrorString(cudaError_t) { return "simt"; }
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { rec = new oplist; return 0; }
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) { *g = rec; rec = nullptr; return 0; }
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) { *e = new oplist(*(oplist *)g); return 0; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete (oplist *)g; return 0; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete (oplist *)e; return 0; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) { for (auto &f : *(oplist *)e) f(); return 0; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = (void *)1; return 0; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return 0; }
cudaError_t cudaEventElapsedTime(float *t, cudaEvent_t, cudaEvent_t) { *t = 0; return 0; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return 0; }
cudaError_t cudaEventDestroy(cudaEvent_t) { return 0; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) { snprintf(p->name, sizeof p->name, "simt"); return 0; }

/* ---------------- BLAS ---------------- */
static float round_in(float x, int ct) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if (ct == CUBLAS_COMPUTE_32F_FAST_TF32) b = (b + 0x1000u) & 0xFFFFE000u;
    else if (ct == CUBLAS_COMPUTE_32F_FAST_16BF) b = (b + 0x7FFFu + ((b >> 16) & 1)) & 0xFFFF0000u;
    memcpy(&x, &b, 4);
    return x;
}
/* element i of an operand stored as fp32 or as bf16 (its upper 16 bits) */
static float operand(const void *M, long i, int bf16) {
    if (!bf16) return ((const float *)M)[i];
    uint32_t u = (uint32_t)((const uint16_t *)M)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* column-major C (m,n) = alpha op(A) op(B) + beta C; A and B fp32 or both bf16 (bf16 = 1) */
static void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb,
                     float beta, const float *Cin, float *C, int ldc, int ct, const float *bias, int bf16 = 0) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float a = operand(A, ta ? p + (long)i * lda : i + (long)p * lda, bf16);
                float bb = operand(B, tb ? j + (long)p * ldb : p + (long)j * ldb, bf16);
                s += (double)round_in(a, ct) * round_in(bb, ct);
            }
            float r = alpha * (float)s;
            if (beta != 0.0f) r += beta * Cin[i + (long)j * ldc];
            if (bias) r += bias[i];
            C[i + (long)j * ldc] = r;
        }
}
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = (void *)1; return 0; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return 0; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return 0; }
const char *cublasGetStatusString(cublasStatus_t) { return "simt"; }
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const void *alpha, const void *A, cudaDataType_t at, int lda, long long sA, const void *B, cudaDataType_t bt, int ldb,
    long long sB, const void *beta, void *C, cudaDataType_t cty, int ldc, long long sC, int batch, cublasComputeType_t ct, int) {
    float al = *(const float *)alpha, be = *(const float *)beta;
    /* the combinations ops.cu uses: all fp32, or bf16 A and B with fp32 C and CUBLAS_COMPUTE_32F */
    if (at != bt || cty != CUDA_R_32F || (at == CUDA_R_16BF && ct != CUBLAS_COMPUTE_32F)) {
        fprintf(stderr, "simt: unsupported gemm types %d %d %d compute %d\n", at, bt, cty, ct);
        return 7;
    }
    int bf = at == CUDA_R_16BF;
    size_t es = bf ? 2 : 4;
    /* BLAS argument checks */
    if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m || m < 0 || n < 0 || k < 0) {
        fprintf(stderr, "simt: bad gemm arguments m %d n %d k %d lda %d ldb %d ldc %d ta %d tb %d\n", m, n, k, lda, ldb, ldc, ta, tb);
        return 7;
    }
    emu_record([=]() {
        for (int q = 0; q < batch; q++)
            ref_gemm(ta, tb, m, n, k, al, (const char *)A + q * sA * es, lda, (const char *)B + q * sB * es, ldb, be,
                     (float *)C + q * sC, (float *)C + q * sC, ldc, ct, NULL, bf);
    });
    return 0;
}
/* the pointer arrays are device memory: read when the product runs (in a graph: at each replay,
 * after the kernel that fills them), never at the call */
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const void *alpha, const void *const A[], cudaDataType_t, int lda, const void *const B[], cudaDataType_t, int ldb,
    const void *beta, void *const C[], cudaDataType_t, int ldc, int batch, cublasComputeType_t ct, int) {
    float al = *(const float *)alpha, be = *(const float *)beta;
    if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m || m < 0 || n < 0 || k < 0 || batch < 0) {
        fprintf(stderr, "simt: bad batched gemm arguments m %d n %d k %d lda %d ldb %d ldc %d ta %d tb %d\n", m, n, k, lda, ldb, ldc, ta, tb);
        return 7;
    }
    if (((uintptr_t)A | (uintptr_t)B | (uintptr_t)C) % sizeof(void *)) {
        fprintf(stderr, "simt: pointer arrays not %zu-byte aligned\n", sizeof(void *));
        return 7;
    }
    emu_record([=]() {
        for (int q = 0; q < batch; q++) {
            /* distinct outputs: two heads writing one matrix would be a race on the GPU */
            for (int r = 0; r < q; r++)
                if (C[r] == C[q]) { fprintf(stderr, "simt: batched gemm outputs %d and %d alias\n", r, q); abort(); }
            /* cuBLAS cannot see the matrices' addresses behind the arrays and may assume 16-byte
             * alignment (a real H100 faults "misaligned address" on a (T,T) block at an odd T
             * with tf32): required here of every matrix, whatever the compute type */
            if (((uintptr_t)A[q] | (uintptr_t)B[q] | (uintptr_t)C[q]) % 16) {
                fprintf(stderr, "simt: batched gemm matrix %d not 16-byte aligned (A %p B %p C %p)\n", q, A[q], B[q], C[q]);
                abort();
            }
            ref_gemm(ta, tb, m, n, k, al, (const float *)A[q], lda, (const float *)B[q], ldb, be, (const float *)C[q],
                     (float *)C[q], ldc, ct, NULL);
        }
    });
    return 0;
}
struct emu_ltdesc { int ct, ta, tb, epi; const float *bias; };
struct emu_ltlayout { uint64_t rows, cols; int64_t ld; int type; };
struct emu_ltpref { int dummy; };
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (void *)1; return 0; }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t ct, cudaDataType_t) {
    *d = new emu_ltdesc{ct, 0, 0, CUBLASLT_EPILOGUE_DEFAULT, NULL};
    return 0;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n) {
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: d->ta = *(const int *)v == CUBLAS_OP_T; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: d->tb = *(const int *)v == CUBLAS_OP_T; break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: d->epi = *(const int *)v; break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: if (n != sizeof(void *)) return 7; memcpy(&d->bias, v, sizeof(void *)); break;
    }
    return 0;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return 0; }
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t r, uint64_t c, int64_t ld) {
    if (ld < (int64_t)r) return 7;
    *l = new emu_ltlayout{r, c, ld, t};
    return 0;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return 0; }
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = new emu_ltpref{0}; return 0; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t a, const void *v, size_t n) {
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n != 4) return 7;
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        uint32_t al = *(const uint32_t *)v;
        if (al == 0 || (al & (al - 1)) || al > 256) return 7;
    }
    return 0;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return 0; }
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
    cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t, int, cublasLtMatmulHeuristicResult_t *h, int *nres) {
    /* shapes: op(A) (m,k), op(B) (k,n), C/D (m,n) */
    uint64_t m = dd->rows, n = dd->cols, ka = d->ta ? a->rows : a->cols, ma = d->ta ? a->cols : a->rows;
    uint64_t kb = d->tb ? b->cols : b->rows, nb = d->tb ? b->rows : b->cols;
    if (ma != m || nb != n || ka != kb || c->rows != m || c->cols != n) {
        fprintf(stderr, "simt: cuBLASLt shapes do not agree\n");
        return 7;
    }
    memset(h, 0, sizeof *h);
    *nres = 1;
    return 0;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A, cublasLtMatrixLayout_t la,
    const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D,
    cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t) {
    float al = *(const float *)alpha, be = *(const float *)beta;
    int ta = d->ta, tb = d->tb, ct = d->ct;
    const float *bias = d->epi == CUBLASLT_EPILOGUE_BIAS ? d->bias : NULL;
    int m = (int)ld->rows, n = (int)ld->cols, k = (int)(ta ? la->rows : la->cols);
    int lda = (int)la->ld, ldb = (int)lb->ld, ldc = (int)lc->ld, ldd = (int)ld->ld;
    if (ldc != ldd) return 7;
    if (la->type != lb->type || lc->type != CUDA_R_32F || ld->type != CUDA_R_32F ||
        (la->type == CUDA_R_16BF && ct != CUBLAS_COMPUTE_32F)) {
        fprintf(stderr, "simt: unsupported cuBLASLt types\n");
        return 7;
    }
    int bf = la->type == CUDA_R_16BF;
    emu_record([=]() {
        ref_gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, (const float *)C, (float *)D, ldd, ct, bias, bf);
    });
    return 0;
}
