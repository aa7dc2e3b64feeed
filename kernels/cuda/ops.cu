/* ops.cu: the GPU kernels of the training core (cuda_ops.h): the process's CUDA context (one
 * stream, one cuBLAS handle with its own workspace, the precision of the matrix products), matrix
 * products through cuBLAS, and one plain kernel per layer and direction for the rest. The maths is
 * kernels/kernels.h's, line for line; kernels/cpu/ is the oracle (tests/gpu).
 *
 * Every launch goes to ctx.stream and nothing here synchronises except the cuda_ctx_* and
 * memory helpers, so callers can capture whole training steps as CUDA graphs. Reductions never use
 * float atomics: each output is summed by one thread or by a fixed tree, so runs are bitwise
 * repeatable. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/cuda/cuda_ops.h"
#include "util/util.h"
}

/* ---------------------------------------------------------------------------------------------
 * Context */

#define COLSUM_CHUNKS 32
#define COLSUM_MAX_C 16384
#define WORKSPACE_BYTES (32u << 20)

static struct {
    int ready;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    int lt_on; /* 1: products with a bias or a residual run as one cuBLASLt call with epilogue */
    void *workspace;
    float *colsum; /* (COLSUM_CHUNKS, 2, COLSUM_MAX_C) partial column sums */
    int prec;
} ctx;

static void cuda_die(const char *what, const char *err, const char *file, int line) {
    fprintf(stderr, "cgvlm: fatal: %s failed: %s (%s:%d)\n", what, err, file, line);
    abort();
}
#define CUDA_CHECK(call)                                                                \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) cuda_die(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define BLAS_CHECK(call)                                                                 \
    do {                                                                                 \
        cublasStatus_t s_ = (call);                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            cuda_die(#call, cublasGetStatusString(s_), __FILE__, __LINE__);              \
    } while (0)
/* a launch error (bad configuration) is reported at once; faults inside kernels surface at the
 * next synchronisation (cuda_ctx_sync) */
#define LAUNCHED() CUDA_CHECK(cudaGetLastError())

extern "C" int cuda_ctx_init(void) {
    if (ctx.ready) return CG_OK;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return cg_err(CG_EFAIL, "no usable GPU (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA devices");
    }
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    BLAS_CHECK(cublasCreate(&ctx.blas));
    BLAS_CHECK(cublasSetStream(ctx.blas, ctx.stream));
    /* an explicit workspace: cuBLAS then never allocates, which graph capture requires */
    CUDA_CHECK(cudaMalloc(&ctx.workspace, WORKSPACE_BYTES));
    BLAS_CHECK(cublasSetWorkspace(ctx.blas, ctx.workspace, WORKSPACE_BYTES));
    CUDA_CHECK(cudaMalloc(&ctx.colsum, sizeof(float) * COLSUM_CHUNKS * 2 * COLSUM_MAX_C));
    ctx.prec = CUDA_PREC_TF32;
    const char *lt_env = getenv("CGVLM_CUDA_LT");
    ctx.lt_on = !(lt_env && !strcmp(lt_env, "0")) && cublasLtCreate(&ctx.lt) == CUBLAS_STATUS_SUCCESS;
    ctx.ready = 1;
    return CG_OK;
}

extern "C" void cuda_ctx_set_precision(int prec) {
    if (prec < CUDA_PREC_FP32 || prec > CUDA_PREC_BF16) {
        fprintf(stderr, "cgvlm: bug: unknown precision %d\n", prec);
        abort();
    }
    ctx.prec = prec;
}

extern "C" int cuda_ctx_precision(void) { return ctx.prec; }
extern "C" void cuda_ctx_set_lt(int on) { ctx.lt_on = on && ctx.lt != NULL; }
extern "C" int cuda_ctx_lt(void) { return ctx.lt_on; }
extern "C" void *cuda_ctx_stream(void) { return (void *)ctx.stream; }

extern "C" const char *cuda_prec_name(int prec) {
    return prec == CUDA_PREC_FP32 ? "fp32" : prec == CUDA_PREC_TF32 ? "tf32" : "bf16";
}

extern "C" int cuda_ctx_sync(void) {
    cudaError_t e = cudaStreamSynchronize(ctx.stream);
    if (e != cudaSuccess) return cg_err(CG_EFAIL, "CUDA work failed: %s", cudaGetErrorString(e));
    return CG_OK;
}

extern "C" int cuda_ctx_check(const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cg_err(CG_EFAIL, "%s: %s", what, cudaGetErrorString(e));
    return CG_OK;
}

extern "C" void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 16;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "cgvlm: fatal: cannot allocate %zu bytes of GPU memory: %s\n", bytes,
                cudaGetErrorString(e));
        abort();
    }
    /* on the library's stream (non-blocking: it does not wait for the legacy default stream) */
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    return p;
}

extern "C" void cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void cuda_upload(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

extern "C" void cuda_download(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

extern "C" void cuda_upload_async(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream));
}

extern "C" void cuda_memset0(void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx.stream));
}

/* ---------------------------------------------------------------------------------------------
 * Launch helpers and reductions */

static inline unsigned blocks_for(long n, int threads) {
    long b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535L * 32 ? 65535L * 32 : b);
}

#define FOR_EACH(i, n) for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                            i += (long)gridDim.x * blockDim.x)

__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* sum of one double per thread of a 256-thread block, in a fixed tree order; result in thread 0 */
__device__ double block_sum_256(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    return sh[0];
}

/* fp32 → bf16 bits, rounded to nearest even (a NaN stays a NaN) */
__device__ inline uint16_t to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__global__ void to_bf16_kernel(uint16_t *dst, const float *src, long n) {
    FOR_EACH(i, n) dst[i] = to_bf16(src[i]);
}

extern "C" void cuda_to_bf16(cuda_bf16 *dst, const float *src, long n) {
    if (n <= 0) return;
    to_bf16_kernel<<<blocks_for(n, 256), 256, 0, ctx.stream>>>(dst, src, n);
    LAUNCHED();
}

/* the cuBLAS compute type of each CUDA_PREC_* */
static const cublasComputeType_t compute_type[] = {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32,
                                                   CUBLAS_COMPUTE_32F_FAST_16BF};

/* Row-major C (M,N) = op(A) (M,K) · op(B) (K,N) + beta·C, batched with strides, through cuBLAS
 * (column-major: Cᵀ = op(B)ᵀ op(A)ᵀ, so the operands swap). lda etc. are row-major leading
 * dimensions (the stored row length). */
static void gemm_rm_typed(bool ta, bool tb, int M, int N, int K, const void *A, int lda, long sA,
                          const void *B, int ldb, long sB, float *C, int ldc, long sC, float beta,
                          int batch, bool bf16_operands) {
    const float one = 1.0f;
    /* bf16 operands: exact products, fp32 accumulation (the precision setting does not apply) */
    cudaDataType_t in = bf16_operands ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = bf16_operands ? CUBLAS_COMPUTE_32F : compute_type[ctx.prec];
    BLAS_CHECK(cublasGemmStridedBatchedEx(ctx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B, in, ldb,
                                          sB, A, in, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                          ct, CUBLAS_GEMM_DEFAULT));
}

static void gemm_rm(bool ta, bool tb, int M, int N, int K, const float *A, int lda, long sA,
                    const float *B, int ldb, long sB, float *C, int ldc, long sC, float beta,
                    int batch) {
    gemm_rm_typed(ta, tb, M, N, K, A, lda, sA, B, ldb, sB, C, ldc, sC, beta, batch, false);
}

/* out (N,OC) = inp (N,C) · weightᵀ + bias (+ residual (N,OC)) as one cuBLASLt call: the bias
 * epilogue, and the residual as the C operand with beta = 1 (D = A·B + C + bias). Returns 0 when
 * enqueued; -1 when cuBLASLt cannot do it here, and then turns cuBLASLt off for the process (the
 * caller falls back to cuBLAS + a bias/residual kernel). */
/* the alignment of a device pointer in bytes, up to the 256 cuBLASLt assumes by default */
static uint32_t ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al) al /= 2;
    return al;
}

static int lt_matmul(float *out, const void *inp, const void *weight, const float *bias,
                     const float *residual, int N, int C, int OC, bool bf16_operands) {
    if (!ctx.lt_on) return -1;
    /* the bias epilogue reads the bias with 16-byte loads, and the alignment preferences below do
     * not cover it: an unaligned bias goes the cuBLAS + kernel way (cuBLASLt stays on) */
    if (bias && ptr_align(bias) < 16) return -1;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    size_t ws = WORKSPACE_BYTES;
    cublasLtMatmulHeuristicResult_t h;
    int nres = 0;
    const float one = 1.0f, beta = residual ? 1.0f : 0.0f;
    const cublasStatus_t OK = CUBLAS_STATUS_SUCCESS;
    /* the heuristic assumes 256-byte aligned operands unless told otherwise, and may then pick a
     * kernel that faults on a less aligned one (A = the weight, B = the input, C = the residual) */
    uint32_t al_a = ptr_align(weight), al_b = ptr_align(inp), al_c = ptr_align(residual ? residual : out),
             al_d = ptr_align(out);
    /* column-major as in gemm_rm: Dᵀ (OC,N) = (W stored (C,OC))ᵀ · (inp stored (C,N)) */
    cudaDataType_t in = bf16_operands ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = bf16_operands ? CUBLAS_COMPUTE_32F : compute_type[ctx.prec];
    int ok = cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F) == OK &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) == OK &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) == OK &&
             (!bias || (cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == OK &&
                        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) == OK)) &&
             cublasLtMatrixLayoutCreate(&la, in, C, OC, C) == OK &&
             cublasLtMatrixLayoutCreate(&lb, in, C, N, C) == OK &&
             cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, OC, N, OC) == OK &&
             cublasLtMatmulPreferenceCreate(&pref) == OK &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == OK &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a) == OK &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b) == OK &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c) == OK &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d) == OK &&
             cublasLtMatmulAlgoGetHeuristic(ctx.lt, op, la, lb, ld, ld, pref, 1, &h, &nres) == OK && nres > 0 &&
             cublasLtMatmul(ctx.lt, op, &one, weight, la, inp, lb, &beta, residual ? residual : out, ld,
                            out, ld, &h.algo, ctx.workspace, ws, ctx.stream) == OK;
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    if (!ok) {
        ctx.lt_on = 0;
        fprintf(stderr, "cgvlm: warning: cuBLASLt cannot run a %dx%dx%d product with epilogue here; "
                        "using cuBLAS and a separate bias kernel\n", N, C, OC);
        return -1;
    }
    return 0;
}

/* Column sums over N rows of (N,C) in two passes (COLSUM_CHUNKS row chunks → partials → one
 * thread per column adds the chunks in order). LN = 1: also Σ (x-mean)·rstd·dout for LayerNorm's
 * weight; row sums of dout go to the second output. */
template <int LN>
__global__ void colsum_partial_kernel(float *partial, const float *dout, const float *inp,
                                      const float *mean, const float *rstd, int N, int C) {
    __shared__ float sw[8][33], sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, chunk = blockIdx.y;
    int lo = (int)((long)N * chunk / COLSUM_CHUNKS), hi = (int)((long)N * (chunk + 1) / COLSUM_CHUNKS);
    float w = 0.0f, b = 0.0f;
    if (c < C)
        for (int n = lo + threadIdx.y; n < hi; n += 8) {
            float d = dout[(long)n * C + c];
            b += d;
            if (LN) w += (inp[(long)n * C + c] - mean[n]) * rstd[n] * d;
        }
    sw[threadIdx.y][threadIdx.x] = w;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float tw = 0.0f, tb = 0.0f;
        for (int y = 0; y < 8; y++) tw += sw[y][threadIdx.x], tb += sb[y][threadIdx.x];
        partial[((long)chunk * 2 + 0) * COLSUM_MAX_C + c] = tw;
        partial[((long)chunk * 2 + 1) * COLSUM_MAX_C + c] = tb;
    }
}

__global__ void colsum_finish_kernel(float *dw, float *db, const float *partial, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float w = 0.0f, b = 0.0f;
    for (int k = 0; k < COLSUM_CHUNKS; k++) {
        w += partial[((long)k * 2 + 0) * COLSUM_MAX_C + c];
        b += partial[((long)k * 2 + 1) * COLSUM_MAX_C + c];
    }
    if (dw) dw[c] += w;
    if (db) db[c] += b;
}

static void colsum(float *dw, float *db, const float *dout, const float *inp, const float *mean,
                   const float *rstd, int N, int C) {
    if (C > COLSUM_MAX_C) {
        fprintf(stderr, "cgvlm: bug: column sum over %d > %d channels\n", C, COLSUM_MAX_C);
        abort();
    }
    dim3 grid((C + 31) / 32, COLSUM_CHUNKS), block(32, 8);
    if (dw)
        colsum_partial_kernel<1><<<grid, block, 0, ctx.stream>>>(ctx.colsum, dout, inp, mean, rstd, N, C);
    else
        colsum_partial_kernel<0><<<grid, block, 0, ctx.stream>>>(ctx.colsum, dout, inp, mean, rstd, N, C);
    LAUNCHED();
    colsum_finish_kernel<<<(C + 255) / 256, 256, 0, ctx.stream>>>(dw, db, ctx.colsum, C);
    LAUNCHED();
}

/* ---------------------------------------------------------------------------------------------
 * Dense layers */

/* out = (out + bias) + residual, the order of core/model.c's matmul then residual */
__global__ void add_bias_residual_kernel(float *out, const float *bias, const float *residual,
                                         long N, int OC) {
    FOR_EACH(i, N * OC) {
        float o = out[i];
        if (bias) o += bias[i % OC];
        if (residual) o += residual[i];
        out[i] = o;
    }
}

static void matmul_epilogue(float *out, const void *inp, const void *weight, const float *bias,
                            const float *residual, int N, int C, int OC, bool bf16_operands) {
    if ((bias || residual) && lt_matmul(out, inp, weight, bias, residual, N, C, OC, bf16_operands) == 0)
        return;
    gemm_rm_typed(false, true, N, OC, C, inp, C, 0, weight, C, 0, out, OC, 0, 0.0f, 1, bf16_operands);
    if (bias || residual) {
        add_bias_residual_kernel<<<blocks_for((long)N * OC, 256), 256, 0, ctx.stream>>>(out, bias, residual, N, OC);
        LAUNCHED();
    }
}

extern "C" void cuda_matmul_forward(float *out, const float *inp, const float *weight,
                                    const float *bias, int N, int C, int OC) {
    matmul_epilogue(out, inp, weight, bias, NULL, N, C, OC, false);
}

extern "C" void cuda_matmul_residual_forward(float *out, const float *inp, const float *weight,
                                             const float *bias, const float *residual, int N, int C,
                                             int OC) {
    matmul_epilogue(out, inp, weight, bias, residual, N, C, OC, false);
}

extern "C" void cuda_matmul_forward_bf16(float *out, const cuda_bf16 *inp, const cuda_bf16 *weight,
                                         const float *bias, const float *residual, int N, int C,
                                         int OC) {
    matmul_epilogue(out, inp, weight, bias, residual, N, C, OC, true);
}

extern "C" void cuda_matmul_backward_bf16(float *dinp, float *dweight, float *dbias,
                                          const float *dout, const cuda_bf16 *dout_bf,
                                          const cuda_bf16 *inp, const cuda_bf16 *weight, int N,
                                          int C, int OC, int dinp_acc) {
    if (dinp)
        gemm_rm_typed(false, false, N, C, OC, dout_bf, OC, 0, weight, C, 0, dinp, C, 0,
                      dinp_acc ? 1.0f : 0.0f, 1, true);
    if (dweight)
        gemm_rm_typed(true, false, OC, C, N, dout_bf, OC, 0, inp, C, 0, dweight, C, 0, 1.0f, 1, true);
    if (dbias) colsum(NULL, dbias, dout, NULL, NULL, NULL, N, OC);
}

/* dinp_beta 1: dinp += ..., 0: dinp = ... (the weight gradients always accumulate) */
static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int C, int OC,
                            float dinp_beta) {
    if (dinp) gemm_rm(false, false, N, C, OC, dout, OC, 0, weight, C, 0, dinp, C, 0, dinp_beta, 1);
    if (dweight) gemm_rm(true, false, OC, C, N, dout, OC, 0, inp, C, 0, dweight, C, 0, 1.0f, 1);
    if (dbias) colsum(NULL, dbias, dout, NULL, NULL, NULL, N, OC);
}

extern "C" void cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, int N, int C, int OC) {
    matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 1.0f);
}

extern "C" void cuda_matmul_backward_to(float *dinp, float *dweight, float *dbias,
                                        const float *dout, const float *inp, const float *weight,
                                        int N, int C, int OC) {
    matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 0.0f);
}

/* one warp per row */
/* out_bf: the output as bf16 instead of fp32 (out unused) */
__global__ void layernorm_forward_kernel(float *out, uint16_t *out_bf, float *mean, float *rstd,
                                         const float *inp, const float *w, const float *b, int N,
                                         int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (long)row * C;
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) s += x[i];
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        v += d * d;
    }
    float r = rsqrtf(warp_sum(v) / C + 1e-5f);
    if (out_bf) {
        uint16_t *o = out_bf + (long)row * C;
        for (int i = lane; i < C; i += 32) o[i] = to_bf16((x[i] - m) * r * w[i] + b[i]);
    } else {
        float *o = out + (long)row * C;
        for (int i = lane; i < C; i += 32) o[i] = (x[i] - m) * r * w[i] + b[i];
    }
    if (lane == 0) mean[row] = m, rstd[row] = r;
}

extern "C" void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                       const float *weight, const float *bias, int N, int C) {
    layernorm_forward_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(out, NULL, mean, rstd, inp, weight, bias, N, C);
    LAUNCHED();
}

extern "C" void cuda_layernorm_forward_bf16(cuda_bf16 *out, float *mean, float *rstd,
                                            const float *inp, const float *weight,
                                            const float *bias, int N, int C) {
    layernorm_forward_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(NULL, out, mean, rstd, inp, weight, bias, N, C);
    LAUNCHED();
}

__global__ void layernorm_backward_kernel(float *dinp, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd,
                                          int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (long)row * C, *d = dout + (long)row * C;
    float m = mean[row], s = rstd[row];
    float dm = 0.0f, dnm = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s, dn = w[i] * d[i];
        dm += dn;
        dnm += dn * norm;
    }
    dm = warp_sum(dm) / C;
    dnm = warp_sum(dnm) / C;
    float *di = dinp + (long)row * C;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s, dn = w[i] * d[i];
        di[i] += (dn - dm - norm * dnm) * s;
    }
}

extern "C" void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias,
                                        const float *dout, const float *inp, const float *weight,
                                        const float *mean, const float *rstd, int N, int C) {
    if (dinp) {
        layernorm_backward_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
        LAUNCHED();
    }
    if (dweight || dbias) colsum(dweight, dbias, dout, inp, mean, rstd, N, C);
}

#define GELU_SCALE 0.7978845608028654f

/* out_bf: the output as bf16 instead of fp32 */
__global__ void gelu_forward_kernel(float *out, uint16_t *out_bf, const float *inp, long N) {
    FOR_EACH(i, N) {
        float x = inp[i];
        float y = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
        if (out_bf) out_bf[i] = to_bf16(y);
        else out[i] = y;
    }
}

/* dinp_bf: also a bf16 copy of the (written, acc = 0) input gradient */
__global__ void gelu_backward_kernel(float *dinp, uint16_t *dinp_bf, const float *inp,
                                     const float *dout, long N, int acc) {
    FOR_EACH(i, N) {
        float x = inp[i];
        float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
        float g = 0.5f * (1.0f + th) +
                  0.5f * x * (1.0f - th * th) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        float d = (acc ? dinp[i] : 0.0f) + g * dout[i];
        dinp[i] = d;
        if (dinp_bf) dinp_bf[i] = to_bf16(d);
    }
}

__global__ void residual_kernel(float *out, const float *a, const float *b, long N) {
    FOR_EACH(i, N) out[i] = a[i] + b[i];
}

__global__ void add_kernel(float *dst, const float *src, long N) {
    FOR_EACH(i, N) dst[i] += src[i];
}

extern "C" void cuda_gelu_forward(float *out, const float *inp, long N) {
    gelu_forward_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(out, NULL, inp, N);
    LAUNCHED();
}
extern "C" void cuda_gelu_forward_bf16(cuda_bf16 *out, const float *inp, long N) {
    gelu_forward_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(NULL, out, inp, N);
    LAUNCHED();
}
extern "C" void cuda_gelu_backward(float *dinp, const float *inp, const float *dout, long N) {
    gelu_backward_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(dinp, NULL, inp, dout, N, 1);
    LAUNCHED();
}
extern "C" void cuda_gelu_backward_to(float *dinp, const float *inp, const float *dout, long N) {
    gelu_backward_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(dinp, NULL, inp, dout, N, 0);
    LAUNCHED();
}
extern "C" void cuda_gelu_backward_to_bf16(float *dinp, cuda_bf16 *dinp_bf, const float *inp,
                                           const float *dout, long N) {
    gelu_backward_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(dinp, dinp_bf, inp, dout, N, 0);
    LAUNCHED();
}
extern "C" void cuda_residual_forward(float *out, const float *a, const float *b, long N) {
    residual_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(out, a, b, N);
    LAUNCHED();
}
extern "C" void cuda_add_inplace(float *dst, const float *src, long N) {
    add_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream>>>(dst, src, N);
    LAUNCHED();
}

__global__ void encoder_forward_kernel(float *out, const float *vis, const int *tokens,
                                       const float *wte, const float *wpe, int B, int T, int P,
                                       int C) {
    FOR_EACH(i, (long)B * T * C) {
        int c = (int)(i % C);
        long bt = i / C;
        int t = (int)(bt % T), b = (int)(bt / T);
        float src = t < P ? vis[((long)b * P + t) * C + c]
                          : wte[(long)tokens[(long)b * (T - P) + (t - P)] * C + c];
        out[i] = src + wpe[(long)t * C + c];
    }
}

extern "C" void cuda_encoder_forward(float *out, const float *vis, const int *tokens,
                                     const float *wte, const float *wpe, int B, int T, int P, int C) {
    encoder_forward_kernel<<<blocks_for((long)B * T * C, 256), 256, 0, ctx.stream>>>(out, vis, tokens, wte, wpe, B, T, P, C);
    LAUNCHED();
}

__global__ void encoder_dvis_kernel(float *dvis, const float *dout, int B, int T, int P, int C) {
    FOR_EACH(i, (long)B * P * C) {
        int c = (int)(i % C);
        long bp = i / C;
        int p = (int)(bp % P), b = (int)(bp / P);
        dvis[i] += dout[((long)b * T + p) * C + c];
    }
}

/* dwpe[t,c] += Σ_b dout[b,t,c], one thread per (t,c), b in order */
__global__ void encoder_dwpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    FOR_EACH(i, (long)T * C) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(long)b * T * C + i];
        dwpe[i] += s;
    }
}

/* dtable[v] += Σ dout[rows of v], one block per table row, rows in index order */
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int *start,
                                          const int *rows, int C) {
    int v = blockIdx.x;
    int lo = start[v], hi = start[v + 1];
    if (lo == hi) return;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int k = lo; k < hi; k++) s += dout[(long)rows[k] * C + c];
        dtable[(long)v * C + c] += s;
    }
}

extern "C" void cuda_embedding_backward(float *dtable, const float *dout, const int *tok_start,
                                        const int *tok_rows, int V, int C) {
    embedding_backward_kernel<<<V, 128, 0, ctx.stream>>>(dtable, dout, tok_start, tok_rows, C);
    LAUNCHED();
}

extern "C" void cuda_encoder_backward(float *dvis, float *dwte, float *dwpe, const float *dout,
                                      const int *tok_start, const int *tok_rows, int V, int B,
                                      int T, int P, int C) {
    if (dvis && P > 0) {
        encoder_dvis_kernel<<<blocks_for((long)B * P * C, 256), 256, 0, ctx.stream>>>(dvis, dout, B, T, P, C);
        LAUNCHED();
    }
    if (dwpe) {
        encoder_dwpe_kernel<<<blocks_for((long)T * C, 256), 256, 0, ctx.stream>>>(dwpe, dout, B, T, C);
        LAUNCHED();
    }
    if (dwte && T > P) cuda_embedding_backward(dwte, dout, tok_start, tok_rows, V, C);
}

__global__ void patchify_kernel(float *out, const uint8_t *u8, const float *f32, int B, int S,
                                int p) {
    int g = S / p, P = g * g, K = p * p * 3;
    FOR_EACH(i, (long)B * P * K) {
        int k = (int)(i % K);
        long bq = i / K;
        int q = (int)(bq % P), b = (int)(bq / P);
        int y = k / (p * 3), xc = k % (p * 3);
        long src = (((long)b * S + (q / g) * p + y) * S + (q % g) * p) * 3 + xc;
        out[i] = u8 ? u8[src] * (1.0f / 255.0f) - 0.5f : f32[src];
    }
}

extern "C" void cuda_patchify_forward(float *out, const uint8_t *img_u8, const float *img_f32,
                                      int B, int S, int p) {
    long n = (long)B * (S / p) * (S / p) * p * p * 3;
    patchify_kernel<<<blocks_for(n, 256), 256, 0, ctx.stream>>>(out, img_u8, img_f32, B, S, p);
    LAUNCHED();
}

/* the text rows of a (B, P+T, C) sequence tensor ↔ a compact (B*T, C) one */
__global__ void text_rows_kernel(float *compact, float *seq, int B, int T, int P, int C, int to_seq) {
    FOR_EACH(i, (long)B * T * C) {
        long row = i / C;
        int c = (int)(i % C), b = (int)(row / T), t = (int)(row % T);
        long si = ((long)b * (P + T) + P + t) * C + c;
        if (to_seq) seq[si] = compact[i];
        else compact[i] = seq[si];
    }
}

extern "C" void cuda_text_rows(float *compact, float *seq, int B, int T, int P, int C, int to_seq) {
    text_rows_kernel<<<blocks_for((long)B * T * C, 256), 256, 0, ctx.stream>>>(compact, seq, B, T, P, C, to_seq);
    LAUNCHED();
}

/* ---------------------------------------------------------------------------------------------
 * Attention: scores and outputs are batched cuBLAS products over the B·NH heads, each head's
 * operand addressed in place: q, k, v as (T,hs) views of qkv (B,T,3C) with row length 3C, the
 * output and its gradient as (T,hs) views of (B,T,C), the probabilities as (T,T) blocks of att.
 * The heads go to one cublasGemmBatchedEx through pointer arrays that a small kernel fills on the
 * device at each call (a launch, so graph capture takes it in). cuBLAS cannot see the addresses
 * behind the arrays and may assume 16-byte aligned matrices (an H100 faults on an odd T's (T,T)
 * blocks with tf32), so a call whose views are not all 16-byte aligned runs instead one strided
 * product per batch row (or per head, whichever is fewer), where cuBLAS checks the strides itself.
 * The softmax (scale, causal mask) is one warp per row. The fused path below keeps head-major
 * copies (the permute kernels). */

/* Scratch: the pointer arrays at the scratch's first 16-byte boundary (n arrays of B·NH pointers,
 * rounded up to 64 floats), then the backward's datt, so 16-byte aligned too. */
static long attn_ptr_floats(int n, long nbh) { return (2L * n * nbh + 63) & ~63L; }
static float *attn_area(float *scratch) {
    return (float *)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
}

long cuda_attention_scratch_forward(int B, int T, int C, int NH) {
    (void)T, (void)C;
    return 4 + attn_ptr_floats(5, (long)B * NH);
}
long cuda_attention_scratch_backward(int B, int T, int C, int NH) {
    (void)C;
    return 4 + attn_ptr_floats(9, (long)B * NH) + (long)B * NH * T * T;
}

/* the views of one call: view j of head i = b·NH + h starts at base[j] + b·sb[j] + h·sh[j] */
#define ATTN_MAX_VIEWS 9
typedef struct {
    float *base[ATTN_MAX_VIEWS];
    long sb[ATTN_MAX_VIEWS], sh[ATTN_MAX_VIEWS];
    int n;
} attn_views;

typedef struct {
    attn_views v;
    float **ptrs; /* NULL: the strided fallback */
    int B, NH;
} attn_call;

__global__ void attn_ptrs_kernel(float **ptrs, attn_views v, int B, int NH) {
    long nbh = (long)B * NH;
    FOR_EACH(i, nbh) {
        long b = i / NH, h = i % NH;
        for (int j = 0; j < v.n; j++) ptrs[j * nbh + i] = v.base[j] + b * v.sb[j] + h * v.sh[j];
    }
}

static int attn_add(attn_views *v, const float *base, long sb, long sh) {
    v->base[v->n] = (float *)base, v->sb[v->n] = sb, v->sh[v->n] = sh;
    return v->n++;
}

/* after the views are added: the pointer arrays filled on the device when every view of every
 * head is 16-byte aligned, else none (the strided fallback) */
static void attn_prepare(attn_call *c, float *area) {
    int aligned = 1;
    for (int j = 0; j < c->v.n; j++)
        aligned &= (uintptr_t)c->v.base[j] % 16 == 0 && c->v.sb[j] % 4 == 0 && c->v.sh[j] % 4 == 0;
    c->ptrs = NULL;
    if (!aligned) return;
    c->ptrs = (float **)area;
    unsigned nb = blocks_for((long)c->B * c->NH, 128);
    attn_ptrs_kernel<<<nb, 128, 0, ctx.stream>>>(c->ptrs, c->v, c->B, c->NH);
    LAUNCHED();
}

/* as gemm_rm for every head: C_i (M,N) = op(A_i) · op(B_i) + beta·C_i, A, B, C view indices */
static void attn_gemm(const attn_call *c, bool ta, bool tb, int M, int N, int K, int A, int lda,
                      int B, int ldb, int C, int ldc, float beta) {
    const attn_views *v = &c->v;
    int nbh = c->B * c->NH;
    if (c->ptrs) {
        const float one = 1.0f;
        float **p = c->ptrs;
        BLAS_CHECK(cublasGemmBatchedEx(ctx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                       ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one,
                                       (const void *const *)(p + (long)B * nbh), CUDA_R_32F, ldb,
                                       (const void *const *)(p + (long)A * nbh), CUDA_R_32F, lda,
                                       &beta, (void *const *)(p + (long)C * nbh), CUDA_R_32F, ldc,
                                       nbh, compute_type[ctx.prec], CUBLAS_GEMM_DEFAULT));
    } else if (c->B <= c->NH) { /* per batch row, strided over the heads */
        for (long b = 0; b < c->B; b++)
            gemm_rm(ta, tb, M, N, K, v->base[A] + b * v->sb[A], lda, v->sh[A],
                    v->base[B] + b * v->sb[B], ldb, v->sh[B], v->base[C] + b * v->sb[C], ldc,
                    v->sh[C], beta, c->NH);
    } else { /* per head, strided over the batch rows */
        for (long h = 0; h < c->NH; h++)
            gemm_rm(ta, tb, M, N, K, v->base[A] + h * v->sh[A], lda, v->sb[A],
                    v->base[B] + h * v->sh[B], ldb, v->sb[B], v->base[C] + h * v->sh[C], ldc,
                    v->sb[C], beta, c->B);
    }
}

/* the layout kernels of the fused path: qkv (B,T,3C) → q,k,v (B,NH,T,hs) */
__global__ void attn_permute_kernel(float *q, float *k, float *v, const float *qkv, int B, int T,
                                    int C, int NH) {
    int hs = C / NH;
    FOR_EACH(i, (long)B * T * C) {
        int d = (int)(i % hs);
        long r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH), b = (int)(r / NH);
        const float *src = qkv + ((long)b * T + t) * 3 * C + h * hs + d;
        q[i] = src[0];
        k[i] = src[C];
        v[i] = src[2 * C];
    }
}

/* y (B,NH,T,hs) → out (B,T,C) */
__global__ void attn_unpermute_kernel(float *out, const float *y, int B, int T, int C, int NH) {
    int hs = C / NH;
    FOR_EACH(i, (long)B * T * C) {
        int d = (int)(i % hs);
        long r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH), b = (int)(r / NH);
        out[((long)b * T + t) * C + h * hs + d] = y[i];
    }
}

/* dout (B,T,C) → dy (B,NH,T,hs) */
__global__ void attn_permute_dout_kernel(float *dy, const float *dout, int B, int T, int C, int NH) {
    int hs = C / NH;
    FOR_EACH(i, (long)B * T * C) {
        int d = (int)(i % hs);
        long r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH), b = (int)(r / NH);
        dy[i] = dout[((long)b * T + t) * C + h * hs + d];
    }
}

/* dq,dk,dv (B,NH,T,hs) → dqkv (B,T,3C), added (acc) or written */
__global__ void attn_unpermute_dqkv_kernel(float *dqkv, const float *dq, const float *dk,
                                           const float *dv, int B, int T, int C, int NH, int acc) {
    int hs = C / NH;
    FOR_EACH(i, (long)B * T * C) {
        int d = (int)(i % hs);
        long r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH), b = (int)(r / NH);
        float *dst = dqkv + ((long)b * T + t) * 3 * C + h * hs + d;
        if (acc) {
            dst[0] += dq[i];
            dst[C] += dk[i];
            dst[2 * C] += dv[i];
        } else {
            dst[0] = dq[i];
            dst[C] = dk[i];
            dst[2 * C] = dv[i];
        }
    }
}

/* in place on att (rows of T): a = softmax(scale · s) over the allowed keys, 0 elsewhere */
__global__ void attn_softmax_kernel(float *att, long rows, int T, float scale, int causal) {
    long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = (int)(row % T), n = causal ? t + 1 : T;
    float *a = att + row * T;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, a[j] * scale);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < n; j += 32) {
        float e = expf(a[j] * scale - mx);
        a[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < T; j += 32) a[j] = j < n ? a[j] * inv : 0.0f;
}

/* in place on datt: dpre = a (datt - Σ a·datt) · scale */
__global__ void attn_softmax_backward_kernel(float *datt, const float *att, long rows, int T,
                                             float scale, int causal) {
    long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = (int)(row % T), n = causal ? t + 1 : T;
    float *d = datt + row * T;
    const float *a = att + row * T;
    float dot = 0.0f;
    for (int j = lane; j < n; j += 32) dot += a[j] * d[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) d[j] = j < n ? a[j] * (d[j] - dot) * scale : 0.0f;
}

extern "C" void cuda_attention_forward(float *out, float *att, const float *qkv, float *scratch,
                                       int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    long rows = (long)B * NH * T, TT = (long)T * T, s3 = 3L * T * C;
    attn_call c = {};
    c.B = B, c.NH = NH;
    int q = attn_add(&c.v, qkv, s3, hs), k = attn_add(&c.v, qkv + C, s3, hs);
    int v = attn_add(&c.v, qkv + 2 * C, s3, hs), a = attn_add(&c.v, att, NH * TT, TT);
    int y = attn_add(&c.v, out, (long)T * C, hs);
    attn_prepare(&c, attn_area(scratch));
    attn_gemm(&c, false, true, T, T, hs, q, 3 * C, k, 3 * C, a, T, 0.0f); /* s = q·kᵀ */
    attn_softmax_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, ctx.stream>>>(att, rows, T, 1.0f / sqrtf((float)hs), causal);
    LAUNCHED();
    attn_gemm(&c, false, false, T, hs, T, a, T, v, 3 * C, y, C, 0.0f); /* y = a·v */
}

/* the order of kernels/cpu/attention.c: datt = dy·vᵀ, dv (+)= aᵀ·dy, the softmax backward, then
 * dq (+)= dpre·k, dk (+)= dpreᵀ·q; acc = 1 adds to dqkv (beta 1), 0 overwrites it (beta 0) */
static void attention_backward(float *dqkv, const float *dout, const float *qkv,
                               const float *att, float *scratch, int B, int T, int C, int NH,
                               int causal, int acc) {
    int hs = C / NH;
    long rows = (long)B * NH * T, TT = (long)T * T, s3 = 3L * T * C;
    float *area = attn_area(scratch), *datt = area + attn_ptr_floats(9, (long)B * NH);
    attn_call c = {};
    c.B = B, c.NH = NH;
    int q = attn_add(&c.v, qkv, s3, hs), k = attn_add(&c.v, qkv + C, s3, hs);
    int v = attn_add(&c.v, qkv + 2 * C, s3, hs), a = attn_add(&c.v, att, NH * TT, TT);
    int dy = attn_add(&c.v, dout, (long)T * C, hs), da = attn_add(&c.v, datt, NH * TT, TT);
    int dq = attn_add(&c.v, dqkv, s3, hs), dk = attn_add(&c.v, dqkv + C, s3, hs);
    int dv = attn_add(&c.v, dqkv + 2 * C, s3, hs);
    attn_prepare(&c, area);
    float beta = acc ? 1.0f : 0.0f;
    attn_gemm(&c, false, true, T, T, hs, dy, C, v, 3 * C, da, T, 0.0f);     /* datt = dy·vᵀ */
    attn_gemm(&c, true, false, T, hs, T, a, T, dy, C, dv, 3 * C, beta);     /* dv = aᵀ·dy */
    attn_softmax_backward_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, ctx.stream>>>(datt, att, rows, T, 1.0f / sqrtf((float)hs), causal);
    LAUNCHED();
    attn_gemm(&c, false, false, T, hs, T, da, T, k, 3 * C, dq, 3 * C, beta); /* dq = dpre·k */
    attn_gemm(&c, true, false, T, hs, T, da, T, q, 3 * C, dk, 3 * C, beta);  /* dk = dpreᵀ·q */
}

extern "C" void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                        const float *att, float *scratch, int B, int T, int C,
                                        int NH, int causal) {
    attention_backward(dqkv, dout, qkv, att, scratch, B, T, C, NH, causal, 1);
}

extern "C" void cuda_attention_backward_to(float *dqkv, const float *dout, const float *qkv,
                                           const float *att, float *scratch, int B, int T, int C,
                                           int NH, int causal) {
    attention_backward(dqkv, dout, qkv, att, scratch, B, T, C, NH, causal, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Fused attention (flash-style, CUDA cores): one warp per query row keeps a running max and sum
 * over 32-key chunks, so the (T,T) matrix is never stored; the backward recomputes the
 * probabilities from the saved log-sum-exp, dq by query rows and dk, dv by key rows (no atomics).
 * Lane j scores key j0+j of a chunk; the output dims d = lane, lane+32 are spread over lanes. */

#define FA_MAX_HS 64
#define FA_WARPS 8

/* a·b over hs values, summed in order; 16-byte loads when hs is a multiple of 4 (the rows of
 * q, k, v, dy and the shared copies are then 16-byte aligned) */
__device__ inline float dot_row(const float *a, const float *b, int hs) {
    float s = 0.0f;
    if ((hs & 3) == 0) {
        for (int d = 0; d < hs; d += 4) {
            float4 x = *(const float4 *)(a + d), y = *(const float4 *)(b + d);
            s += x.x * y.x;
            s += x.y * y.y;
            s += x.z * y.z;
            s += x.w * y.w;
        }
    } else {
        for (int d = 0; d < hs; d++) s += a[d] * b[d];
    }
    return s;
}

long cuda_attention_fused_scratch(int B, int T, int C, int NH) {
    return 7L * B * T * C + (long)B * NH * T;
}

/* y (B,NH,T,hs), lse (B,NH,T) from head-major q, k, v */
__global__ void fa_forward_kernel(float *y, float *lse, const float *q, const float *k,
                                  const float *v, long rows, int T, int hs, float scale, int causal) {
    __shared__ __align__(16) float qs[FA_WARPS][FA_MAX_HS];
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    long row = (long)blockIdx.x * FA_WARPS + w;
    if (row >= rows) return;
    int t = (int)(row % T), n = causal ? t + 1 : T;
    long base = (row - t) * hs; /* this head's (T,hs) block */
    for (int d = lane; d < hs; d += 32) qs[w][d] = q[row * hs + d];
    __syncwarp();
    float m = -INFINITY, l = 0.0f, o0 = 0.0f, o1 = 0.0f;
    for (int j0 = 0; j0 < n; j0 += 32) {
        int j = j0 + lane;
        float s = -INFINITY;
        if (j < n) s = dot_row(qs[w], k + base + (long)j * hs, hs) * scale;
        float mn = fmaxf(m, warp_max(s));
        float p = j < n ? expf(s - mn) : 0.0f, corr = expf(m - mn);
        l = l * corr + warp_sum(p);
        o0 *= corr;
        o1 *= corr;
        int cnt = n - j0 < 32 ? n - j0 : 32;
        for (int jj = 0; jj < cnt; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            const float *vj = v + base + (long)(j0 + jj) * hs;
            if (lane < hs) o0 += pj * vj[lane];
            if (lane + 32 < hs) o1 += pj * vj[lane + 32];
        }
        m = mn;
    }
    float inv = 1.0f / l;
    if (lane < hs) y[row * hs + lane] = o0 * inv;
    if (lane + 32 < hs) y[row * hs + lane + 32] = o1 * inv;
    if (lane == 0) lse[row] = m + logf(l);
}

/* dq (B,NH,T,hs) and Drow (B,NH,T) = dy·o per query row; o is the attention output (B,T,C) */
__global__ void fa_backward_dq_kernel(float *dq, float *Drow, const float *q, const float *k,
                                      const float *v, const float *dy, const float *o,
                                      const float *lse, long rows, int T, int C, int NH, int hs,
                                      float scale, int causal) {
    __shared__ __align__(16) float qs[FA_WARPS][FA_MAX_HS], dys[FA_WARPS][FA_MAX_HS];
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    long row = (long)blockIdx.x * FA_WARPS + w;
    if (row >= rows) return;
    int t = (int)(row % T), n = causal ? t + 1 : T;
    long bh = row / T, base = (row - t) * hs;
    int h = (int)(bh % NH), b = (int)(bh / NH);
    const float *orow = o + ((long)b * T + t) * C + h * hs;
    float D = 0.0f;
    for (int d = lane; d < hs; d += 32) {
        qs[w][d] = q[row * hs + d];
        dys[w][d] = dy[row * hs + d];
        D += dys[w][d] * orow[d];
    }
    D = warp_sum(D);
    __syncwarp();
    float L = lse[row], g0 = 0.0f, g1 = 0.0f;
    for (int j0 = 0; j0 < n; j0 += 32) {
        int j = j0 + lane;
        float ds = 0.0f;
        if (j < n) {
            float sc = dot_row(qs[w], k + base + (long)j * hs, hs);
            float dp = dot_row(dys[w], v + base + (long)j * hs, hs);
            float p = expf(sc * scale - L);
            ds = p * (dp - D) * scale;
        }
        int cnt = n - j0 < 32 ? n - j0 : 32;
        for (int jj = 0; jj < cnt; jj++) {
            float dsj = __shfl_sync(0xffffffffu, ds, jj);
            const float *kj = k + base + (long)(j0 + jj) * hs;
            if (lane < hs) g0 += dsj * kj[lane];
            if (lane + 32 < hs) g1 += dsj * kj[lane + 32];
        }
    }
    if (lane < hs) dq[row * hs + lane] = g0;
    if (lane + 32 < hs) dq[row * hs + lane + 32] = g1;
    if (lane == 0) Drow[row] = D;
}

/* dk, dv (B,NH,T,hs) by key rows: the queries t >= t2 (causal) or all */
__global__ void fa_backward_dkv_kernel(float *dk, float *dv, const float *q, const float *k,
                                       const float *v, const float *dy, const float *lse,
                                       const float *Drow, long rows, int T, int hs, float scale,
                                       int causal) {
    __shared__ __align__(16) float ks[FA_WARPS][FA_MAX_HS], vs[FA_WARPS][FA_MAX_HS];
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    long row = (long)blockIdx.x * FA_WARPS + w;
    if (row >= rows) return;
    int t2 = (int)(row % T), start = causal ? t2 : 0;
    long base = (row - t2) * hs, rbase = row - t2; /* first row of this head */
    for (int d = lane; d < hs; d += 32) {
        ks[w][d] = k[row * hs + d];
        vs[w][d] = v[row * hs + d];
    }
    __syncwarp();
    float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f; /* dk, dv */
    for (int i0 = start; i0 < T; i0 += 32) {
        int t = i0 + lane;
        float p = 0.0f, ds = 0.0f;
        if (t < T) {
            float sc = dot_row(q + base + (long)t * hs, ks[w], hs);
            float dp = dot_row(dy + base + (long)t * hs, vs[w], hs);
            p = expf(sc * scale - lse[rbase + t]);
            ds = p * (dp - Drow[rbase + t]) * scale;
        }
        int cnt = T - i0 < 32 ? T - i0 : 32;
        for (int ii = 0; ii < cnt; ii++) {
            float pi = __shfl_sync(0xffffffffu, p, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
            const float *qt = q + base + (long)(i0 + ii) * hs, *dyt = dy + base + (long)(i0 + ii) * hs;
            if (lane < hs) a0 += dsi * qt[lane], b0 += pi * dyt[lane];
            if (lane + 32 < hs) a1 += dsi * qt[lane + 32], b1 += pi * dyt[lane + 32];
        }
    }
    if (lane < hs) dk[row * hs + lane] = a0, dv[row * hs + lane] = b0;
    if (lane + 32 < hs) dk[row * hs + lane + 32] = a1, dv[row * hs + lane + 32] = b1;
}

static void fa_check_hs(int hs) {
    if (hs > FA_MAX_HS) {
        fprintf(stderr, "cgvlm: bug: fused attention supports head size <= %d, not %d\n", FA_MAX_HS, hs);
        abort();
    }
}

extern "C" void cuda_attention_fused_forward(float *out, float *lse, const float *qkv,
                                             float *scratch, int B, int T, int C, int NH,
                                             int causal) {
    int hs = C / NH;
    fa_check_hs(hs);
    long BTC = (long)B * T * C, rows = (long)B * NH * T;
    float *q = scratch, *k = q + BTC, *v = k + BTC, *y = v + BTC;
    unsigned nb = blocks_for(BTC, 256);
    attn_permute_kernel<<<nb, 256, 0, ctx.stream>>>(q, k, v, qkv, B, T, C, NH);
    LAUNCHED();
    fa_forward_kernel<<<(unsigned)((rows + FA_WARPS - 1) / FA_WARPS), 32 * FA_WARPS, 0, ctx.stream>>>(
        y, lse, q, k, v, rows, T, hs, 1.0f / sqrtf((float)hs), causal);
    LAUNCHED();
    attn_unpermute_kernel<<<nb, 256, 0, ctx.stream>>>(out, y, B, T, C, NH);
    LAUNCHED();
}

static void attention_fused_backward(float *dqkv, const float *dout, const float *qkv,
                                     const float *out, const float *lse, float *scratch, int B,
                                     int T, int C, int NH, int causal, int acc) {
    int hs = C / NH;
    fa_check_hs(hs);
    long BTC = (long)B * T * C, rows = (long)B * NH * T;
    float *q = scratch, *k = q + BTC, *v = k + BTC, *dy = v + BTC;
    float *dq = dy + BTC, *dk = dq + BTC, *dv = dk + BTC, *Drow = dv + BTC;
    unsigned nb = blocks_for(BTC, 256), nr = (unsigned)((rows + FA_WARPS - 1) / FA_WARPS);
    float scale = 1.0f / sqrtf((float)hs);
    attn_permute_kernel<<<nb, 256, 0, ctx.stream>>>(q, k, v, qkv, B, T, C, NH);
    LAUNCHED();
    attn_permute_dout_kernel<<<nb, 256, 0, ctx.stream>>>(dy, dout, B, T, C, NH);
    LAUNCHED();
    fa_backward_dq_kernel<<<nr, 32 * FA_WARPS, 0, ctx.stream>>>(dq, Drow, q, k, v, dy, out, lse, rows, T, C, NH, hs, scale, causal);
    LAUNCHED();
    fa_backward_dkv_kernel<<<nr, 32 * FA_WARPS, 0, ctx.stream>>>(dk, dv, q, k, v, dy, lse, Drow, rows, T, hs, scale, causal);
    LAUNCHED();
    attn_unpermute_dqkv_kernel<<<nb, 256, 0, ctx.stream>>>(dqkv, dq, dk, dv, B, T, C, NH, acc);
    LAUNCHED();
}

extern "C" void cuda_attention_fused_backward(float *dqkv, const float *dout, const float *qkv,
                                              const float *out, const float *lse, float *scratch,
                                              int B, int T, int C, int NH, int causal) {
    attention_fused_backward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, causal, 1);
}

extern "C" void cuda_attention_fused_backward_to(float *dqkv, const float *dout, const float *qkv,
                                                 const float *out, const float *lse, float *scratch,
                                                 int B, int T, int C, int NH, int causal) {
    attention_fused_backward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, causal, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Losses and pooling */

/* logits → probabilities in place, one warp per row; loss = logsumexp - logit[target] */
__global__ void classifier_softmax_kernel(float *losses, float *probs, const int *targets, int N,
                                          int V) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    float *p = probs + (long)row * V;
    float mx = -INFINITY;
    for (int j = lane; j < V; j += 32) mx = fmaxf(mx, p[j]);
    mx = warp_max(mx);
    int y = targets[row];
    float zy = y >= 0 ? p[y] : 0.0f; /* read before the loop below overwrites it: */
    __syncwarp();                      /* every lane has read p[y] before any lane writes it */
    float s = 0.0f;
    for (int j = lane; j < V; j += 32) {
        float e = expf(p[j] - mx);
        p[j] = e;
        s += e;
    }
    s = warp_sum(s);
    float inv = 1.0f / s;
    for (int j = lane; j < V; j += 32) p[j] *= inv;
    if (lane == 0) losses[row] = y >= 0 ? mx + logf(s) - zy : 0.0f;
}

extern "C" void cuda_classifier_forward(float *losses, float *probs, const float *x,
                                        const float *wte, const int *targets, int N, int C, int V) {
    if (N == 0) return;
    gemm_rm(false, true, N, V, C, x, C, 0, wte, C, 0, probs, V, 0, 0.0f, 1);
    classifier_softmax_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(losses, probs, targets, N, V);
    LAUNCHED();
}

__global__ void classifier_dlogits_kernel(float *probs, const int *targets, const float *scale,
                                          int N, int V) {
    FOR_EACH(i, (long)N * V) {
        int row = (int)(i / V), j = (int)(i % V), y = targets[row];
        probs[i] = y < 0 ? 0.0f : (probs[i] - (j == y ? 1.0f : 0.0f)) * scale[0];
    }
}

extern "C" void cuda_classifier_backward(float *dx, float *dwte, float *probs, const float *x,
                                         const float *wte, const int *targets, const float *scale,
                                         int N, int C, int V) {
    if (N == 0) return;
    classifier_dlogits_kernel<<<blocks_for((long)N * V, 256), 256, 0, ctx.stream>>>(probs, targets, scale, N, V);
    LAUNCHED();
    if (dx) gemm_rm(false, false, N, C, V, probs, V, 0, wte, C, 0, dx, C, 0, 1.0f, 1);
    if (dwte) gemm_rm(true, false, V, C, N, probs, V, 0, x, C, 0, dwte, C, 0, 1.0f, 1);
}

__global__ void mean_loss_kernel(float *loss, float *inv_n, const float *losses, const int *targets,
                                 int N) {
    __shared__ double sh[256];
    double s = 0.0, c = 0.0;
    for (int i = threadIdx.x; i < N; i += 256)
        if (targets[i] >= 0) s += losses[i], c += 1.0;
    s = block_sum_256(s, sh);
    __syncthreads();
    c = block_sum_256(c, sh);
    if (threadIdx.x == 0) {
        loss[0] = c > 0 ? (float)(s / c) : 0.0f;
        inv_n[0] = c > 0 ? (float)(1.0 / c) : 0.0f;
    }
}

extern "C" void cuda_mean_loss(float *loss, float *inv_n, const float *losses, const int *targets,
                               int N) {
    mean_loss_kernel<<<1, 256, 0, ctx.stream>>>(loss, inv_n, losses, targets, N);
    LAUNCHED();
}

__global__ void avgpool_forward_kernel(float *out, const float *inp, int B, int gh, int gw, int k,
                                       int C) {
    int ow = gw / k, Q = (gh / k) * ow, P = gh * gw;
    float inv = 1.0f / (float)(k * k);
    FOR_EACH(i, (long)B * Q * C) {
        int c = (int)(i % C);
        long bq = i / C;
        int q = (int)(bq % Q), b = (int)(bq / Q), oy = q / ow, ox = q % ow;
        float s = 0.0f;
        for (int dy = 0; dy < k; dy++)
            for (int dx = 0; dx < k; dx++)
                s += inp[((long)b * P + (oy * k + dy) * gw + ox * k + dx) * C + c];
        out[i] = s * inv;
    }
}

__global__ void avgpool_backward_kernel(float *dinp, const float *dout, int B, int gh, int gw,
                                        int k, int C) {
    int ow = gw / k, Q = (gh / k) * ow, P = gh * gw;
    float inv = 1.0f / (float)(k * k);
    FOR_EACH(i, (long)B * P * C) {
        int c = (int)(i % C);
        long bp = i / C;
        int p = (int)(bp % P), b = (int)(bp / P);
        int q = (p / gw / k) * ow + (p % gw) / k;
        dinp[i] += dout[((long)b * Q + q) * C + c] * inv;
    }
}

extern "C" void cuda_avgpool_forward(float *out, const float *inp, int B, int gh, int gw, int k,
                                     int C) {
    long n = (long)B * (gh / k) * (gw / k) * C;
    avgpool_forward_kernel<<<blocks_for(n, 256), 256, 0, ctx.stream>>>(out, inp, B, gh, gw, k, C);
    LAUNCHED();
}

extern "C" void cuda_avgpool_backward(float *dinp, const float *dout, int B, int gh, int gw, int k,
                                      int C) {
    avgpool_backward_kernel<<<blocks_for((long)B * gh * gw * C, 256), 256, 0, ctx.stream>>>(dinp, dout, B, gh, gw, k, C);
    LAUNCHED();
}

#define L2_EPS 1e-12f

__global__ void l2norm_forward_kernel(float *out, float *rnorm, const float *inp, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (long)row * C;
    float ss = 0.0f;
    for (int i = lane; i < C; i += 32) ss += x[i] * x[i];
    float nrm = sqrtf(warp_sum(ss));
    float r = 1.0f / (nrm > L2_EPS ? nrm : L2_EPS);
    for (int i = lane; i < C; i += 32) out[(long)row * C + i] = x[i] * r;
    if (lane == 0) rnorm[row] = r;
}

__global__ void l2norm_backward_kernel(float *dinp, const float *dout, const float *out,
                                       const float *rnorm, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *y = out + (long)row * C, *d = dout + (long)row * C;
    float r = rnorm[row], dot = 0.0f;
    if (r < 1.0f / L2_EPS) {
        for (int i = lane; i < C; i += 32) dot += y[i] * d[i];
        dot = warp_sum(dot);
    }
    for (int i = lane; i < C; i += 32) dinp[(long)row * C + i] += r * (d[i] - y[i] * dot);
}

extern "C" void cuda_l2norm_forward(float *out, float *rnorm, const float *inp, int N, int C) {
    l2norm_forward_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(out, rnorm, inp, N, C);
    LAUNCHED();
}

extern "C" void cuda_l2norm_backward(float *dinp, const float *dout, const float *out,
                                     const float *rnorm, int N, int C) {
    l2norm_backward_kernel<<<(N + 7) / 8, 256, 0, ctx.stream>>>(dinp, dout, out, rnorm, N, C);
    LAUNCHED();
}

__global__ void masked_mean_forward_kernel(float *out, const float *inp, const uint8_t *mask, int B,
                                           int T, int C) {
    FOR_EACH(i, (long)B * C) {
        int b = (int)(i / C), c = (int)(i % C), cnt = 0;
        float s = 0.0f;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(long)b * T + t]) continue;
            s += inp[((long)b * T + t) * C + c];
            cnt++;
        }
        out[i] = s * (cnt ? 1.0f / (float)cnt : 0.0f);
    }
}

__global__ void masked_mean_backward_kernel(float *dinp, const float *dout, const uint8_t *mask,
                                            int B, int T, int C) {
    FOR_EACH(i, (long)B * T * C) {
        int c = (int)(i % C);
        long bt = i / C;
        int b = (int)(bt / T);
        if (mask && !mask[bt]) continue;
        int cnt = 0;
        for (int t = 0; t < T; t++) cnt += !mask || mask[(long)b * T + t];
        dinp[i] += dout[(long)b * C + c] * (1.0f / (float)cnt);
    }
}

extern "C" void cuda_masked_mean_forward(float *out, const float *inp, const uint8_t *mask, int B,
                                         int T, int C) {
    masked_mean_forward_kernel<<<blocks_for((long)B * C, 128), 128, 0, ctx.stream>>>(out, inp, mask, B, T, C);
    LAUNCHED();
}

extern "C" void cuda_masked_mean_backward(float *dinp, const float *dout, const uint8_t *mask,
                                          int B, int T, int C) {
    masked_mean_backward_kernel<<<blocks_for((long)B * T * C, 256), 256, 0, ctx.stream>>>(dinp, dout, mask, B, T, C);
    LAUNCHED();
}

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *table, int N,
                                         int C) {
    FOR_EACH(i, (long)N * C) out[i] = table[(long)tokens[i / C] * C + i % C];
}

extern "C" void cuda_embedding_forward(float *out, const int *tokens, const float *table, int N,
                                       int C) {
    embedding_forward_kernel<<<blocks_for((long)N * C, 256), 256, 0, ctx.stream>>>(out, tokens, table, N, C);
    LAUNCHED();
}

/* logits l_ij = exp(logit_scale) a_i·b_j, one warp per pair, into p1 (i,j) and p2 (j,i) */
__global__ void contrastive_logits_kernel(float *probs, const float *a, const float *b,
                                          const float *logit_scale, int B, int D) {
    long pair = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (pair >= (long)B * B) return;
    int i = (int)(pair / B), j = (int)(pair % B);
    float s = 0.0f;
    for (int k = lane; k < D; k += 32) s += a[(long)i * D + k] * b[(long)j * D + k];
    s = warp_sum(s);
    if (lane == 0) {
        float l = expf(logit_scale[0]) * s;
        probs[(long)i * B + j] = l;
        probs[(long)B * B + (long)j * B + i] = l;
    }
}

/* one block: each warp softmaxes rows of probs (2B rows of B), then thread 0 sums the row losses */
__global__ void contrastive_softmax_kernel(float *loss, float *probs, int B) {
    extern __shared__ float rowloss[]; /* (2B) */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    for (int r = warp; r < 2 * B; r += nw) {
        float *p = probs + (long)r * B;
        float mx = -INFINITY;
        for (int j = lane; j < B; j += 32) mx = fmaxf(mx, p[j]);
        mx = warp_max(mx);
        float s = 0.0f;
        for (int j = lane; j < B; j += 32) s += expf(p[j] - mx);
        s = warp_sum(s);
        float diag = p[r % B];
        __syncwarp();
        for (int j = lane; j < B; j += 32) p[j] = expf(p[j] - mx) / s;
        if (lane == 0) rowloss[r] = -(diag - mx - logf(s));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int r = 0; r < 2 * B; r++) t += rowloss[r];
        loss[0] = (float)(t / (2.0 * B));
    }
}

extern "C" void cuda_contrastive_forward(float *loss, float *probs, const float *a, const float *b,
                                         const float *logit_scale, int B, int D) {
    long pairs = (long)B * B;
    contrastive_logits_kernel<<<(unsigned)((pairs + 7) / 8), 256, 0, ctx.stream>>>(probs, a, b, logit_scale, B, D);
    LAUNCHED();
    contrastive_softmax_kernel<<<1, 1024, sizeof(float) * 2 * B, ctx.stream>>>(loss, probs, B);
    LAUNCHED();
}

/* ds_ij = scale/(2B) (p1_ij + p2_ji - 2δ_ij) · exp(ls) into scratch (B,B); the logit-scale terms
 * ds_ij · s_ij into scratch + B² */
__global__ void contrastive_ds_kernel(float *scratch, const float *probs, const float *a,
                                      const float *b, const float *logit_scale, float scale, int B,
                                      int D, int want_dls) {
    long pair = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (pair >= (long)B * B) return;
    int i = (int)(pair / B), j = (int)(pair % B);
    float sc = expf(logit_scale[0]), w = scale / (2.0f * B);
    float dl = w * (probs[(long)i * B + j] + probs[(long)B * B + (long)j * B + i] - (i == j ? 2.0f : 0.0f));
    float s = 0.0f;
    if (want_dls) {
        for (int k = lane; k < D; k += 32) s += a[(long)i * D + k] * b[(long)j * D + k];
        s = warp_sum(s);
    }
    if (lane == 0) {
        scratch[pair] = dl * sc;
        scratch[(long)B * B + pair] = dl * sc * s;
    }
}

/* da[i,k] += Σ_j ds_ij b[j,k] (transposed = 0); db[j,k] += Σ_i ds_ij a[i,k] (transposed = 1) */
__global__ void contrastive_dab_kernel(float *dst, const float *ds, const float *other, int B, int D,
                                       int transposed) {
    FOR_EACH(idx, (long)B * D) {
        int r = (int)(idx / D), k = (int)(idx % D);
        float s = 0.0f;
        for (int q = 0; q < B; q++)
            s += (transposed ? ds[(long)q * B + r] : ds[(long)r * B + q]) * other[(long)q * D + k];
        dst[idx] += s;
    }
}

__global__ void contrastive_dls_kernel(float *dls, const float *terms, long n) {
    __shared__ double sh[256];
    double s = 0.0;
    for (long i = threadIdx.x; i < n; i += 256) s += terms[i];
    s = block_sum_256(s, sh);
    if (threadIdx.x == 0) dls[0] += (float)s;
}

extern "C" void cuda_contrastive_backward(float *da, float *db, float *dlogit_scale,
                                          const float *probs, const float *a, const float *b,
                                          const float *logit_scale, float scale, float *scratch,
                                          int B, int D) {
    long pairs = (long)B * B;
    contrastive_ds_kernel<<<(unsigned)((pairs + 7) / 8), 256, 0, ctx.stream>>>(scratch, probs, a, b, logit_scale, scale, B, D, dlogit_scale != NULL);
    LAUNCHED();
    if (da) {
        contrastive_dab_kernel<<<blocks_for((long)B * D, 256), 256, 0, ctx.stream>>>(da, scratch, b, B, D, 0);
        LAUNCHED();
    }
    if (db) {
        contrastive_dab_kernel<<<blocks_for((long)B * D, 256), 256, 0, ctx.stream>>>(db, scratch, a, B, D, 1);
        LAUNCHED();
    }
    if (dlogit_scale) {
        contrastive_dls_kernel<<<1, 256, 0, ctx.stream>>>(dlogit_scale, scratch + pairs, pairs);
        LAUNCHED();
    }
}

/* ---------------------------------------------------------------------------------------------
 * Optimizer */

#define CLIP_BLOCKS 64

__global__ void adamw_kernel(float *param, uint16_t *param_bf, const float *grad, float *m,
                             float *v, const cuda_segment *segs, const cuda_step_args *args,
                             const float *grad_scale, float beta1, float beta2, float eps,
                             float wd) {
    cuda_segment sg = segs[blockIdx.y];
    float gs = grad_scale ? grad_scale[0] : 1.0f;
    float lr = args->lr, t = (float)args->t;
    float bc1 = 1.0f - powf(beta1, t), bc2 = 1.0f - powf(beta2, t);
    float decay = sg.decay ? wd : 0.0f;
    FOR_EACH(k, sg.n) {
        long i = sg.off + k;
        float g = gs == 1.0f ? grad[i] : grad[i] * gs; /* = the clipped gradient, same rounding */
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i] - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + decay * param[i]);
        param[i] = p;
        if (param_bf) param_bf[i] = to_bf16(p);
    }
}

extern "C" void cuda_adamw_update(float *param, cuda_bf16 *param_bf, const float *grad, float *m,
                                  float *v, const cuda_segment *segs, int nseg, long max_seg,
                                  const cuda_step_args *args, const float *grad_scale,
                                  float beta1, float beta2, float eps, float weight_decay) {
    if (nseg == 0) return;
    dim3 grid(blocks_for(max_seg, 256) < 1024 ? blocks_for(max_seg, 256) : 1024, nseg);
    adamw_kernel<<<grid, 256, 0, ctx.stream>>>(param, param_bf, grad, m, v, segs, args, grad_scale,
                                                beta1, beta2, eps, weight_decay);
    LAUNCHED();
}

extern "C" int cuda_clip_partials(int nseg) { return nseg * CLIP_BLOCKS; }

__global__ void sumsq_partial_kernel(double *partial, const float *x, const cuda_segment *segs) {
    __shared__ double sh[256];
    cuda_segment sg = segs[blockIdx.y];
    double s = 0.0;
    for (long k = (long)blockIdx.x * 256 + threadIdx.x; k < sg.n; k += (long)CLIP_BLOCKS * 256) {
        double g = x[sg.off + k];
        s += g * g;
    }
    s = block_sum_256(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.y * CLIP_BLOCKS + blockIdx.x] = s;
}

/* norm[0] = sqrt(Σ partials), norm[1] = the factor the gradients are scaled by (1 or max/norm) */
__global__ void clip_finish_kernel(float *norm, const double *partial, int n,
                                   const cuda_step_args *args) {
    __shared__ double sh[256];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += 256) s += partial[i];
    s = block_sum_256(s, sh);
    if (threadIdx.x == 0) {
        float nrm = (float)sqrt(s), mx = args->max_norm;
        norm[0] = nrm;
        norm[1] = mx > 0.0f && nrm > mx ? mx / nrm : 1.0f;
    }
}

__global__ void scale_segments_kernel(float *x, const cuda_segment *segs, const float *factor) {
    float f = factor[0];
    if (f == 1.0f) return;
    cuda_segment sg = segs[blockIdx.y];
    FOR_EACH(k, sg.n) x[sg.off + k] *= f;
}

__global__ void set_norm_kernel(float *norm) { norm[0] = 0.0f, norm[1] = 1.0f; }

extern "C" void cuda_clip_grad(float *grad, const cuda_segment *segs, int nseg, long max_seg,
                               const cuda_step_args *args, double *partial, float *norm,
                               int apply) {
    if (nseg == 0) {
        set_norm_kernel<<<1, 1, 0, ctx.stream>>>(norm);
        LAUNCHED();
        return;
    }
    sumsq_partial_kernel<<<dim3(CLIP_BLOCKS, nseg), 256, 0, ctx.stream>>>(partial, grad, segs);
    LAUNCHED();
    clip_finish_kernel<<<1, 256, 0, ctx.stream>>>(norm, partial, nseg * CLIP_BLOCKS, args);
    LAUNCHED();
    if (!apply) return;
    dim3 grid(blocks_for(max_seg, 256) < 1024 ? blocks_for(max_seg, 256) : 1024, nseg);
    scale_segments_kernel<<<grid, 256, 0, ctx.stream>>>(grad, segs, norm + 1);
    LAUNCHED();
}

/* ---------------------------------------------------------------------------------------------
 * Host helpers */

extern "C" void cuda_token_index(int *start, int *rows, const int *tokens, int N, int V, int per,
                                 int stride, int off) {
    memset(start, 0, sizeof(int) * (size_t)(V + 1));
    for (int r = 0; r < N; r++)
        if (tokens[r] >= 0 && tokens[r] < V) start[tokens[r] + 1]++;
    for (int v = 0; v < V; v++) start[v + 1] += start[v];
    int *fill = (int *)cg_malloc(sizeof(int) * (size_t)V);
    memcpy(fill, start, sizeof(int) * (size_t)V);
    for (int r = 0; r < N; r++) {
        int t = tokens[r];
        if (t < 0 || t >= V) continue;
        rows[fill[t]++] = (r / per) * stride + off + r % per;
    }
    free(fill);
}
