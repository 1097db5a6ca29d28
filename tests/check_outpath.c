/* tests/check_outpath.c - lib/outpath: resolved paths (existing or not,
 * through symlinks and ".."), overlap, and output locks. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/outpath.h"

static char dir[64];  /* a fresh directory, resolved (mkdtemp under /tmp) */
static char real[PATH_MAX];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_outpath.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_nonnull(realpath(dir, real));
}

static void teardown(void)
{
    lh_rmtree(dir);
}

static void expect_resolved(const char *path, const char *want_under_real)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s%s", real, want_under_real);
    char *got = lh_path_resolved(path);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(test_resolved)
{
    char p[PATH_MAX], link[PATH_MAX];
    snprintf(p, sizeof p, "%s/hub", dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(link, sizeof link, "%s/alias", dir);
    ck_assert_int_eq(symlink(p, link), 0);
    /* existing, through a symlink, with trailing slashes and dots */
    snprintf(p, sizeof p, "%s/alias/", dir);
    expect_resolved(p, "/hub");
    snprintf(p, sizeof p, "%s/./hub/../alias", dir);
    expect_resolved(p, "/hub");
    /* not existing: the resolved parent plus the rest, ".." lexically */
    snprintf(p, sizeof p, "%s/alias/new/deeper", dir);
    expect_resolved(p, "/hub/new/deeper");
    snprintf(p, sizeof p, "%s/alias/new/../other", dir);
    expect_resolved(p, "/hub/other");
    /* relative: from the working directory */
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    expect_resolved("alias/x.json", "/hub/x.json");
    expect_resolved(".", "");
    ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_overlap)
{
    ck_assert(lh_paths_overlap("/a/b", "/a/b"));
    ck_assert(lh_paths_overlap("/a/b/c", "/a/b"));
    ck_assert(lh_paths_overlap("/a/b", "/a/b/c"));
    ck_assert(lh_paths_overlap("/", "/a"));
    ck_assert(!lh_paths_overlap("/a/bc", "/a/b"));
    ck_assert(!lh_paths_overlap("/a/b.checkpoint.json", "/a/b"));
    ck_assert(!lh_paths_overlap("/a/x", "/a/y"));
}
END_TEST

START_TEST(test_lock)
{
    char out[PATH_MAX], lockfile[PATH_MAX + 8];
    snprintf(out, sizeof out, "%s/out/", dir);
    snprintf(lockfile, sizeof lockfile, "%s/out.lock", dir);
    lh_path_lock a, b;
    lh_path_lock_init(&a);
    lh_path_lock_init(&b);
    lh_error err;
    ck_assert_int_eq(lh_path_lock_take(&a, out, "output directory", &err), LH_OK);
    ck_assert(lh_path_exists(lockfile));
    /* a second holder (another open file description) is refused, naming the pid */
    ck_assert_int_eq(lh_path_lock_take(&b, out, "output directory", &err), LH_ERR_EXISTS);
    char pid[64];
    snprintf(pid, sizeof pid, "(pid %ld)", (long)getpid());
    ck_assert_ptr_nonnull(strstr(err.msg, pid));
    ck_assert_ptr_nonnull(strstr(err.msg, "output directory"));
    lh_path_lock_release(&a);
    ck_assert(!lh_path_exists(lockfile));
    lh_path_lock_release(&a); /* twice is fine */
    /* a lock file left by a killed run (no holder) is taken over */
    FILE *f = fopen(lockfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs("999999\n", f);
    fclose(f);
    ck_assert_int_eq(lh_path_lock_take(&b, out, "output directory", &err), LH_OK);
    lh_path_lock_release(&b);
    ck_assert(!lh_path_exists(lockfile));
}
END_TEST

static Suite *outpath_suite(void)
{
    Suite *s = suite_create("outpath");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_resolved);
    tcase_add_test(tc, test_overlap);
    tcase_add_test(tc, test_lock);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(outpath_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
