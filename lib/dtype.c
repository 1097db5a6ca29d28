/* lib/dtype.c - dtype names and exact F16/BF16/F64 <-> F32 conversions.
 *
 * The half-precision conversions work on bit patterns rather than relying on
 * _Float16 / compiler support so that rounding (nearest, ties to even),
 * subnormals, Inf and NaN behave identically on every build. */
#include "dtype.h"

#include <string.h>

static const char *const dtype_names[LH_DTYPE_COUNT] = {
    [LH_BOOL] = "BOOL", [LH_F4] = "F4", [LH_F6_E2M3] = "F6_E2M3", [LH_F6_E3M2] = "F6_E3M2",
    [LH_U8] = "U8", [LH_I8] = "I8", [LH_F8_E5M2] = "F8_E5M2", [LH_F8_E4M3] = "F8_E4M3",
    [LH_F8_E8M0] = "F8_E8M0", [LH_F8_E4M3FNUZ] = "F8_E4M3FNUZ",
    [LH_F8_E5M2FNUZ] = "F8_E5M2FNUZ", [LH_I16] = "I16", [LH_U16] = "U16", [LH_F16] = "F16",
    [LH_BF16] = "BF16", [LH_I32] = "I32", [LH_U32] = "U32", [LH_F32] = "F32", [LH_C64] = "C64",
    [LH_F64] = "F64", [LH_I64] = "I64", [LH_U64] = "U64",
};

static const unsigned char dtype_bits[LH_DTYPE_COUNT] = {
    [LH_BOOL] = 8, [LH_F4] = 4, [LH_F6_E2M3] = 6, [LH_F6_E3M2] = 6, [LH_U8] = 8, [LH_I8] = 8,
    [LH_F8_E5M2] = 8, [LH_F8_E4M3] = 8, [LH_F8_E8M0] = 8, [LH_F8_E4M3FNUZ] = 8,
    [LH_F8_E5M2FNUZ] = 8, [LH_I16] = 16, [LH_U16] = 16, [LH_F16] = 16, [LH_BF16] = 16,
    [LH_I32] = 32, [LH_U32] = 32, [LH_F32] = 32, [LH_C64] = 64, [LH_F64] = 64, [LH_I64] = 64,
    [LH_U64] = 64,
};

const char *lh_dtype_name(lh_dtype t)
{
    if ((int)t < 0 || t >= LH_DTYPE_COUNT)
        return NULL;
    return dtype_names[t];
}

int lh_dtype_from_name(const char *name, lh_dtype *out)
{
    if (!name)
        return -1;
    for (int i = 0; i < LH_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            if (out)
                *out = (lh_dtype)i;
            return 0;
        }
    }
    return -1;
}

unsigned lh_dtype_bits(lh_dtype t)
{
    if ((int)t < 0 || t >= LH_DTYPE_COUNT)
        return 0;
    return dtype_bits[t];
}

int lh_dtype_is_float(lh_dtype t)
{
    return t == LH_F16 || t == LH_BF16 || t == LH_F32 || t == LH_F64;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float lh_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) /* Inf, or NaN with its payload kept */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t lh_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u)
            return sign | 0x7c00;
        /* NaN: keep the top payload bits, force quiet so it never becomes Inf */
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    }
    if (x >= 0x477ff000u) /* >= 65520 rounds past the largest half (65504) */
        return sign | 0x7c00;
    if (x < 0x38800000u) {
        /* below 2^-14: a half subnormal, counted in units of 2^-24 */
        uint32_t e = x >> 23;
        if (e < 102) /* < 2^-25: rounds to zero (ties go to even zero) */
            return sign;
        uint32_t mant = (x & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t h = ((x >> 23) - 112) << 10 | ((x >> 13) & 0x3ff);
    uint32_t rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* a carry into the exponent is the correct result */
    return (uint16_t)(sign | h);
}

float lh_bf16_to_f32(uint16_t b)
{
    return bits_f32((uint32_t)b << 16);
}

uint16_t lh_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, keep it quiet */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Little-endian loads/stores that work at any alignment. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline uint16_t ld16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t ld64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void st16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
#else
static inline uint16_t ld16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ld32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ld64(const unsigned char *p) { return ld32(p) | (uint64_t)ld32(p + 4) << 32; }
static inline void st16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void st32(unsigned char *p, uint32_t v) { st16(p, (uint16_t)v); st16(p + 2, (uint16_t)(v >> 16)); }
static inline void st64(unsigned char *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }
#endif

/* Branch-free forms of the scalar conversions above, for the bulk loops:
 * the compiler turns the selects into vector blends, and random data costs
 * no branch mispredictions (the branchy forms run ~20x slower on weights).
 * check_dtype verifies they agree with the scalar ones bit for bit. */
/* all-ones when c holds, else zero: selects as bit masks, never branches */
static inline uint32_t mask_if(int c)
{
    return 0u - (uint32_t)c;
}

static inline uint32_t f16_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t em = h & 0x7fff;
    uint32_t o = (em << 13) + 0x38000000u;               /* rebias the exponent: normals */
    o += mask_if(em >= 0x7c00) & 0x38000000u;            /* Inf/NaN: exponent 255 */
    uint32_t sub = f32_bits((float)(int32_t)em * 0x1p-24f); /* zero/subnormal, exact */
    uint32_t m = mask_if(em < 0x400);
    return (sub & m) | (o & ~m) | sign;
}

static inline uint16_t f32_to_f16_bits(uint32_t x)
{
    uint32_t sign = (x >> 16) & 0x8000;
    x &= 0x7fffffffu;
    /* normal halves: round to nearest even on the 13 dropped bits */
    uint32_t norm = (x + 0xfffu + ((x >> 13) & 1) - 0x38000000u) >> 13;
    /* subnormal halves: adding 0.5 puts the float's ulp at 2^-24, so the
     * FPU's own round-to-nearest-even does the rounding */
    uint32_t sub = f32_bits(bits_f32(x) + 0.5f) - 0x3f000000u;
    uint32_t nan = 0x7e00 | ((x >> 13) & 0x3ff);
    uint32_t m = mask_if(x < 0x38800000u);
    uint32_t h = (sub & m) | (norm & ~m);
    m = mask_if(x >= 0x477ff000u);
    h = (0x7c00 & m) | (h & ~m);
    m = mask_if(x > 0x7f800000u);
    h = (nan & m) | (h & ~m);
    return (uint16_t)(h | sign);
}

/* The bulk loops are what loading a model costs; GCC vectorizes them only
 * with its -O3 cost model, whatever the build's -O level (clang does at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#define BULK __attribute__((optimize("O3")))
#else
#define BULK
#endif

BULK int lh_convert_to_f32(lh_dtype t, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    switch (t) {
    case LH_F32:
        for (size_t i = 0; i < n; i++)
            dst[i] = bits_f32(ld32(s + 4 * i));
        return 0;
    case LH_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = bits_f32((uint32_t)ld16(s + 2 * i) << 16);
        return 0;
    case LH_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = bits_f32(f16_to_f32_bits(ld16(s + 2 * i)));
        return 0;
    case LH_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = ld64(s + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return -1;
    }
}

BULK int lh_convert_from_f32(lh_dtype t, const float *src, void *dst, size_t n)
{
    unsigned char *d = dst;
    switch (t) {
    case LH_F32:
        for (size_t i = 0; i < n; i++)
            st32(d + 4 * i, f32_bits(src[i]));
        return 0;
    case LH_BF16:
        for (size_t i = 0; i < n; i++)
            st16(d + 2 * i, lh_f32_to_bf16(src[i]));
        return 0;
    case LH_F16:
        for (size_t i = 0; i < n; i++)
            st16(d + 2 * i, f32_to_f16_bits(f32_bits(src[i])));
        return 0;
    case LH_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            uint64_t u;
            memcpy(&u, &v, 8);
            st64(d + 8 * i, u);
        }
        return 0;
    default:
        return -1;
    }
}
