/* tests/zipbuild.h - a minimal zip writer for the torch zip tests and the
 * fuzzer: stored entries, optionally Zip64, the sizes in the central
 * directory optionally lying. Header-only (static functions), test code only. */
#ifndef LH_TESTS_ZIPBUILD_H
#define LH_TESTS_ZIPBUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

typedef struct zin {
    const char *name;
    const void *data;
    size_t len;
    unsigned method;     /* written in the headers (the data stays as given) */
    long size_lie;       /* added to the sizes in the central directory */
} zin;

typedef struct zbuf {
    uint8_t *p;
    size_t n, cap;
} zbuf;

static inline void put(zbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void put16(zbuf *b, unsigned v) { uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; put(b, x, 2); }
static inline void put32(zbuf *b, uint32_t v) { put16(b, v & 0xFFFF); put16(b, v >> 16); }

static inline void put64(zbuf *b, uint64_t v) { put32(b, (uint32_t)v); put32(b, (uint32_t)(v >> 32)); }

/* A zip of stored entries, as a minimal writer would make it. With zip64,
 * every size and offset of the central directory and of the end record is
 * 0xFFFFFFFF (0xFFFF) and the real values are in Zip64 extra fields and a
 * Zip64 end record, as writers do for files over 4 GiB. */
static inline zbuf make_zip64(const zin *e, size_t n, int zip64)
{
    zbuf z = {0}, cd = {0};
    const uint32_t big = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        uint32_t off = (uint32_t)z.n, crc = crc32_ref(e[i].data, e[i].len);
        size_t nl = strlen(e[i].name);
        put32(&z, 0x04034b50); put16(&z, 20); put16(&z, 0); put16(&z, e[i].method);
        put32(&z, 0); put32(&z, crc); put32(&z, (uint32_t)e[i].len); put32(&z, (uint32_t)e[i].len);
        put16(&z, (unsigned)nl); put16(&z, 0); put(&z, e[i].name, nl); put(&z, e[i].data, e[i].len);
        uint32_t sz = (uint32_t)((long)e[i].len + e[i].size_lie);
        put32(&cd, 0x02014b50); put16(&cd, 45); put16(&cd, 45); put16(&cd, 0);
        put16(&cd, e[i].method); put32(&cd, 0); put32(&cd, crc);
        put32(&cd, zip64 ? big : sz); put32(&cd, zip64 ? big : sz);
        put16(&cd, (unsigned)nl); put16(&cd, zip64 ? 28 : 0); put16(&cd, 0); put16(&cd, 0);
        put16(&cd, 0); put32(&cd, 0); put32(&cd, zip64 ? big : off); put(&cd, e[i].name, nl);
        if (zip64) { /* id 1: uncompressed, compressed size, local header offset */
            put16(&cd, 1); put16(&cd, 24); put64(&cd, sz); put64(&cd, sz); put64(&cd, off);
        }
    }
    uint32_t cd_off = (uint32_t)z.n;
    put(&z, cd.p, cd.n);
    if (zip64) {
        uint64_t rec = z.n;
        put32(&z, 0x06064b50); put64(&z, 44); put16(&z, 45); put16(&z, 45); put32(&z, 0);
        put32(&z, 0); put64(&z, n); put64(&z, n); put64(&z, cd.n); put64(&z, cd_off);
        put32(&z, 0x07064b50); put32(&z, 0); put64(&z, rec); put32(&z, 1);
    }
    put32(&z, 0x06054b50); put16(&z, 0); put16(&z, 0);
    put16(&z, zip64 ? 0xFFFF : (unsigned)n); put16(&z, zip64 ? 0xFFFF : (unsigned)n);
    put32(&z, zip64 ? big : (uint32_t)cd.n); put32(&z, zip64 ? big : cd_off); put16(&z, 0);
    free(cd.p);
    return z;
}

static inline zbuf make_zip(const zin *e, size_t n) { return make_zip64(e, n, 0); }

#endif
