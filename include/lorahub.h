/* lorahub.h - the public C API of liblorahub, its only installed header.
 *
 * Compose LoRA adapters with weights and score them on few-shot examples
 * through a forward-pass backend, as `lorahub compose` and `lorahub eval`
 * do. Manual: lorahub(3). Build: cc prog.c $(pkg-config --cflags --libs lorahub)
 *
 * Conventions, the same for every function:
 *   - Functions that can fail return an lh_status (LH_OK = 0) and, on
 *     failure, fill *err (when err is not NULL) with a one-line message
 *     that names the file or setting at fault. The library never prints
 *     and never exits.
 *   - Objects are opaque and made by the library; each has one free or
 *     close function, and every one of those accepts NULL.
 *   - An out-pointer is set to NULL on failure.
 *   - Strings are UTF-8 and NUL-terminated; strings returned by the
 *     library belong to the object they came from.
 *
 * Stability: codes are only ever added at the end of lh_status; the
 * functions here keep their signatures within a major version. */
#ifndef LORAHUB_PUBLIC_H
#define LORAHUB_PUBLIC_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && __GNUC__ >= 4
#define LH_API __attribute__((visibility("default")))
#else
#define LH_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ------------------------------------------------------------
 * The macros are the header's version, the functions the library's: a
 * program can compare them to detect a header/library mismatch. The
 * Makefile reads the three numbers below (one definition). */
#define LH_VERSION_MAJOR 0
#define LH_VERSION_MINOR 1
#define LH_VERSION_PATCH 0
#define LH_VERSION_NUMBER (LH_VERSION_MAJOR * 10000 + LH_VERSION_MINOR * 100 + LH_VERSION_PATCH)

/* major*10000 + minor*100 + patch: 100 for 0.1.0. */
LH_API unsigned lh_version_number(void);
/* "0.1.0". */
LH_API const char *lh_version_string(void);

/* ---- Status and errors ---------------------------------------------- */
typedef enum lh_status {
    LH_OK = 0,
    LH_ERR_NOMEM = 1,       /* an allocation failed */
    LH_ERR_IO = 2,          /* open/read/write/mmap/rename failed */
    LH_ERR_FORMAT = 3,      /* a file is malformed (truncated, bad JSON, bad offsets) */
    LH_ERR_UNSUPPORTED = 4, /* well-formed, but lorahub cannot honour it (DoRA, ...) */
    LH_ERR_SHAPE = 5,       /* shapes disagree (A vs B, module vs module, model vs adapter) */
    LH_ERR_ARG = 6,         /* the caller passed a bad argument or option value */
    LH_ERR_EXISTS = 7,      /* the output exists and overwriting was not asked for */
    LH_ERR_NOT_FOUND = 8,   /* a file, key or tensor is missing */
    LH_ERR_NUMERIC = 9,     /* NaN/Inf where a number was needed, or LAPACK failed */
    LH_ERR_BACKEND = 10,    /* the forward-pass backend failed or misbehaved */
    LH_ERR_TIMEOUT = 11,    /* the backend did not answer in time */
    LH_ERR_INTERRUPTED = 12,/* stopped by a signal (SIGINT) or by the caller */
    LH_STATUS_COUNT         /* one past the last code; grows as codes are added */
} lh_status;

/* A per-call error: the code and a one-line message, e.g.
 *   "x.safetensors: tensor 'a' data_offsets [16,8] overlap the previous tensor".
 * Declare one on the stack ({0}) and pass its address. */
typedef struct lh_error {
    lh_status code;
    char msg[1024];
} lh_error;

/* Short, lowercase name of a code ("malformed file"); never NULL. */
LH_API const char *lh_strerror(lh_status s);
/* err's message if one was set, else lh_strerror(err->code); never NULL. */
LH_API const char *lh_error_message(const lh_error *err);

/* ---- Adapters ---------------------------------------------------------
 * An adapter is a set of adapted linear layers ("targets"), each
 * delta W = scale * B @ A with A [r, d_in] and B [d_out, r]. */
typedef struct lh_adapter lh_adapter;

/* Load a PEFT directory (adapter_config.json + adapter_model.safetensors),
 * a PEFT .safetensors file, a MoS .safetensors file (materialized; see
 * lorahub-mos(5)), or a llama.cpp GGUF LoRA adapter (lorahub-convert(1)). */
LH_API lh_status lh_adapter_load(const char *path, lh_adapter **out, lh_error *err);
/* Write a as a PEFT directory (atomically; every scale folded into B).
 * dtype: "f32" (or NULL), "f16" or "bf16". An existing dir is an
 * LH_ERR_EXISTS error unless overwrite is non-zero. */
LH_API lh_status lh_adapter_save(const lh_adapter *a, const char *dir, const char *dtype,
                                 int overwrite, lh_error *err);
LH_API void lh_adapter_free(lh_adapter *a);

/* Short name for reports (the directory or file basename; "" when made in
 * memory). */
LH_API const char *lh_adapter_name(const lh_adapter *a);
LH_API size_t lh_adapter_n_targets(const lh_adapter *a);
/* Largest rank over the targets (0 if none). */
LH_API int lh_adapter_max_rank(const lh_adapter *a);
/* Sum of r * (d_in + d_out) over the targets. */
LH_API uint64_t lh_adapter_n_params(const lh_adapter *a);
/* Target i (0 <= i < n_targets; targets are sorted by name): its module
 * name ("model.layers.3.self_attn.q_proj"), shape, and read-only F32
 * factors A [r, d_in] and B [d_out, r], row-major, valid as long as a.
 * Any out-pointer may be NULL. LH_ERR_ARG when i is out of range. */
LH_API lh_status lh_adapter_target(const lh_adapter *a, size_t i, const char **name, int *r,
                                   int *d_in, int *d_out, const float **A, const float **B,
                                   float *scale, lh_error *err);

/* ---- Compose ----------------------------------------------------------
 * Merge n modules with weights w [n] into a new adapter by method name:
 * "lorahub", "linear", "cat", "svd", "ties", "dare-linear", "dare-ties",
 * "magnitude-prune", and the "-svd" forms (lorahub-compose(1)), with that
 * command's defaults for the other settings. *out owns its tensors: the
 * modules may be freed right after. */
LH_API lh_status lh_adapter_compose(const char *method, const lh_adapter *const *modules,
                                    size_t n, const double *weights /* [n] */,
                                    lh_adapter **out, lh_error *err);

/* ---- Examples ---------------------------------------------------------
 * Few-shot input/output pairs: a JSONL file ("input"/"output" per line),
 * or a YAML/JSON list of such mappings; or strings from memory. */
typedef struct lh_examples lh_examples;

LH_API lh_status lh_examples_load(const char *path, lh_examples **out, lh_error *err);
/* Copies the n strings of input [n] and output [n]. */
LH_API lh_status lh_examples_from_arrays(const char *const *input, const char *const *output,
                                         size_t n, lh_examples **out, lh_error *err);
LH_API void lh_examples_free(lh_examples *ex);
LH_API size_t lh_examples_count(const lh_examples *ex);
/* Example i's strings, or NULL when i is out of range. */
LH_API const char *lh_examples_input(const lh_examples *ex, size_t i);
LH_API const char *lh_examples_output(const lh_examples *ex, size_t i);

/* ---- Backends ---------------------------------------------------------
 * A backend scores candidate adapters: loss[i] is the mean token
 * cross-entropy of the expected outputs of all examples under the base
 * model + cands[i] (NULL = the base model alone). The same candidates and
 * examples always give the same losses. A non-finite loss (NaN/Inf
 * weights) is not an error: it is returned in loss[i]. */
typedef struct lh_backend lh_backend;

/* Open a built-in backend ("native", "exec") with settings by job-file key
 * (lorahub-job(5)): settings = {"base", "MODEL_DIR", "threads", "2", ...,
 * NULL}, or NULL. A backend ignores keys it does not read; a missing
 * required key is an error naming it. lorahub-backend(7) lists the keys. */
LH_API lh_status lh_backend_new(const char *name, const char *const *settings,
                                lh_backend **out, lh_error *err);

/* Your own scorer: fill loss [n] for cands [n] (NULL entries = the base
 * model) on ex, return LH_OK, or another code with err->msg set (or left
 * empty: the library then says the scorer failed). Read the examples with
 * lh_examples_input/output and the candidates with lh_adapter_target. It
 * is never called with n == 0. */
typedef lh_status (*lh_score_fn)(void *user_data, const lh_adapter *const *cands /* [n] */,
                                 int n, const lh_examples *ex, double *loss /* [n] */,
                                 lh_error *err);
/* A backend named name that calls score(user_data, ...); user_data stays
 * the caller's and must outlive the backend. */
LH_API lh_status lh_backend_from_scorer(const char *name, lh_score_fn score, void *user_data,
                                        lh_backend **out, lh_error *err);

LH_API lh_status lh_backend_score(lh_backend *b, const lh_adapter *const *cands /* [n] */,
                                  int n, const lh_examples *ex, double *loss /* [n] */,
                                  lh_error *err);
/* How many tokens score averages over for ex (LH_ERR_UNSUPPORTED for a
 * scorer of your own). */
LH_API lh_status lh_backend_count_tokens(lh_backend *b, const lh_examples *ex,
                                         size_t *n_tokens, lh_error *err);
LH_API const char *lh_backend_name(const lh_backend *b);
LH_API void lh_backend_close(lh_backend *b);

/* ---- Search -----------------------------------------------------------
 * The weight search of `lorahub adapt`, set by job-file keys
 * (lorahub-job(5)): "modules", "examples", "base" or "backend-cmd",
 * "method", "optimizer", "budget", "select", "preset", "output", ... with
 * the preset's defaults (lorahub-adapt(1)) for the keys not set. Files are
 * written only where "output", "report" or "weights-out" ask for them. */
typedef struct lh_search lh_search;

LH_API lh_status lh_search_new(lh_search **out, lh_error *err);
/* Set one key from its text form, checked at once: an unknown key or a
 * bad value is an error naming the key. Relative paths are taken as
 * given (from the working directory). */
LH_API lh_status lh_search_set(lh_search *s, const char *key, const char *value,
                               lh_error *err);
/* Set the keys of a YAML job file (its relative paths are relative to it). */
LH_API lh_status lh_search_load_job(lh_search *s, const char *yaml_path, lh_error *err);
/* Load the modules and examples, and search. b: a backend of yours (it is
 * not closed), or NULL to open the one the settings name. Runs once. */
LH_API lh_status lh_search_run(lh_search *s, lh_backend *b, lh_error *err);
/* The result after a run: the modules in weight order, their weights (0
 * for modules preselection left out), the loss of the chosen point, the
 * number of evaluations, and the merged adapter (owned by s). Before a
 * run: 0, NULL or NaN. */
LH_API size_t lh_search_n_modules(const lh_search *s);
LH_API const char *lh_search_module_name(const lh_search *s, size_t i);
LH_API double lh_search_weight(const lh_search *s, size_t i);
LH_API double lh_search_best_loss(const lh_search *s);
LH_API int lh_search_evaluations(const lh_search *s);
LH_API const lh_adapter *lh_search_adapter(const lh_search *s);
LH_API void lh_search_free(lh_search *s);

#ifdef __cplusplus
}
#endif

#endif
