/* tests/check_plot.c - the SVG picture of a search (adapt/plot.c): one dot
 * per evaluation, one bar per kept module and per single-module loss, the
 * names escaped, non-finite values drawn apart, a file written atomically.
 * That the SVG is well-formed and renders is checked by tests/cli
 * (xmllint, rsvg-convert). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/plot.h"
#include "lib/fsutil.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

typedef struct fixture {
    lh_adapter mods[3];
    const lh_adapter *ptrs[3];
    double weights[3], single[3], loss[6], obj[6];
    size_t kept[2];
    lh_search_result r;
    lh_search_opts o;
} fixture;

static void make(fixture *f)
{
    memset(f, 0, sizeof *f);
    const char *names[3] = {"rev<erse>", "a&b", "plain"};
    for (int i = 0; i < 3; i++) {
        f->mods[i].name = (char *)names[i];
        f->ptrs[i] = &f->mods[i];
    }
    lh_search_opts_default(&f->o);
    f->weights[0] = 0.9;
    f->weights[2] = -0.25;
    f->kept[0] = 0;
    f->kept[1] = 2;
    f->single[0] = 1.5, f->single[1] = 7.25, f->single[2] = 3.0;
    double objs[6] = {9, 4, 5, 2, 2.5, 1};
    for (int e = 0; e < 6; e++)
        f->obj[e] = f->loss[e] = objs[e];
    f->r.n = 3;
    f->r.weights = f->weights;
    f->r.n_kept = 2;
    f->r.kept = f->kept;
    f->r.single_loss = f->single;
    f->r.n_evals = 6;
    f->r.eval_loss = f->loss;
    f->r.eval_objective = f->obj;
    f->r.evaluations = 6;
    f->r.rescored_loss = 1;
}

START_TEST(test_panels)
{
    fixture f;
    make(&f);
    char *svg;
    lh_error err;
    ck_assert_int_eq(lh_plot_svg_text(&f.o, f.ptrs, 3, &f.r, "t&sk", &svg, &err), LH_OK);
    ck_assert_ptr_nonnull(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_uint_eq(count(svg, "<circle"), 6);          /* one dot per evaluation */
    /* the best-so-far line steps down at evaluations 2, 4 and 6 only */
    const char *line = strstr(svg, "stroke-width=\"2\" d=\"M");
    ck_assert_ptr_nonnull(line);
    const char *end = strchr(line + 20, '"');
    size_t steps = 0;
    for (const char *p = line + 20; p < end; p++)
        steps += *p == 'V';
    ck_assert_uint_eq(steps, 3);
    /* bars: 2 weights (one negative) + 3 single losses, plus the frame and background */
    ck_assert_uint_eq(count(svg, "fill=\"#c8434f\"/>"), 1);
    ck_assert_uint_eq(count(svg, "<rect"), 2 + 2 + 3);
    ck_assert_ptr_nonnull(strstr(svg, "rev&lt;erse&gt;"));
    ck_assert_ptr_nonnull(strstr(svg, "a&amp;b"));
    ck_assert_ptr_nonnull(strstr(svg, "t&amp;sk: "));
    ck_assert_ptr_null(strstr(svg, "a&b"));
    free(svg);
}
END_TEST

START_TEST(test_no_search_and_non_finite)
{
    fixture f;
    make(&f);
    f.r.n_evals = 0;
    f.r.evaluations = 0;
    f.r.single_loss = NULL;
    char *svg;
    lh_error err;
    ck_assert_int_eq(lh_plot_svg_text(&f.o, f.ptrs, 3, &f.r, NULL, &svg, &err), LH_OK);
    ck_assert_uint_eq(count(svg, "<circle"), 0);
    ck_assert_ptr_nonnull(strstr(svg, "no search ran"));
    ck_assert_uint_eq(count(svg, "<rect"), 1 + 2);  /* background, two weights */
    free(svg);
    /* --nan-as-worst's stand-in and a NaN are drawn as marks, not dots */
    make(&f);
    f.obj[1] = LH_SEARCH_WORST;
    f.obj[2] = NAN;
    ck_assert_int_eq(lh_plot_svg_text(&f.o, f.ptrs, 3, &f.r, NULL, &svg, &err), LH_OK);
    ck_assert_uint_eq(count(svg, "<circle"), 4);
    ck_assert_uint_eq(count(svg, "l-4 -7 h8 z"), 2);
    ck_assert_ptr_nonnull(strstr(svg, "triangles: non-finite"));
    ck_assert_ptr_null(strstr(svg, "nan"));
    free(svg);
}
END_TEST

START_TEST(test_write)
{
    fixture f;
    make(&f);
    char dir[] = "/tmp/check_plot.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "p.svg");
    lh_error err;
    ck_assert_int_eq(lh_plot_write_svg(path, &f.o, f.ptrs, 3, &f.r, "t", &err), LH_OK);
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(path, &text, &len, &err), LH_OK);
    ck_assert_ptr_nonnull(strstr(text, "</svg>\n"));
    free(text);
    char *bad = lh_path_join(dir, "missing/p.svg");
    ck_assert_int_ne(lh_plot_write_svg(bad, &f.o, f.ptrs, 3, &f.r, "t", &err), LH_OK);
    ck_assert_ptr_nonnull(strstr(lh_error_message(&err), "missing/p.svg"));
    free(bad);
    free(path);
    lh_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_panels);
    tcase_add_test(tc, test_no_search_and_non_finite);
    tcase_add_test(tc, test_write);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
