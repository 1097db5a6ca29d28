/* api/lorahub.c - the public API's own functions (include/lorahub.h).
 *
 * A thin facade over the internals: where an internal function already
 * has the public signature (lh_adapter_load, lh_backend_score, ...), the
 * public header declares that very function with LH_API and nothing is
 * written here. What is here turns public arguments (names, key/value
 * lists, a callback) into the internal structs, so those structs can
 * change without breaking a program built against the shared library. */
#include "include/lorahub.h"

#include <stdlib.h>
#include <string.h>

#include "adapt/backend/backend.h"
#include "compose/compose.h"
#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/peft.h"
#include "lib/status.h"

unsigned lh_version_number(void)
{
    return LH_VERSION_NUMBER;
}

#define LH_STR2(x) #x
#define LH_STR(x) LH_STR2(x)

const char *lh_version_string(void)
{
    return LH_STR(LH_VERSION_MAJOR) "." LH_STR(LH_VERSION_MINOR) "." LH_STR(LH_VERSION_PATCH);
}

lh_status lh_adapter_save(const lh_adapter *a, const char *dir, const char *dtype, int overwrite,
                          lh_error *err)
{
    if (!a || !dir)
        return lh_error_set(err, LH_ERR_ARG, "save: no adapter or no directory");
    lh_peft_save_opts o = {.dtype = LH_F32, .force = overwrite != 0};
    if (!dtype || !strcmp(dtype, "f32"))
        o.dtype = LH_F32;
    else if (!strcmp(dtype, "f16"))
        o.dtype = LH_F16;
    else if (!strcmp(dtype, "bf16"))
        o.dtype = LH_BF16;
    else
        return lh_error_one_line(lh_error_set(err, LH_ERR_ARG,
                                              "%s: dtype '%s' is not f32, f16 or bf16", dir,
                                              dtype),
                                 err);
    return lh_peft_save(a, dir, &o, err);
}

const char *lh_adapter_name(const lh_adapter *a)
{
    if (!a)
        return NULL;
    return a->name ? a->name : "";
}

size_t lh_adapter_n_targets(const lh_adapter *a)
{
    return a ? a->n_targets : 0;
}

lh_status lh_adapter_target(const lh_adapter *a, size_t i, const char **name, int *r, int *d_in,
                            int *d_out, const float **A, const float **B, float *scale,
                            lh_error *err)
{
    if (!a || i >= a->n_targets)
        return lh_error_set(err, LH_ERR_ARG, "%s: no target %zu (it has %zu)",
                            a && a->name ? a->name : "adapter", i, a ? a->n_targets : 0);
    const lh_target *t = &a->targets[i];
    if (name)
        *name = t->name;
    if (r)
        *r = t->r;
    if (d_in)
        *d_in = t->d_in;
    if (d_out)
        *d_out = t->d_out;
    if (A)
        *A = t->A;
    if (B)
        *B = t->B;
    if (scale)
        *scale = t->scale;
    return LH_OK;
}

lh_status lh_adapter_compose(const char *method, const lh_adapter *const *modules, size_t n,
                             const double *weights, lh_adapter **out, lh_error *err)
{
    if (out)
        *out = NULL;
    if (!out || !modules || !weights || n == 0)
        return lh_error_set(err, LH_ERR_ARG, "compose: no modules, weights or output");
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    if (lh_merge_method_from_name(method, &o.method))
        return lh_error_one_line(lh_error_set(err, LH_ERR_ARG,
                                              "compose: no merge method named '%s'",
                                              method ? method : "(null)"),
                                 err);
    return lh_compose(modules, n, weights, &o, out, err);
}

size_t lh_examples_count(const lh_examples *ex)
{
    return ex ? ex->n : 0;
}

const char *lh_examples_input(const lh_examples *ex, size_t i)
{
    return ex && i < ex->n ? ex->input[i] : NULL;
}

const char *lh_examples_output(const lh_examples *ex, size_t i)
{
    return ex && i < ex->n ? ex->output[i] : NULL;
}

lh_status lh_backend_new(const char *name, const char *const *settings, lh_backend **out,
                         lh_error *err)
{
    if (!out)
        return lh_error_set(err, LH_ERR_ARG, "backend: no output pointer");
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = settings;
    return lh_error_one_line(lh_backend_open(name, &o, out, err), err);
}

/* A user's scorer behind the internal vtable: the vtable lives in the
 * same allocation as the callback, and close frees both. */
typedef struct user_scorer {
    lh_backend_i iface;
    char *name;
    lh_score_fn score;
    void *user_data;
} user_scorer;

static const lh_backend_key no_keys[] = {{NULL, 0, NULL}};

static lh_status user_score(void *ctx, const lh_adapter *const *cands, int n,
                            const lh_examples *ex, double *loss, lh_error *err)
{
    const user_scorer *s = ctx;
    /* A fresh error, so a message left in the caller's struct by an earlier
     * call is not taken for the scorer's own. */
    lh_error mine = {0};
    lh_status st = s->score(s->user_data, cands, n, ex, loss, &mine);
    if (st == LH_OK)
        return LH_OK;
    if ((int)st < 0 || st >= LH_STATUS_COUNT)
        st = LH_ERR_BACKEND;
    mine.msg[sizeof mine.msg - 1] = '\0';
    if (mine.msg[0])
        lh_error_set(err, st, "scorer '%s': %s", s->name, mine.msg);
    else
        lh_error_set(err, st, "scorer '%s' failed: %s", s->name, lh_strerror(st));
    return lh_error_one_line(st, err);
}

static void user_close(void *ctx)
{
    user_scorer *s = ctx;
    free(s->name);
    free(s);
}

lh_status lh_backend_from_scorer(const char *name, lh_score_fn score, void *user_data,
                                 lh_backend **out, lh_error *err)
{
    if (!out)
        return lh_error_set(err, LH_ERR_ARG, "scorer: no output pointer");
    *out = NULL;
    if (!score)
        return lh_error_set(err, LH_ERR_ARG, "scorer '%s': no score function",
                            name ? name : "(null)");
    user_scorer *s = calloc(1, sizeof *s);
    char *copy = strdup(name && *name ? name : "scorer");
    if (!s || !copy) {
        free(s);
        free(copy);
        return lh_error_set(err, LH_ERR_NOMEM, "scorer: out of memory");
    }
    s->name = copy;
    s->score = score;
    s->user_data = user_data;
    s->iface.name = copy;
    s->iface.summary = "a scorer given through the library API";
    s->iface.keys = no_keys;
    s->iface.score = user_score;
    s->iface.close = user_close;
    lh_status st = lh_backend_wrap(&s->iface, s, out, err);
    if (st != LH_OK)
        user_close(s);
    return st;
}
