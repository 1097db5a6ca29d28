/* adapt/plot.h - a picture of a search, as plain SVG written by our own
 * code (no library): the objective of every evaluation and the best so
 * far against the evaluation count, the chosen weights as bars named by
 * module, and each module's loss alone when preselection ran. One
 * self-contained file with a white background, readable by browsers,
 * rsvg-convert and terminal image viewers. */
#ifndef LH_PLOT_H
#define LH_PLOT_H

#include "adapt/search.h"

/* The SVG of res (a search over mods [n] with options o) as malloc'd
 * text; title (the task, may be NULL) heads it. */
lh_status lh_plot_svg_text(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                           const lh_search_result *res, const char *title, char **out,
                           lh_error *err);
/* The same, written to path atomically. */
lh_status lh_plot_write_svg(const char *path, const lh_search_opts *o,
                            const lh_adapter *const *mods, size_t n,
                            const lh_search_result *res, const char *title, lh_error *err);

#endif
