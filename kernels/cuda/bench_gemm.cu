/* bench_gemm.cu: how fast cuBLAS runs one matrix product of a given shape in each precision the
 * training core could use (cuda_bench_gemm, model_cuda.h): plain fp32, TF32 tensor cores, bf16
 * tensor cores on fp32 operands (CUBLAS_COMPUTE_32F_FAST_16BF: what --precision bf16 used to
 * ask, and still does for attention, the classifier and the adapter) and bf16 operands with fp32
 * output and accumulation (the transformer layers' products in bf16 now). The training core's
 * products have a few shapes per model size; timing them alone tells how much of a step they take
 * and what each precision buys (docs/PERFORMANCE.md, CUDA).
 * Its own cuBLAS handle and buffers, nothing shared with ops.cu. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdlib.h>

extern "C" {
#include "kernels/cuda/model_cuda.h"
#include "util/util.h"
}

/* values in [-1, 1) from a hash of the index, as fp32 or bf16 */
__global__ void bench_fill_kernel(float *f, __nv_bfloat16 *h, long n, unsigned seed) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 15;
        x *= 2246822519u;
        x ^= x >> 13;
        float v = (float)(x & 0xffffff) / 8388608.0f - 1.0f;
        if (f) f[i] = v;
        if (h) h[i] = __float2bfloat16(v);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

extern "C" int cuda_bench_gemm(int M, int N, int K, int ta, int tb, int kind, int iters, double *ms) {
    *ms = 0.0;
    if (M < 1 || N < 1 || K < 1 || iters < 1 || kind < CUDA_GEMM_FP32 || kind > CUDA_GEMM_BF16)
        return cg_err(CG_EUSER, "bad product to time: %dx%dx%d, kind %d, %d iterations", M, N, K, kind, iters);
    int bf = kind == CUDA_GEMM_BF16;
    size_t esz = bf ? 2 : 4, na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    void *A = NULL, *B = NULL, *C = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double *t = (double *)cg_calloc((size_t)iters, sizeof(double));
    int rc = CG_OK;
    cudaError_t ce = cudaSuccess;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if ((ce = cudaMalloc(&A, na * esz)) || (ce = cudaMalloc(&B, nb * esz)) || (ce = cudaMalloc(&C, nc * 4)) ||
        (ce = cudaEventCreate(&e0)) || (ce = cudaEventCreate(&e1))) goto out;
    bench_fill_kernel<<<1024, 256>>>(bf ? NULL : (float *)A, bf ? (__nv_bfloat16 *)A : NULL, (long)na, 1u);
    bench_fill_kernel<<<1024, 256>>>(bf ? NULL : (float *)B, bf ? (__nv_bfloat16 *)B : NULL, (long)nb, 2u);
    if ((ce = cudaGetLastError()) || (ce = cudaDeviceSynchronize())) goto out;
    if ((bs = cublasCreate(&h))) goto out;
    {
        static const cublasComputeType_t ct[] = {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32,
                                                 CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_COMPUTE_32F};
        cudaDataType_t in = bf ? CUDA_R_16BF : CUDA_R_32F;
        const float one = 1.0f, zero = 0.0f;
        /* row-major C (M,N) = op(A) op(B) as column-major Cᵀ = op(B)ᵀ op(A)ᵀ (ops.cu's gemm_rm) */
        int lda = ta ? M : K, ldb = tb ? K : N;
        for (int i = -3; i < iters && !bs && !ce; i++) { /* 3 untimed warm-up products */
            cudaEventRecord(e0, 0);
            bs = cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &one, B, in, ldb, A, in, lda, &zero, C, CUDA_R_32F, N, ct[kind],
                              CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(e1, 0);
            float f = 0.0f;
            if (!bs && !(ce = cudaEventSynchronize(e1)) && !(ce = cudaEventElapsedTime(&f, e0, e1)) && i >= 0)
                t[i] = f;
        }
    }
    if (!bs && !ce) {
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        *ms = t[iters / 2];
    }
out:
    if (ce) rc = cg_err(CG_EFAIL, "timing a %dx%dx%d product: %s", M, N, K, cudaGetErrorString(ce));
    else if (bs) rc = cg_err(CG_EFAIL, "timing a %dx%dx%d product: cuBLAS: %s", M, N, K, cublasGetStatusString(bs));
    cudaGetLastError();
    if (h) cublasDestroy(h);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    free(t);
    return rc;
}
