/* adapt/evaluate.c - loss and exact match of one adapter on examples. */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* malloc'd: s without surrounding ASCII whitespace, ASCII-lowercased, one
 * trailing period dropped. */
static char *em_normalize(const char *s)
{
    const char *ws = " \t\n\r\f\v";
    while (*s && strchr(ws, *s))
        s++;
    size_t n = strlen(s);
    while (n && strchr(ws, s[n - 1]))
        n--;
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++)
        o[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    if (n && o[n - 1] == '.')
        n--;
    o[n] = '\0';
    return o;
}

int lh_exact_match(const char *got, const char *want)
{
    if (!got || !want)
        return 0;
    char *a = em_normalize(got), *b = em_normalize(want);
    int eq = a && b && !strcmp(a, b);
    free(a);
    free(b);
    return eq;
}

void lh_eval_result_release(lh_eval_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->outputs && i < res->n; i++)
        free(res->outputs[i]);
    free(res->outputs);
    free(res->match);
    memset(res, 0, sizeof *res);
}

lh_status lh_evaluate(lh_backend *b, const lh_adapter *cand, const lh_examples *ex,
                      const lh_eval_opts *o, lh_eval_result *res, lh_error *err)
{
    memset(res, 0, sizeof *res);
    if (!b || !ex || !o)
        return lh_error_set(err, LH_ERR_ARG, "evaluate: bad arguments");
    res->n = ex->n;
    lh_status st = LH_OK;
    if (o->want_loss) {
        st = lh_backend_score(b, &cand, 1, ex, &res->loss, err);
        if (st == LH_OK && !isfinite(res->loss)) {
            /* A backend may answer a non-finite loss (backend.h); as a
             * measurement it is an error, naming the model or command. */
            lh_backend_info info;
            lh_backend_describe(b, &info);
            st = lh_error_set(err, LH_ERR_NUMERIC, "%s: the loss is %s", info.description,
                              isnan(res->loss) ? "NaN" : "infinite");
        }
        if (st == LH_OK && lh_backend_iface(b)->count_tokens) {
            st = lh_backend_count_tokens(b, ex, &res->tokens, err);
            res->have_tokens = st == LH_OK;
        }
    }
    if (st == LH_OK && o->want_exact_match) {
        size_t n = ex->n ? ex->n : 1;
        res->outputs = calloc(n, sizeof *res->outputs);
        res->match = calloc(n, sizeof *res->match);
        if (!res->outputs || !res->match)
            st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        else
            st = lh_backend_generate(b, cand, ex, o->max_new_tokens, res->outputs, err);
        for (size_t i = 0; st == LH_OK && i < ex->n; i++) {
            res->match[i] = lh_exact_match(res->outputs[i], ex->output[i]);
            res->correct += (size_t)res->match[i];
        }
    }
    if (st != LH_OK)
        lh_eval_result_release(res);
    return st;
}
