/* lib/sha256.h - SHA-256 (FIPS 180-4), used for the MoS routing hash. */
#ifndef LH_SHA256_H
#define LH_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct lh_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;     /* total message length so far */
    uint8_t block[64];    /* pending partial block */
    size_t n_block;       /* bytes in block */
} lh_sha256;

void lh_sha256_init(lh_sha256 *s);
void lh_sha256_update(lh_sha256 *s, const void *data, size_t len);
void lh_sha256_final(lh_sha256 *s, uint8_t digest[32]);
/* One shot; hex gets 64 lowercase hex digits and a NUL. */
void lh_sha256_hex(const void *data, size_t len, char hex[65]);
void lh_sha256_to_hex(const uint8_t digest[32], char hex[65]);

#endif
