/* tests/check_dtype.c - dtype names and F16/BF16/F64 <-> F32 conversions.
 *
 * The float -> half rounding is checked against an independent reference:
 * the two neighbouring representable values are found by binary search over
 * the (monotonic) positive bit patterns, then the nearer one is taken with
 * ties to the even pattern. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dtype.h"

/* ck_assert reports every passing check to the parent process (a write per
 * call), which makes million-iteration loops slow; loops use this instead. */
#define LOOP_EQ(a, b)                                                                  \
    do {                                                                               \
        unsigned long long a_ = (a), b_ = (b);                                         \
        if (a_ != b_)                                                                  \
            ck_abort_msg("%s == %s failed: 0x%llx != 0x%llx", #a, #b, a_, b_);          \
    } while (0)
#define LOOP_TRUE(c)                                                                   \
    do {                                                                               \
        if (!(c))                                                                      \
            ck_abort_msg("%s failed", #c);                                             \
    } while (0)

static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Reference rounding of |f| (finite) to a 16-bit format whose positive finite
 * patterns 0..maxpat decode monotonically through dec(). Values at or past
 * the midpoint between the largest finite value and "the next one" (one ulp
 * above) go to inf_pat. */
static uint16_t ref_round(double a, float (*dec)(uint16_t), uint16_t maxpat, uint16_t inf_pat)
{
    double maxv = dec(maxpat), ulp = maxv - dec((uint16_t)(maxpat - 1));
    if (a >= maxv + ulp / 2)
        return inf_pat;
    if (a >= maxv)
        return maxpat; /* strictly below the halfway point */
    uint32_t lo = 0, hi = maxpat; /* dec(lo) <= a < dec(hi) */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if ((double)dec((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dl = a - dec((uint16_t)lo), dh = dec((uint16_t)hi) - a;
    if (dl < dh)
        return (uint16_t)lo;
    if (dh < dl)
        return (uint16_t)hi;
    return (uint16_t)((lo & 1) ? hi : lo);
}

static uint16_t ref_f16(float f)
{
    uint16_t s = (f32_bits(f) >> 16) & 0x8000;
    return s | ref_round(fabs((double)f), lh_f16_to_f32, 0x7bff, 0x7c00);
}

static uint16_t ref_bf16(float f)
{
    uint16_t s = (f32_bits(f) >> 16) & 0x8000;
    return s | ref_round(fabs((double)f), lh_bf16_to_f32, 0x7f7f, 0x7f80);
}

START_TEST(test_names_enum_order)
{
    static const char *const order[] = {
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
        "C64", "F64", "I64", "U64",
    };
    ck_assert_int_eq(sizeof order / sizeof *order, LH_DTYPE_COUNT);
    for (int i = 0; i < LH_DTYPE_COUNT; i++) {
        ck_assert_str_eq(lh_dtype_name((lh_dtype)i), order[i]);
        lh_dtype t;
        ck_assert_int_eq(lh_dtype_from_name(order[i], &t), 0);
        ck_assert_int_eq(t, i);
    }
    lh_dtype t;
    ck_assert_int_ne(lh_dtype_from_name("f32", &t), 0); /* case-sensitive */
    ck_assert_int_ne(lh_dtype_from_name("F128", &t), 0);
    ck_assert_int_ne(lh_dtype_from_name("", &t), 0);
    ck_assert_ptr_null(lh_dtype_name(LH_DTYPE_COUNT));
    ck_assert_uint_eq(lh_dtype_bits(LH_F4), 4);
    ck_assert_uint_eq(lh_dtype_bits(LH_F6_E3M2), 6);
    ck_assert_uint_eq(lh_dtype_bits(LH_BOOL), 8);
    ck_assert_uint_eq(lh_dtype_bits(LH_BF16), 16);
    ck_assert_uint_eq(lh_dtype_bits(LH_C64), 64);
    ck_assert_uint_eq(lh_dtype_bits(LH_U64), 64);
    ck_assert(lh_dtype_is_float(LH_F16) && lh_dtype_is_float(LH_F64));
    ck_assert(!lh_dtype_is_float(LH_I32) && !lh_dtype_is_float(LH_F8_E4M3));
}
END_TEST

START_TEST(test_f16_decode_known)
{
    ck_assert(lh_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(lh_f16_to_f32(0xc000) == -2.0f);
    ck_assert(lh_f16_to_f32(0x7bff) == 65504.0f);
    ck_assert(lh_f16_to_f32(0x0001) == 0x1p-24f);          /* smallest subnormal */
    ck_assert(lh_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);   /* largest subnormal */
    ck_assert(lh_f16_to_f32(0x0400) == 0x1p-14f);          /* smallest normal */
    ck_assert(lh_f16_to_f32(0x3555) == 0x1.554p-2f);
    ck_assert(isinf(lh_f16_to_f32(0x7c00)) && lh_f16_to_f32(0x7c00) > 0);
    ck_assert(isinf(lh_f16_to_f32(0xfc00)) && lh_f16_to_f32(0xfc00) < 0);
    ck_assert(isnan(lh_f16_to_f32(0x7e00)) && isnan(lh_f16_to_f32(0x7c01)));
    ck_assert(signbit(lh_f16_to_f32(0x8000)) && lh_f16_to_f32(0x8000) == 0);
}
END_TEST

START_TEST(test_f16_roundtrip_all)
{
    /* every non-NaN half survives half -> float -> half bit-exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = lh_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            LOOP_TRUE(isnan(lh_f16_to_f32(lh_f32_to_f16(f))));
            continue;
        }
        LOOP_EQ(lh_f32_to_f16(f), h);
    }
}
END_TEST

START_TEST(test_bf16_roundtrip_all)
{
    for (uint32_t b = 0; b < 0x10000; b++) {
        float f = lh_bf16_to_f32((uint16_t)b);
        LOOP_EQ(f32_bits(f), b << 16); /* decode is a plain shift */
        if (isnan(f)) {
            LOOP_TRUE(isnan(lh_bf16_to_f32(lh_f32_to_bf16(f))));
            continue;
        }
        LOOP_EQ(lh_f32_to_bf16(f), b);
    }
}
END_TEST

START_TEST(test_f16_rounding_vs_reference)
{
    /* every float between consecutive halves' exact midpoints, plus a sweep */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = lh_f16_to_f32((uint16_t)h);
        float hi = h + 1 < 0x7c00 ? lh_f16_to_f32((uint16_t)(h + 1)) : 65520.0f;
        float mid = (float)(((double)lo + hi) / 2); /* exact: halves have few bits */
        float probes[] = { mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), -mid };
        for (int k = 0; k < 4; k++)
            LOOP_EQ(lh_f32_to_f16(probes[k]), ref_f16(probes[k]));
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        float f = bits_f32((uint32_t)s);
        if (isnan(f)) {
            LOOP_TRUE(isnan(lh_f16_to_f32(lh_f32_to_f16(f))));
            continue;
        }
        if (isinf(f)) {
            LOOP_EQ(lh_f32_to_f16(f), signbit(f) ? 0xfc00 : 0x7c00);
            continue;
        }
        LOOP_EQ(lh_f32_to_f16(f), ref_f16(f));
    }
    /* f32 subnormals and the tie at half the smallest half subnormal */
    LOOP_EQ(lh_f32_to_f16(0x1p-25f), 0x0000);
    LOOP_EQ(lh_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
    LOOP_EQ(lh_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie to even */
    LOOP_EQ(lh_f32_to_f16(bits_f32(1)), 0x0000);
    LOOP_EQ(lh_f32_to_f16(-bits_f32(1)), 0x8000);
    LOOP_EQ(lh_f32_to_f16(65519.996f), 0x7bff);
    LOOP_EQ(lh_f32_to_f16(65520.0f), 0x7c00);
    LOOP_EQ(lh_f32_to_f16(1e10f), 0x7c00);
    LOOP_EQ(lh_f32_to_f16(-1e10f), 0xfc00);
}
END_TEST

START_TEST(test_bf16_rounding_vs_reference)
{
    uint64_t s = 0x1234567887654321ull;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        float f = bits_f32((uint32_t)s);
        if (!isfinite(f))
            continue;
        LOOP_EQ(lh_f32_to_bf16(f), ref_bf16(f));
    }
    LOOP_EQ(lh_f32_to_bf16(1.0f), 0x3f80);
    LOOP_EQ(lh_f32_to_bf16(bits_f32(0x3f808000)), 0x3f80); /* tie, even stays */
    LOOP_EQ(lh_f32_to_bf16(bits_f32(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    LOOP_EQ(lh_f32_to_bf16(bits_f32(0x7f7fffff)), 0x7f80); /* FLT_MAX -> Inf */
    LOOP_EQ(lh_f32_to_bf16(INFINITY), 0x7f80);
    /* a NaN whose payload lives only in the low bits must not become Inf */
    uint16_t n = lh_f32_to_bf16(bits_f32(0x7f800001));
    LOOP_TRUE(isnan(lh_bf16_to_f32(n)));
    n = lh_f32_to_f16(bits_f32(0xff800001));
    LOOP_TRUE(isnan(lh_f16_to_f32(n)) && (n & 0x8000));
}
END_TEST

START_TEST(test_bulk_convert)
{
    enum { N = 37 };
    float src[N], back[N];
    for (int i = 0; i < N; i++)
        src[i] = (float)(i - 18) * 0.37f;
    /* unaligned buffers on purpose: the API promises no alignment */
    unsigned char raw[8 * N + 1];
    lh_dtype ts[] = { LH_F32, LH_F64, LH_F16, LH_BF16 };
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(lh_convert_from_f32(ts[k], src, raw + 1, N), 0);
        ck_assert_int_eq(lh_convert_to_f32(ts[k], raw + 1, back, N), 0);
        for (int i = 0; i < N; i++) {
            float want = src[i];
            if (ts[k] == LH_F16)
                want = lh_f16_to_f32(lh_f32_to_f16(src[i]));
            else if (ts[k] == LH_BF16)
                want = lh_bf16_to_f32(lh_f32_to_bf16(src[i]));
            ck_assert(back[i] == want);
        }
    }
    /* little-endian layout of the serialized bytes */
    float one = 1.0f;
    ck_assert_int_eq(lh_convert_from_f32(LH_F16, &one, raw, 1), 0);
    ck_assert_uint_eq(raw[0], 0x00);
    ck_assert_uint_eq(raw[1], 0x3c);
    ck_assert_int_eq(lh_convert_from_f32(LH_BF16, &one, raw, 1), 0);
    ck_assert_uint_eq(raw[0], 0x80);
    ck_assert_uint_eq(raw[1], 0x3f);
    ck_assert_int_eq(lh_convert_to_f32(LH_I32, raw, back, 1), -1);
    ck_assert_int_eq(lh_convert_from_f32(LH_U8, src, raw, 1), -1);
    /* F64 -> F32 rounds to nearest */
    double d = 1.0 + 0x1p-24 + 0x1p-40;
    memcpy(raw, &d, 8);
    ck_assert_int_eq(lh_convert_to_f32(LH_F64, raw, back, 1), 0);
    ck_assert(back[0] == 1.0f + 0x1p-23f);
}
END_TEST

START_TEST(test_bulk_matches_scalar)
{
    /* the bulk loops use branch-free forms: they must agree bit for bit with
     * the scalar conversions, on every half and on many floats */
    enum { N = 1 << 16 };
    static uint16_t h[N], h2[N];
    static float f[N];
    for (uint32_t i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    ck_assert_int_eq(lh_convert_to_f32(LH_F16, h, f, N), 0);
    for (uint32_t i = 0; i < N; i++)
        LOOP_EQ(f32_bits(f[i]), f32_bits(lh_f16_to_f32((uint16_t)i)));
    ck_assert_int_eq(lh_convert_from_f32(LH_F16, f, h2, N), 0);
    for (uint32_t i = 0; i < N; i++)
        LOOP_EQ(h2[i], lh_f32_to_f16(f[i]));
    uint64_t s = 0x0123456789abcdefull;
    for (int round = 0; round < 64; round++) {
        for (uint32_t i = 0; i < N; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            /* half of them near the half range, where the cases are */
            uint32_t u = (uint32_t)s;
            if (i & 1)
                u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u));
            f[i] = bits_f32(u);
        }
        ck_assert_int_eq(lh_convert_from_f32(LH_F16, f, h2, N), 0);
        ck_assert_int_eq(lh_convert_from_f32(LH_BF16, f, h, N), 0);
        for (uint32_t i = 0; i < N; i++) {
            LOOP_EQ(h2[i], lh_f32_to_f16(f[i]));
            LOOP_EQ(h[i], lh_f32_to_bf16(f[i]));
        }
    }
}
END_TEST

static Suite *dtype_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_names_enum_order);
    tcase_add_test(tc, test_f16_decode_known);
    tcase_add_test(tc, test_f16_roundtrip_all);
    tcase_add_test(tc, test_bf16_roundtrip_all);
    tcase_add_test(tc, test_f16_rounding_vs_reference);
    tcase_add_test(tc, test_bf16_rounding_vs_reference);
    tcase_add_test(tc, test_bulk_convert);
    tcase_add_test(tc, test_bulk_matches_scalar);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dtype_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
