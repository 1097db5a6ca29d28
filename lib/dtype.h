/* lib/dtype.h - tensor element types and exact conversions.
 *
 * The enum follows the safetensors reference's Dtype enum order exactly, so
 * the writer can sort "by dtype descending" by comparing enum values. */
#ifndef LH_DTYPE_H
#define LH_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum lh_dtype {
    LH_BOOL, LH_F4, LH_F6_E2M3, LH_F6_E3M2, LH_U8, LH_I8, LH_F8_E5M2, LH_F8_E4M3,
    LH_F8_E8M0, LH_F8_E4M3FNUZ, LH_F8_E5M2FNUZ, LH_I16, LH_U16, LH_F16, LH_BF16,
    LH_I32, LH_U32, LH_F32, LH_C64, LH_F64, LH_I64, LH_U64,
    LH_DTYPE_COUNT
} lh_dtype;

/* "F32", "BF16", ...; NULL for an out-of-range value. */
const char *lh_dtype_name(lh_dtype t);
/* Parse a safetensors dtype name (case-sensitive). Returns 0 on success. */
int lh_dtype_from_name(const char *name, lh_dtype *out);
/* Size of one element in bits (4 for F4, 6 for F6_*, 8 for BOOL/U8, ...). */
unsigned lh_dtype_bits(lh_dtype t);
/* 1 for F16, BF16, F32, F64: the types lorahub converts to and from F32. */
int lh_dtype_is_float(lh_dtype t);

/* Exact scalar conversions; float -> half/bfloat round to nearest even,
 * NaN stays NaN, overflow goes to Inf. */
float lh_f16_to_f32(uint16_t h);
uint16_t lh_f32_to_f16(float f);
float lh_bf16_to_f32(uint16_t b);
uint16_t lh_f32_to_bf16(float f);

/* Convert n elements of little-endian src (dtype t, float types only) to
 * F32 dst, and back. src/dst need no particular alignment. Return 0 on
 * success, -1 if t is not a float type. */
int lh_convert_to_f32(lh_dtype t, const void *src, float *dst /* [n] */, size_t n);
int lh_convert_from_f32(lh_dtype t, const float *src /* [n] */, void *dst, size_t n);

#endif
