/* lib/gguf.h - the GGUF container (reader and writer) and GGUF LoRA adapters.
 *
 * Container (ggml's gguf.cpp and docs/gguf.md): "GGUF", u32 version (2 or
 * 3; 3 is written), u64 tensor count, u64 key/value count, the key/value
 * pairs (u64-length strings, u32 value types, arrays of one scalar or
 * string type), the tensor infos (name < 64 bytes, u32 n_dims <= 4, i64
 * ne[], u32 ggml type, u64 offset), padding to general.alignment (u32,
 * a power of two, 32 by default), then the data: each tensor at exactly the
 * running total of the previous tensors' sizes padded to the alignment.
 * The reader checks every one of these rules (and counts and lengths against
 * the file size, overflow of dims and byte sizes, duplicate keys and tensor
 * names) and refuses a file with one line naming it and the rule broken.
 * The writer writes to a temp file renamed into place (lib/fsutil.h).
 *
 * LoRA adapters as llama.cpp loads them (src/llama-adapter.cpp):
 * general.type "adapter", general.architecture (the base's), adapter.type
 * "lora", adapter.lora.alpha FLOAT32; tensors "<base tensor>.lora_a" holding
 * PEFT's lora_A [r, in] bytes as they are (ggml ne [in, r]) and
 * "<base tensor>.lora_b" holding lora_B [out, r] (ne [r, out]). llama.cpp
 * applies user_scale * alpha / r with r read from each lora_b. The HF <-> GGUF
 * names and the q/k row permutation follow llama.cpp's convert_hf_to_gguf /
 * convert_lora_to_gguf: see lib/gguf_lora.c. */
#ifndef LH_GGUF_H
#define LH_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "adapter.h"
#include "dtype.h"
#include "status.h"

#define LH_GGUF_MAX_DIMS 4
#define LH_GGUF_MAX_NAME 64             /* a tensor name is shorter than this */
#define LH_GGUF_DEFAULT_ALIGNMENT 32

/* Value types of the key/value section. */
typedef enum lh_gguf_type {
    LH_GGUF_UINT8 = 0, LH_GGUF_INT8 = 1, LH_GGUF_UINT16 = 2, LH_GGUF_INT16 = 3,
    LH_GGUF_UINT32 = 4, LH_GGUF_INT32 = 5, LH_GGUF_FLOAT32 = 6, LH_GGUF_BOOL = 7,
    LH_GGUF_STRING = 8, LH_GGUF_ARRAY = 9, LH_GGUF_UINT64 = 10, LH_GGUF_INT64 = 11,
    LH_GGUF_FLOAT64 = 12,
    LH_GGUF_TYPE_COUNT
} lh_gguf_type;

/* ggml tensor types lorahub converts (the others are only sized). */
#define LH_GGML_F32 0u
#define LH_GGML_F16 1u
#define LH_GGML_BF16 30u

typedef struct lh_gguf_kv {
    char *key;
    lh_gguf_type type;      /* of the value, or of the elements when is_array */
    int is_array;
    uint64_t n;             /* elements (1 for a scalar) */
    const uint8_t *data;    /* numbers: n little-endian values in the file; strings:
                               the first u64 length prefix in the file */
    char *str;              /* a STRING scalar: NUL-terminated copy (else NULL) */
} lh_gguf_kv;

typedef struct lh_gguf_tensor {
    char *name;
    uint32_t type;          /* ggml type id */
    int n_dims;
    int64_t ne[LH_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the row length; unused dims 1 */
    uint64_t offset;        /* in the data section */
    uint64_t nbytes;        /* unpadded size */
    const void *data;       /* in the file; NULL when parsed with LH_GGUF_KV_ONLY */
} lh_gguf_tensor;

typedef struct lh_gguf {
    char *path;             /* file name or origin, for messages */
    const uint8_t *base;    /* the whole file */
    size_t size;
    int mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;   /* start of the data section in the file */
    size_t n_kv;
    lh_gguf_kv *kv;         /* [n_kv], file order */
    size_t n_tensors;
    lh_gguf_tensor *tensors; /* [n_tensors], file order */
} lh_gguf;

typedef enum lh_gguf_mode {
    LH_GGUF_FULL = 0,    /* everything, data included */
    LH_GGUF_KV_ONLY = 1  /* stop after the key/value pairs (a base model's header) */
} lh_gguf_mode;

lh_status lh_gguf_open(const char *path, lh_gguf_mode mode, lh_gguf **out, lh_error *err);
/* buf must outlive the result; origin names it in messages (the fuzzer). */
lh_status lh_gguf_parse(const void *buf, size_t size, const char *origin, lh_gguf_mode mode,
                        lh_gguf **out, lh_error *err);
void lh_gguf_free(lh_gguf *g);
/* 1 when the file at path starts with "GGUF". */
int lh_gguf_sniff(const char *path);

const lh_gguf_kv *lh_gguf_find_kv(const lh_gguf *g, const char *key);
const lh_gguf_tensor *lh_gguf_find_tensor(const lh_gguf *g, const char *name);
/* A scalar of any integer type (bool too) as int64 (UINT64 above INT64_MAX: 0). */
int lh_gguf_kv_int(const lh_gguf_kv *kv, int64_t *out);
const char *lh_gguf_type_name(lh_gguf_type t);
/* ggml type name ("F16", "Q8_0"), or NULL for an id ggml does not define. */
const char *lh_ggml_type_name(uint32_t type);

/* Writer: scalars only (strings, u32, f32), which is all a LoRA needs. */
typedef struct lh_gguf_out_kv {
    const char *key;
    lh_gguf_type type;      /* LH_GGUF_STRING, LH_GGUF_UINT32 or LH_GGUF_FLOAT32 */
    const char *str;
    uint32_t u32;
    float f32;
} lh_gguf_out_kv;

typedef struct lh_gguf_out_tensor {
    const char *name;
    uint32_t type;          /* LH_GGML_F32, LH_GGML_F16 or LH_GGML_BF16 */
    int n_dims;
    int64_t ne[LH_GGUF_MAX_DIMS];
    const void *data;       /* ggml_nbytes bytes, little-endian */
} lh_gguf_out_tensor;

/* Version 3, default alignment, tensors in the given order. Names and keys
 * are checked (length, duplicates) before anything is written. */
lh_status lh_gguf_serialize(const lh_gguf_out_kv *kv, size_t n_kv,
                            const lh_gguf_out_tensor *t, size_t n_t,
                            uint8_t **out, size_t *out_size, lh_error *err);
/* The same, streamed to path atomically (temp file + fsync + rename). */
lh_status lh_gguf_write(const char *path, const lh_gguf_out_kv *kv, size_t n_kv,
                        const lh_gguf_out_tensor *t, size_t n_t, lh_error *err);

/* ---- LoRA adapters ---- */

/* The base model facts a GGUF LoRA needs: the GGUF architecture name (an HF
 * "mistral" is "llama" in GGUF, as llama.cpp's converter writes it), the
 * layer count and the head counts for llama's q/k row permutation. */
typedef struct lh_gguf_arch {
    char arch[64];
    int n_layers, n_head, n_head_kv;
    int ffn_gated;   /* T5: 1 for wi_0/wi_1 (gated-gelu), 0 for wi, -1 unknown */
} lh_gguf_arch;

/* From an HF model directory's config.json (model_type, num_hidden_layers /
 * num_layers, num_attention_heads / num_heads, num_key_value_heads). */
lh_status lh_gguf_arch_from_config(const char *hf_model_dir, lh_gguf_arch *out, lh_error *err);
/* From a base model GGUF's key/value header only: general.architecture,
 * <arch>.block_count, <arch>.attention.head_count(_kv). */
lh_status lh_gguf_arch_from_model(const char *gguf_model_path, lh_gguf_arch *out,
                                  lh_error *err);
/* A directory (config.json) or a .gguf model file. */
lh_status lh_gguf_arch_from_base(const char *base, lh_gguf_arch *out, lh_error *err);

typedef struct lh_gguf_save_opts {
    lh_dtype dtype;   /* LH_F32, LH_F16 or LH_BF16; 0 (LH_BOOL): the adapter's own
                         dtype when it is one of those, else F32 */
    int force;        /* replace an existing file (without opts: replaced) */
} lh_gguf_save_opts;

/* Write a as a llama.cpp LoRA adapter for arch (required: its name map and,
 * for llama, the head counts). alpha is chosen so that most targets keep
 * their bytes (alpha/r == scale); any other target's scale is folded into B,
 * so that user_scale 1 in llama.cpp means exactly a's delta. Also writes
 * lorahub.attention.head_count(_kv), lorahub.block_count and, when known,
 * lorahub.ffn_gated, base_model and task_type (llama.cpp ignores them). */
lh_status lh_gguf_save_lora(const lh_adapter *a, const lh_gguf_arch *arch, const char *path,
                            lh_error *err);
lh_status lh_gguf_save_lora_opts(const lh_adapter *a, const lh_gguf_arch *arch,
                                 const char *path, const lh_gguf_save_opts *opts,
                                 lh_error *err);
/* Read a GGUF LoRA back to HF names and layout (the q/k permutation undone).
 * arch: the base the adapter must be for (its arch is compared, its head
 * counts used); NULL: the file's own keys (lorahub's head counts, else a
 * permuting arch is refused asking for --base). scale = alpha/r per target
 * (1 when alpha is 0 or missing, as in llama.cpp). */
lh_status lh_gguf_load_lora(const char *path, const lh_gguf_arch *arch, lh_adapter **out,
                            lh_error *err);
/* The same from a parsed container (g->path names it in messages). */
lh_status lh_gguf_lora_read(const lh_gguf *g, const lh_gguf_arch *arch, lh_adapter **out,
                            lh_error *err);
/* Any module lh_adapter_load reads; a GGUF one read against base (NULL: its
 * own keys). */
lh_status lh_gguf_load_module(const char *path, const lh_gguf_arch *base, lh_adapter **out,
                              lh_error *err);

#endif
