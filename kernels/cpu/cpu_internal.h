/* cpu_internal.h: helpers shared by the CPU kernels (not part of the kernel interface). */
#ifndef CG_CPU_INTERNAL_H
#define CG_CPU_INTERNAL_H

#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Compute-bound elementwise loops are compiled for AVX-512, AVX2+FMA and baseline x86-64, picked
 * at load time by the CPU (GCC function multi-versioning): portable binaries, full-width vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif

/* Whether a parallel region is worth its team: below about CG_PAR_MIN elementary steps (array
 * elements touched, multiply-adds / 64 for products) it runs on the calling thread alone, through
 * an `if (CG_PAR(work))` clause. Waking a sleeping OpenMP team costs futex calls (tens of µs on
 * a loaded machine), and the evaluation's forwards are tiny (a few options of ~40 tokens): with 2
 * threads it took 2.2 times as long as with 1 (perf: a third of the time in futex wake/wait under
 * GOMP_parallel). Results are the same either way: every kernel is thread-count invariant (tests
 * train_threads, stages_threads). */
#define CG_PAR_MIN 32768L
#define CG_PAR(work) ((long)(work) >= CG_PAR_MIN)

/* OpenBLAS runs single-threaded inside our OpenMP threads (see gemm in kernels.h). Called before
 * every parallel region that calls sgemm; after the first call it is one load and a branch. */
void blas_single_thread(void);

/* The static share [lo, hi) of n items of the calling thread inside a parallel region: each thread
 * owns a fixed range, so reductions over the other dimension run in order (deterministic). */
static inline void thread_range(long n, long *lo, long *hi) {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    *lo = n * id / nt;
    *hi = n * (id + 1) / nt;
}

/* e^x for x in about [-87, 88] (clamped), within ~2 ulp: Cephes' expf (range reduction by ln 2,
 * degree-6 polynomial, exponent built in the bits). Branch-free and call-free, so loops that use
 * it vectorise under `omp simd` — libm's expf/tanhf are scalar calls and were 40 % of a step. */
static inline float exp_fast(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2/(e^{2x} + 1), absolute error ~1e-7 (relative error grows near 0, where GELU
 * multiplies it by x anyway). */
static inline float tanh_fast(float x) {
    x = x > 9.0f ? 9.0f : x;
    x = x < -9.0f ? -9.0f : x;
    return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f);
}

#endif
