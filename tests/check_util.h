/* tests/check_util.h - assertions and fixture loaders several Check suites share.
 *
 * Each suite is its own program, so these are static inline functions in a
 * header; a failed load or comparison ends the test with its message. */
#ifndef LH_CHECK_UTIL_H
#define LH_CHECK_UTIL_H

#include <check.h>
#include <math.h>

#include "lib/adapter.h"

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

#endif
