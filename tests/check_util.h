/* tests/check_util.h - assertions and fixture loaders several Check suites share.
 *
 * Each suite is its own program, so these are static inline functions in a
 * header; a failed load or comparison ends the test with its message. */
#ifndef LH_CHECK_UTIL_H
#define LH_CHECK_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/adapter.h"
#include "lib/fsutil.h"

/* An adapter (PEFT dir, MoS or GGUF module) that must load. */
static inline lh_adapter *ck_load_adapter(const char *path)
{
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_adapter_load(path, &a, &err) == LH_OK, "%s", err.msg);
    return a;
}

/* got within rel of want, relative to max(1, |want|) (so near-zero values compare absolutely). */
static inline void ck_close_rel(double got, double want, double rel, const char *what)
{
    double tol = rel * fmax(1.0, fabs(want));
    if (!(fabs(got - want) <= tol))
        ck_abort_msg("%s: got %.9g, want %.9g (tolerance %.3g)", what, got, want, tol);
}

/* A fresh directory /tmp/<tag>.XXXXXX holding a copy of config (a model's
 * config.json): the start of an edited copy of a fixture model. Returns the
 * directory (malloc'd; the caller removes it and frees the name). */
static inline char *ck_dir_with_config(const char *tag, const char *config)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/%s.XXXXXX", tag);
    ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp %s", tmpl);
    lh_error err = {0};
    char *cfg = NULL;
    size_t cfg_len;
    ck_assert_msg(lh_read_file(config, &cfg, &cfg_len, &err) == LH_OK, "%s", err.msg);
    char *p = lh_path_join(tmpl, "config.json");
    ck_assert_msg(lh_write_file_atomic(p, cfg, cfg_len, &err) == LH_OK, "%s", err.msg);
    free(p);
    free(cfg);
    return strdup(tmpl);
}

#endif
