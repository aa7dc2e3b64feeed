/* fetch_sha256.h: SHA-256 at the speed of the network: the same digest as util/sha256.h, using
 * the x86 SHA extensions (SHA-NI) when the CPU has them, else the plain implementation. The
 * fetcher hashes every byte it receives, so a plain ~300 MB/s hash would cap its throughput. */
#ifndef CG_FETCH_SHA256_H
#define CG_FETCH_SHA256_H

#include "util/sha256.h"

/* Drop-in for cg_sha256_update on a state from cg_sha256_init; finish with cg_sha256_final. */
void cg_sha256_update_fast(cg_sha256 *s, const void *data, size_t n);
/* 1 when the accelerated path is in use on this CPU. */
int cg_sha256_fast_active(void);

#endif
