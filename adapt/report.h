/* adapt/report.h - what a search did, as a report file (JSON or YAML). */
#ifndef LH_REPORT_H
#define LH_REPORT_H

#include "adapt/search.h"

/* Write a report (YAML when path ends in .yaml/.yml, JSON otherwise)
 * atomically: weights (module name -> weight), best_loss, best_objective,
 * rescored_loss, evaluations, optimizer, method, seed, budget, bound, l1,
 * modules, wall_seconds, backend_seconds, stop_reason, and extra string
 * pairs extra_kv = {key, value, key, value, ..., NULL}. */
lh_status lh_search_write_report(const char *path, const lh_search_opts *o,
                                 const lh_adapter *const *mods, size_t n,
                                 const lh_search_result *res, const char *const *extra_kv,
                                 lh_error *err);
/* The same report as text (malloc'd), YAML when yaml is non-zero. */
lh_status lh_search_report_text(int yaml, const lh_search_opts *o,
                                const lh_adapter *const *mods, size_t n,
                                const lh_search_result *res, const char *const *extra_kv,
                                char **out, lh_error *err);

#endif
