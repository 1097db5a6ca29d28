/* adapt/plot.c - the SVG picture of a search (see plot.h).
 *
 * Three panels stacked top to bottom, each drawn by its own function that
 * returns the height it used: the objective curve, the weights, the
 * single-module losses. Coordinates are in pixels of a fixed-width page;
 * the body is built first so the header can state the total height. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/strbuf.h"

#define PAGE_W 760.0
#define LEFT 140.0        /* room for module names and axis labels */
#define RIGHT 60.0        /* room for the value printed after a bar */
#define ROW 16.0          /* one bar */
#define CURVE_H 200.0     /* the objective's plotting area */
#define BLUE "#3b6fb6"
#define RED "#c8434f"
#define GRAY "#9a9a9a"
#define FONT "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""

/* s with the five XML special characters escaped. */
static void xml_text(lh_sb *sb, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': lh_sb_append(sb, "&amp;"); break;
        case '<': lh_sb_append(sb, "&lt;"); break;
        case '>': lh_sb_append(sb, "&gt;"); break;
        case '"': lh_sb_append(sb, "&quot;"); break;
        case '\'': lh_sb_append(sb, "&apos;"); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                lh_sb_append_n(sb, s, 1);
        }
    }
}

/* A text element; anchor "start", "middle" or "end". */
static void text_at(lh_sb *sb, double x, double y, const char *anchor, int size, const char *fill,
                    const char *s)
{
    lh_sb_appendf(sb, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\" fill=\"%s\">",
                  x, y, anchor, size, fill);
    xml_text(sb, s);
    lh_sb_append(sb, "</text>\n");
}

/* Ticks for [lo, hi]: the first at *t0, every *step, a 1-2-5 step giving
 * about five of them. */
static void nice_ticks(double lo, double hi, double *t0, double *step)
{
    double raw = (hi - lo) / 5.0, mag = pow(10.0, floor(log10(raw))), r = raw / mag;
    *step = (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
    *t0 = ceil(lo / *step - 1e-9) * *step;
}

/* A value the curve can show: finite and not --nan-as-worst's stand-in. */
static int plottable(double v)
{
    return isfinite(v) && v < LH_SEARCH_WORST / 10;
}

typedef struct frame {
    double x0, x1, y0, y1;    /* plotting area in pixels (y0 top) */
    double lo, hi;            /* the value range, bottom to top */
    size_t n;                 /* evaluations, along x */
    int logy;                 /* a log axis: the range spans more than LOG_SPAN */
} frame;

#define LOG_SPAN 30.0

static double fx(const frame *f, size_t e) /* evaluation e, 0-based */
{
    return f->n > 1 ? f->x0 + (f->x1 - f->x0) * (double)e / (double)(f->n - 1)
                    : (f->x0 + f->x1) / 2;
}

static double fy(const frame *f, double v)
{
    if (!plottable(v) || v > f->hi)
        return f->y0;
    if (v < f->lo)
        return f->y1;
    double t = f->logy ? log(v / f->lo) / log(f->hi / f->lo) : (v - f->lo) / (f->hi - f->lo);
    return f->y1 - (f->y1 - f->y0) * t;
}

static void y_tick(lh_sb *sb, const frame *f, double t)
{
    char lab[32];
    lh_sb_appendf(sb, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                  f->x0, fy(f, t), f->x1, fy(f, t));
    snprintf(lab, sizeof lab, "%g", t);
    text_at(sb, f->x0 - 6, fy(f, t) + 4, "end", 11, "#444", lab);
}

static void curve_axes(lh_sb *sb, const frame *f)
{
    double t0, step;
    char lab[32];
    if (f->logy) { /* 1, 2, 5 in every decade */
        for (double d = pow(10.0, floor(log10(f->lo))); d <= f->hi; d *= 10)
            for (int m = 1; m <= 5; m += m == 1 ? 1 : 3)
                if (d * m >= f->lo && d * m <= f->hi)
                    y_tick(sb, f, d * m);
    } else {
        nice_ticks(f->lo, f->hi, &t0, &step);
        for (double t = t0; t <= f->hi + step * 1e-9; t += step)
            y_tick(sb, f, fabs(t) < step * 1e-9 ? 0.0 : t);
    }
    double n = (double)f->n;
    nice_ticks(1, n > 1 ? n : 2, &t0, &step);
    if (step < 1)
        step = 1;
    for (double t = ceil(t0); t <= n; t += step) {
        snprintf(lab, sizeof lab, "%.0f", t);
        text_at(sb, fx(f, (size_t)t - 1), f->y1 + 16, "middle", 11, "#444", lab);
    }
    lh_sb_appendf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                      "stroke=\"#888\"/>\n", f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    text_at(sb, (f->x0 + f->x1) / 2, f->y1 + 32, "middle", 12, "#222", "evaluation");
    lh_sb_appendf(sb, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
                      "fill=\"#222\" transform=\"rotate(-90 %.1f %.1f)\">objective (loss + l1 penalty)</text>\n",
                  f->x0 - 52, (f->y0 + f->y1) / 2, f->x0 - 52, (f->y0 + f->y1) / 2);
}

/* The objective of every evaluation (dots) and the best so far (a step
 * line). Returns the height used. */
static double panel_curve(lh_sb *sb, const lh_search_result *res, double top)
{
    text_at(sb, 16, top + 18, "start", 14, "#111", "Objective of each evaluation, and the best so far");
    size_t n = res->eval_objective ? res->n_evals : 0;
    double lo = HUGE_VAL, hi = -HUGE_VAL;
    for (size_t e = 0; e < n; e++)
        if (plottable(res->eval_objective[e])) {
            lo = fmin(lo, res->eval_objective[e]);
            hi = fmax(hi, res->eval_objective[e]);
        }
    if (!(lo <= hi)) {
        text_at(sb, 16, top + 44, "start", 12, "#444",
                n ? "no evaluation has a finite objective"
                  : "no search ran: the result is the best single module (see its loss below)");
        return 64;
    }
    double pad = hi > lo ? (hi - lo) * 0.06 : fmax(fabs(lo) * 0.1, 0.5);
    frame f = {LEFT, PAGE_W - RIGHT, top + 44, top + 44 + CURVE_H, lo - pad, hi + pad, n, 0};
    if (lo > 0 && hi / lo > LOG_SPAN) { /* early points would flatten the rest */
        f.logy = 1;
        f.lo = lo / 1.15;
        f.hi = hi * 1.15;
    }
    curve_axes(sb, &f);
    size_t worst = 0;
    for (size_t e = 0; e < n; e++) {
        double v = res->eval_objective[e];
        if (!plottable(v)) {
            worst++;
            lh_sb_appendf(sb, "<path d=\"M%.1f %.1f l-4 -7 h8 z\" fill=\"" RED "\"/>\n", fx(&f, e),
                          f.y0 + 7);
        } else {
            lh_sb_appendf(sb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" fill=\"" BLUE
                              "\" fill-opacity=\"0.75\"/>\n", fx(&f, e), fy(&f, v));
        }
    }
    double best = HUGE_VAL;
    int started = 0;
    lh_sb_append(sb, "<path fill=\"none\" stroke=\"" RED "\" stroke-width=\"2\" d=\"");
    for (size_t e = 0; e < n; e++) {
        double v = res->eval_objective[e];
        if (!plottable(v) || (started && v >= best))
            continue;
        best = v;
        if (!started)
            lh_sb_appendf(sb, "M%.1f %.1f", fx(&f, e), fy(&f, best));
        else
            lh_sb_appendf(sb, " H%.1f V%.1f", fx(&f, e), fy(&f, best));
        started = 1;
    }
    lh_sb_appendf(sb, " H%.1f\"/>\n", f.x1);
    char legend[200], folds[64] = "";
    if (res->auto_ran)
        snprintf(folds, sizeof folds, " of the refit; the folds' %d not drawn", res->auto_evaluations);
    snprintf(legend, sizeof legend, "dots: each evaluation (%zu%s)%s; line: best so far, %.4g%s", n,
             folds, worst ? "; triangles: non-finite" : "", best, f.logy ? "; log scale" : "");
    text_at(sb, f.x1, top + 36, "end", 11, "#444", legend);
    return 44 + CURVE_H + 48;
}

/* One horizontal bar for value v of row name at row y, the axis at zero_x
 * and scale pixels per unit. */
static void bar(lh_sb *sb, double y, double zero_x, double scale, double v, const char *name,
                const char *fill)
{
    char lab[32];
    text_at(sb, LEFT - 8, y + ROW - 4, "end", 12, "#222", name);
    if (!isfinite(v)) {
        text_at(sb, zero_x + 4, y + ROW - 4, "start", 11, RED, isnan(v) ? "NaN" : "inf");
        return;
    }
    double w = fabs(v) * scale, x = v < 0 ? zero_x - w : zero_x;
    lh_sb_appendf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                  x, y + 2, w, ROW - 4, fill);
    snprintf(lab, sizeof lab, "%.3g", v);
    text_at(sb, v < 0 ? x - 4 : x + w + 4, y + ROW - 4, v < 0 ? "end" : "start", 11, "#444", lab);
}

static const char *mod_name(const lh_adapter *m)
{
    return m && m->name ? m->name : "?";
}

/* The chosen weights of the modules the search ranged over. */
static double panel_weights(lh_sb *sb, const lh_search_opts *o, const lh_adapter *const *mods,
                            const lh_search_result *res, double top)
{
    char head[160];
    snprintf(head, sizeof head, "Weights of the result (method %s)",
             lh_merge_method_name(o->merge.method));
    text_at(sb, 16, top + 18, "start", 14, "#111", head);
    double wmax = 0;
    for (size_t i = 0; i < res->n_kept; i++)
        if (isfinite(res->weights[res->kept[i]]))
            wmax = fmax(wmax, fabs(res->weights[res->kept[i]]));
    if (wmax == 0)
        wmax = 1;
    int any_negative = 0;
    for (size_t i = 0; i < res->n_kept; i++)
        any_negative |= res->weights[res->kept[i]] < 0;
    double span = PAGE_W - RIGHT - LEFT - 40;
    double zero_x = any_negative ? LEFT + 40 + span / 2 : LEFT;
    double scale = (any_negative ? span / 2 : span) / wmax;
    double y = top + 30;
    lh_sb_appendf(sb, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>\n",
                  zero_x, y, zero_x, y + ROW * (double)res->n_kept);
    for (size_t i = 0; i < res->n_kept; i++, y += ROW) {
        double v = res->weights[res->kept[i]];
        bar(sb, y, zero_x, scale, v, mod_name(mods[res->kept[i]]), v < 0 ? RED : BLUE);
    }
    return 30 + ROW * (double)res->n_kept + 20;
}

/* Every module's loss alone, lowest first; the kept ones in color. */
static double panel_single(lh_sb *sb, const lh_adapter *const *mods, size_t n,
                           const lh_search_result *res, double top)
{
    text_at(sb, 16, top + 18, "start", 14, "#111",
            "Loss of each module alone (weight 1); in color: kept for the result");
    size_t *order = malloc(n * sizeof *order);
    char *kept = calloc(n, 1);
    if (!order || !kept) {
        free(order);
        free(kept);
        sb->failed = 1;
        return 0;
    }
    for (size_t i = 0; i < res->n_kept; i++)
        kept[res->kept[i]] = 1;
    double hi = 0;
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        if (isfinite(res->single_loss[i]))
            hi = fmax(hi, res->single_loss[i]);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: non-finite last */
        for (size_t j = i; j > 0; j--) {
            double a = res->single_loss[order[j - 1]], b = res->single_loss[order[j]];
            if (!(isfinite(b) && (!isfinite(a) || b < a)))
                break;
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    double scale = (PAGE_W - RIGHT - LEFT) / (hi > 0 ? hi : 1), y = top + 30;
    for (size_t i = 0; i < n; i++, y += ROW)
        bar(sb, y, LEFT, scale, res->single_loss[order[i]], mod_name(mods[order[i]]),
            kept[order[i]] ? BLUE : GRAY);
    free(order);
    free(kept);
    return 30 + ROW * (double)n + 20;
}

lh_status lh_plot_svg_text(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                           const lh_search_result *res, const char *title, char **out,
                           lh_error *err)
{
    *out = NULL;
    lh_sb body, sb;
    lh_sb_init(&body);
    lh_sb_init(&sb);
    char head[320], test[64] = "", how[80] = "";
    const char *sel = lh_select_name(res->auto_ran ? res->auto_decision : o->select);
    if (res->test_n)
        snprintf(test, sizeof test, ", test %zu/%zu right", res->test_correct, res->test_n);
    if (res->evaluations)
        snprintf(how, sizeof how, ", %s, %d evaluations", o->optimizer, res->evaluations);
    snprintf(head, sizeof head, "%s%sselect %s%s%s, loss %.4g%s", title ? title : "",
             title ? ": " : "", res->auto_ran ? "auto -> " : "", sel, how,
             isfinite(res->rescored_loss) ? res->rescored_loss : res->best_loss, test);
    text_at(&body, 16, 26, "start", 16, "#000", head);
    double y = 40;
    y += panel_curve(&body, res, y);
    y += panel_weights(&body, o, mods, res, y);
    if (res->single_loss)
        y += panel_single(&body, mods, n, res, y);
    lh_sb_appendf(&sb, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
                       "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" " FONT ">\n"
                       "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
                  PAGE_W, y, PAGE_W, y);
    lh_sb_append_n(&sb, body.buf ? body.buf : "", body.len);
    lh_sb_append(&sb, "</svg>\n");
    int failed = lh_sb_failed(&body) || lh_sb_failed(&sb);
    lh_sb_release(&body);
    if (failed) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "plot: out of memory");
    }
    *out = lh_sb_detach(&sb);
    return LH_OK;
}

lh_status lh_plot_write_svg(const char *path, const lh_search_opts *o,
                            const lh_adapter *const *mods, size_t n,
                            const lh_search_result *res, const char *title, lh_error *err)
{
    char *text;
    lh_status st = lh_plot_svg_text(o, mods, n, res, title, &text, err);
    if (st == LH_OK)
        st = lh_write_file_atomic(path, text, strlen(text), err);
    if (st == LH_ERR_NOMEM)
        lh_error_prefix(err, path);
    free(text);
    return st;
}
