/* sha256.h: SHA-256 (FIPS 180-4), streaming, for manifests, artifacts and task keys. */
#ifndef CG_SHA256_H
#define CG_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t block[64];
    size_t used;
} cg_sha256;

void cg_sha256_init(cg_sha256 *s);
void cg_sha256_update(cg_sha256 *s, const void *data, size_t n);
void cg_sha256_final(cg_sha256 *s, uint8_t out[32]);
/* 1 when the SHA-NI block function is in use on this CPU. cg_sha256_use_accel(0) forces the plain
 * C path (tests compare the two); cg_sha256_use_accel(1) restores the CPU's choice. */
int cg_sha256_accelerated(void);
void cg_sha256_use_accel(int on);
/* One-shot helpers; hex is 64 chars + NUL. */
void cg_sha256_hex(const void *data, size_t n, char hex[65]);
void cg_sha256_to_hex(const uint8_t digest[32], char hex[65]);
/* Hashes a file; CG_OK or an error naming the path. */
int cg_sha256_file(const char *path, char hex[65], uint64_t *size);

#endif
