/* lib/safetensors.h - the safetensors container: reader and writer.
 *
 * Reader: mmap()s the file and enforces every rule of the reference
 * implementation (huggingface/safetensors tensor.rs): 8-byte little-endian
 * header length N; N <= 100,000,000; 8+N within the file; UTF-8 JSON;
 * known dtypes; shape products without overflow; byte sizes matching
 * data_offsets; offsets tiling the data buffer from 0 with no gap, overlap
 * or duplicate once sorted; no trailing bytes; __metadata__ string->string.
 *
 * Writer: byte-compatible with the reference: __metadata__ first, tensors
 * ordered by dtype descending (enum order) then by name bytewise, compact
 * JSON with fields dtype, shape, data_offsets, header padded with spaces to
 * a multiple of 8. Written to a temp file in the same directory, then
 * renamed, so a failure never leaves a half-written file. */
#ifndef LH_SAFETENSORS_H
#define LH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "status.h"

#define LH_ST_MAX_DIMS 8
#define LH_ST_MAX_HEADER 100000000ULL

typedef struct lh_st_tensor {
    char *name;
    lh_dtype dtype;
    int ndim;
    int64_t shape[LH_ST_MAX_DIMS];
    uint64_t numel;        /* product of shape (1 for a scalar) */
    uint64_t begin, end;   /* data_offsets, relative to the data buffer */
    const void *data;      /* points into the mapping: [end-begin] bytes */
} lh_st_tensor;

typedef struct lh_safetensors {
    char *path;            /* file it came from, or the origin name */
    const uint8_t *base;   /* the whole file (mapping or caller's buffer) */
    size_t size;           /* file size in bytes */
    int mapped;            /* base is our mmap (munmap on free) */
    int fd;                /* the open file (lh_st_open), else -1: lh_st_read_f32
                              uses pread(), which beats faulting the mapping in */
    size_t n_tensors;
    lh_st_tensor *tensors; /* [n_tensors], in header (file) order */
    size_t n_meta;
    char **meta_keys;      /* [n_meta] */
    char **meta_values;    /* [n_meta] */
} lh_safetensors;

/* Open and validate a file (mmap, read-only). */
lh_status lh_st_open(const char *path, lh_safetensors **out, lh_error *err);
/* Validate an in-memory buffer (not copied: it must outlive the result).
 * origin names it in error messages. Used by the fuzzer. */
lh_status lh_st_parse(const void *buf, size_t size, const char *origin,
                      lh_safetensors **out, lh_error *err);
void lh_st_free(lh_safetensors *st);
/* Open path read-only, map it, and hand the mapping to parse (lh_st_parse,
 * lh_torch_parse, ...); the result owns the mapping and the descriptor. */
typedef lh_status (*lh_st_parser)(const void *buf, size_t size, const char *origin,
                                  lh_safetensors **out, lh_error *err);
lh_status lh_st_open_as(const char *path, lh_st_parser parse, lh_safetensors **out,
                        lh_error *err);

const lh_st_tensor *lh_st_find(const lh_safetensors *st, const char *name);
/* Metadata value for key, or NULL. */
const char *lh_st_meta(const lh_safetensors *st, const char *key);

/* Copy a float tensor's data to dst as F32 (exact conversion). Errors if the
 * dtype is not F16/BF16/F32/F64. Reads with pread() when the file is open
 * (several times faster than touching the mapping on a VM; see
 * docs/performance.md), so dst is the only memory it touches. */
lh_status lh_st_read_f32(const lh_safetensors *st, const lh_st_tensor *t,
                         float *dst /* [t->numel] */, lh_error *err);
/* Zero-copy view when the tensor is F32 and 4-byte aligned in memory, else
 * NULL (then use lh_st_read_f32). */
const float *lh_st_f32_view(const lh_st_tensor *t);

/* One tensor to write: data holds numel elements of dtype, little-endian. */
typedef struct lh_st_entry {
    const char *name;
    lh_dtype dtype;
    int ndim;
    int64_t shape[LH_ST_MAX_DIMS];
    const void *data;
} lh_st_entry;

/* Serialize to memory (header + data). meta_keys/meta_values: n_meta pairs
 * (written in the given order; PEFT writes exactly {"format":"pt"}). */
lh_status lh_st_serialize(const lh_st_entry *entries, size_t n,
                          const char *const *meta_keys, const char *const *meta_values,
                          size_t n_meta, uint8_t **out, size_t *out_size, lh_error *err);
/* Write atomically to path (temp file + fsync + rename). Streams the tensor
 * data; does not build the whole file in memory. */
lh_status lh_st_write(const char *path, const lh_st_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values,
                      size_t n_meta, lh_error *err);

#endif
