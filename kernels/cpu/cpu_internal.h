/* cpu_internal.h: helpers shared by the CPU kernels (not part of the kernel interface). */
#ifndef CG_CPU_INTERNAL_H
#define CG_CPU_INTERNAL_H

#include <omp.h>

/* The static share [lo, hi) of n items of the calling thread inside a parallel region: each thread
 * owns a fixed range, so reductions over the other dimension run in order (deterministic). */
static inline void thread_range(long n, long *lo, long *hi) {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    *lo = n * id / nt;
    *hi = n * (id + 1) / nt;
}

#endif
