/* tests/tools/test_backend.c - an exec backend with a known optimum.
 *
 *   test_backend --target DIR=W [--target DIR=W ...] [mode]
 *
 * The "model" is a target delta per adapted layer built from fixture
 * modules with known weights:  T = sum_i W_i * scale_i * B_i A_i.
 * A candidate adapter (read from disk with lh_adapter_load, as lorahub
 * wrote it) scores
 *     loss = sum_t ||scale_t B_t A_t - T_t||_F^2 / sum_t ||T_t||_F^2
 * so with the cat method (an exact sum of the deltas) and linearly
 * independent modules the optimum is w = W with loss 0.
 *
 * Modes that misbehave on purpose (for the error paths of the exec bridge):
 *   --crash-after N   exit(3) on the (N+1)th score request, without answering
 *   --segv            die of SIGSEGV on a score request
 *   --negative        answer every loss as -0.5
 *   --hang            never answer a score request
 *   --hang-after N    answer N score requests, then never answer again
 *   --garbage         answer score requests with a line that is not JSON
 *   --nan             every second candidate's loss is null or "NaN"
 *   --wrong-length    one loss fewer than candidates
 *   --error MSG       answer score requests with {"ok":false,"error":MSG}
 *   --slow-hello      sleep 30 s before answering hello
 *   --log FILE        append one line per score request: its candidate count
 *   --double          answer score requests twice
 *   --generate        answer generate with the inputs upper-cased
 *   --strict-examples refuse a score request whose examples file is not a
 *                     regular file of JSONL lines, each an object with
 *                     string "input" and "output" (what lorahub-backend(7)
 *                     promises) */
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/json.h"
#include "lib/strbuf.h"

typedef struct dense {
    char *name;
    int d_out, d_in;
    double *m;  /* [d_out, d_in] */
} dense;

static dense *targets;
static size_t n_targets;
static double t_norm2;

static dense *find_or_add(const char *name, int d_out, int d_in)
{
    for (size_t i = 0; i < n_targets; i++)
        if (!strcmp(targets[i].name, name)) {
            if (targets[i].d_out != d_out || targets[i].d_in != d_in) {
                fprintf(stderr, "test_backend: shape mismatch for %s\n", name);
                exit(2);
            }
            return &targets[i];
        }
    targets = realloc(targets, (n_targets + 1) * sizeof *targets);
    dense *d = &targets[n_targets++];
    d->name = strdup(name);
    d->d_out = d_out;
    d->d_in = d_in;
    d->m = calloc((size_t)d_out * (size_t)d_in, sizeof *d->m);
    return d;
}

/* acc += c * scale * B A */
static void add_delta(double *acc, const lh_target *t, double c)
{
    for (int o = 0; o < t->d_out; o++)
        for (int k = 0; k < t->r; k++) {
            double b = c * t->scale * t->B[(size_t)o * t->r + k];
            if (b == 0)
                continue;
            const float *a = t->A + (size_t)k * t->d_in;
            double *row = acc + (size_t)o * t->d_in;
            for (int i = 0; i < t->d_in; i++)
                row[i] += b * a[i];
        }
}

static double loss_of(const char *dir)
{
    lh_adapter *a;
    lh_error err;
    if (lh_adapter_load(dir, &a, &err) != LH_OK) {
        fprintf(stderr, "test_backend: %s\n", lh_error_message(&err));
        return NAN;
    }
    double num = 0;
    for (size_t i = 0; i < n_targets; i++) {
        dense *d = &targets[i];
        size_t sz = (size_t)d->d_out * (size_t)d->d_in;
        double *diff = malloc(sz * sizeof *diff);
        for (size_t k = 0; k < sz; k++)
            diff[k] = -d->m[k];
        const lh_target *t = lh_adapter_find(a, d->name);
        if (t && t->d_out == d->d_out && t->d_in == d->d_in)
            add_delta(diff, t, 1.0);
        for (size_t k = 0; k < sz; k++)
            num += diff[k] * diff[k];
        free(diff);
    }
    /* Layers the target does not adapt count fully as error. */
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        int known = 0;
        for (size_t k = 0; k < n_targets; k++)
            known |= !strcmp(targets[k].name, t->name);
        if (known)
            continue;
        size_t sz = (size_t)t->d_out * (size_t)t->d_in;
        double *acc = calloc(sz, sizeof *acc);
        add_delta(acc, t, 1.0);
        for (size_t k = 0; k < sz; k++)
            num += acc[k] * acc[k];
        free(acc);
    }
    lh_adapter_free(a);
    return num / t_norm2;
}

/* The examples file is a regular file of JSONL objects with string input
 * and output, as the protocol promises. */
static int strict_jsonl(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ok = 1, lines = 0;
    while (ok && (len = getline(&line, &cap, f)) > 0) {
        lh_json *j = NULL;
        lh_error err;
        const char *s;
        ok = lh_json_parse(line, (size_t)len, path, &j, &err) == LH_OK && j->type == LH_JSON_OBJECT &&
             lh_json_as_string(lh_json_get(j, "input"), &s) &&
             lh_json_as_string(lh_json_get(j, "output"), &s);
        lh_json_free(j);
        lines++;
    }
    free(line);
    fclose(f);
    return ok && lines > 0;
}

static void reply(const char *s)
{
    fputs(s, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    long crash_after = -1, hang_after = -1;
    int twice = 0;
    int hang = 0, garbage = 0, nan_mode = 0, wrong_length = 0, slow_hello = 0, gen = 0;
    int strict = 0, segv = 0, negative = 0;
    const char *error_msg = NULL, *log_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--target") && i + 1 < argc) {
            char *spec = strdup(argv[++i]);
            char *eq = strrchr(spec, '=');
            if (!eq) {
                fprintf(stderr, "test_backend: --target DIR=W\n");
                return 2;
            }
            *eq = '\0';
            double w = atof(eq + 1);
            lh_adapter *m;
            lh_error err;
            if (lh_adapter_load(spec, &m, &err) != LH_OK) {
                fprintf(stderr, "test_backend: %s\n", lh_error_message(&err));
                return 2;
            }
            for (size_t t = 0; t < m->n_targets; t++) {
                const lh_target *tg = &m->targets[t];
                add_delta(find_or_add(tg->name, tg->d_out, tg->d_in)->m, tg, w);
            }
            lh_adapter_free(m);
            free(spec);
        } else if (!strcmp(a, "--crash-after") && i + 1 < argc) {
            crash_after = atol(argv[++i]);
        } else if (!strcmp(a, "--hang")) {
            hang = 1;
        } else if (!strcmp(a, "--hang-after") && i + 1 < argc) {
            hang_after = atol(argv[++i]);
        } else if (!strcmp(a, "--garbage")) {
            garbage = 1;
        } else if (!strcmp(a, "--nan")) {
            nan_mode = 1;
        } else if (!strcmp(a, "--wrong-length")) {
            wrong_length = 1;
        } else if (!strcmp(a, "--error") && i + 1 < argc) {
            error_msg = argv[++i];
        } else if (!strcmp(a, "--slow-hello")) {
            slow_hello = 1;
        } else if (!strcmp(a, "--log") && i + 1 < argc) {
            log_path = argv[++i];
        } else if (!strcmp(a, "--double")) {
            twice = 1;
        } else if (!strcmp(a, "--segv")) {
            segv = 1;
        } else if (!strcmp(a, "--negative")) {
            negative = 1;
        } else if (!strcmp(a, "--strict-examples")) {
            strict = 1;
        } else if (!strcmp(a, "--generate")) {
            gen = 1;
        } else {
            fprintf(stderr, "test_backend: unknown argument '%s'\n", a);
            return 2;
        }
    }
    t_norm2 = 0;
    for (size_t i = 0; i < n_targets; i++)
        for (size_t k = 0; k < (size_t)targets[i].d_out * (size_t)targets[i].d_in; k++)
            t_norm2 += targets[i].m[k] * targets[i].m[k];
    if (!(t_norm2 > 0))
        t_norm2 = 1; /* no target: loss = ||delta||^2, optimum at w = 0 */

    char *line = NULL;
    size_t cap = 0;
    long scores = 0, cands_seen = 0;
    while (getline(&line, &cap, stdin) > 0) {
        lh_json *req;
        lh_error err;
        if (lh_json_parse(line, strlen(line), "request", &req, &err) != LH_OK) {
            fprintf(stderr, "test_backend: %s\n", lh_error_message(&err));
            return 2;
        }
        const char *op = "";
        lh_json_as_string(lh_json_get(req, "op"), &op);
        lh_sb out;
        lh_sb_init(&out);
        if (!strcmp(op, "hello")) {
            if (slow_hello)
                sleep(30);
            reply("{\"ok\":true,\"protocol\":1,\"name\":\"test_backend\"}");
        } else if (!strcmp(op, "bye")) {
            reply("{\"ok\":true}");
            lh_json_free(req);
            break;
        } else if (!strcmp(op, "score")) {
            const lh_json *ads = lh_json_get(req, "adapters");
            const char *exp;
            if (!ads || ads->type != LH_JSON_ARRAY ||
                !lh_json_as_string(lh_json_get(req, "examples"), &exp) || access(exp, R_OK) != 0) {
                reply("{\"ok\":false,\"error\":\"bad score request\"}");
                lh_json_free(req);
                continue;
            }
            if (strict && !strict_jsonl(exp)) {
                reply("{\"ok\":false,\"error\":\"the examples are not a JSONL file\"}");
                lh_json_free(req);
                continue;
            }
            if (crash_after >= 0 && scores >= crash_after)
                exit(3);
            if (segv) {
                signal(SIGSEGV, SIG_DFL);
                raise(SIGSEGV);
            }
            if (hang_after >= 0 && scores >= hang_after)
                hang = 1;
            scores++;
            if (log_path) {
                FILE *f = fopen(log_path, "a");
                if (f) {
                    fprintf(f, "%zu\n", ads->len);
                    fclose(f);
                }
            }
            if (hang)
                for (;;)
                    pause();
            if (garbage) {
                reply("Traceback (most recent call last): oops");
            } else if (error_msg) {
                lh_sb_append(&out, "{\"ok\":false,\"error\":");
                lh_sb_append_json_string(&out, error_msg);
                lh_sb_append(&out, "}");
                reply(out.buf);
            } else {
                lh_sb_append(&out, "{\"ok\":true,\"loss\":[");
                size_t n = ads->len - (wrong_length && ads->len > 0 ? 1 : 0);
                for (size_t i = 0; i < n; i++) {
                    const char *dir;
                    double l = 0;
                    if (lh_json_as_string(ads->items[i], &dir))
                        l = loss_of(dir);
                    else
                        l = 1.0; /* null: the base model, delta 0 */
                    if (negative)
                        l = -0.5;
                    if (i)
                        lh_sb_append(&out, ",");
                    if (nan_mode && (cands_seen++ % 2) == 1)
                        lh_sb_append(&out, (cands_seen / 2) % 2 ? "null" : "\"NaN\"");
                    else
                        lh_sb_append_json_number(&out, l);
                }
                lh_sb_append(&out, "]}");
                if (twice) { /* both lines in one write, so they arrive together */
                    char *copy = strdup(out.buf);
                    lh_sb_append(&out, "\n");
                    lh_sb_append(&out, copy);
                    free(copy);
                }
                reply(out.buf);
            }
        } else if (!strcmp(op, "generate") && gen) {
            const char *exp;
            lh_examples *ex;
            if (!lh_json_as_string(lh_json_get(req, "examples"), &exp) ||
                lh_examples_load(exp, &ex, &err) != LH_OK) {
                reply("{\"ok\":false,\"error\":\"cannot read the examples\"}");
            } else {
                lh_sb_append(&out, "{\"ok\":true,\"outputs\":[");
                for (size_t i = 0; i < ex->n; i++) {
                    char *u = strdup(ex->input[i]);
                    for (char *p = u; *p; p++)
                        *p = (char)toupper((unsigned char)*p);
                    if (i)
                        lh_sb_append(&out, ",");
                    lh_sb_append_json_string(&out, u);
                    free(u);
                }
                lh_sb_append(&out, "]}");
                reply(out.buf);
                lh_examples_free(ex);
            }
        } else {
            reply("{\"ok\":false,\"error\":\"unsupported\"}");
        }
        lh_sb_release(&out);
        lh_json_free(req);
    }
    free(line);
    return 0;
}
