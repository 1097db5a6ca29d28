/* model/checkpoint.h - a Hugging Face checkpoint's tensors into the places
 * an architecture expects them (private to model/).
 *
 * An architecture lists every tensor its config implies (name, shape,
 * destination in its F32 blob); lh_ckpt_load reads dir/model.safetensors,
 * dir/pytorch_model.bin (a torch zip, lib/torchzip) or the shards of their
 * .index.json, in that order, checks each tensor's
 * shape and dtype (F32, F16, BF16), converts it into place and drops the
 * file's pages. Tensors the list does not name are an error unless the
 * architecture's ignorable() says Hugging Face ignores them too; a listed
 * tensor never found is an error naming it. */
#ifndef LH_MODEL_CHECKPOINT_H
#define LH_MODEL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/status.h"

/* One expected tensor: where it goes and its shape ([n0] or [n0, n1]). */
typedef struct lh_want {
    char name[128];
    float *dst;
    int ndim;
    int64_t shape[2];
    int found;
    int group;  /* > 0: the wants of one group are aliases of one tensor
                   with one dst (T5's shared / encoder.embed_tokens /
                   decoder.embed_tokens): any one of them suffices */
} lh_want;

typedef struct lh_want_list {
    lh_want *w;  /* [cap], n used */
    size_t n, cap;
    const char *model_type;  /* for "not part of a <model_type> model" */
    /* Optional: tensors the file may carry that the model does not use. */
    int (*ignorable)(const void *ctx, const char *name);
    const void *ctx;
} lh_want_list;

/* Append a want named by printf(fmt, ...), shape [d0] (d1 == 0) or [d0, d1];
 * the caller sized w for every want (a want past cap is dropped and then
 * reported missing by lh_ckpt_load). */
void lh_want_add(lh_want_list *l, float *dst, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

lh_status lh_ckpt_load(const char *dir, lh_want_list *l, lh_error *err);

#endif
