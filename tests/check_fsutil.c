/* tests/check_fsutil.c - atomic files and output directories. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/fsutil.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/lh-fs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    lh_rmtree(tmpdir);
}

/* Names in dir other than . and .., joined by spaces in sorted order. */
static void listing(const char *dir, char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
            if (out[0])
                strncat(out, " ", cap - strlen(out) - 1);
            strncat(out, names[i]->d_name, cap - strlen(out) - 1);
        }
        free(names[i]);
    }
    free(names);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void assert_content(const char *path, const char *want)
{
    char *text;
    size_t len;
    lh_error err = { 0 };
    ck_assert_msg(lh_read_file(path, &text, &len, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq(text, want);
    free(text);
}

START_TEST(test_paths)
{
    char *p = lh_path_join("a", "b");
    ck_assert_str_eq(p, "a/b");
    free(p);
    p = lh_path_join("a/", "b");
    ck_assert_str_eq(p, "a/b");
    free(p);
    p = lh_path_join("/", "x");
    ck_assert_str_eq(p, "/x");
    free(p);
    /* base names: trailing slashes dropped; the root has an empty one */
    static const char *const base_cases[][2] = {
        {"a/b/", "b"}, {"a//b//", "b"}, {"x.safetensors", "x.safetensors"}, {"/", ""}, {"", ""}};
    for (size_t i = 0; i < sizeof base_cases / sizeof base_cases[0]; i++) {
        size_t n;
        const char *b = lh_path_base(base_cases[i][0], &n);
        ck_assert_msg(n == strlen(base_cases[i][1]) && !strncmp(b, base_cases[i][1], n),
                      "base of '%s' is '%.*s'", base_cases[i][0], (int)n, b);
    }
    ck_assert(lh_is_dir(tmpdir));
    ck_assert(lh_path_exists(tmpdir));
    ck_assert_int_eq(lh_file_size(tmpdir), -1);
    p = lh_path_join(tmpdir, "f");
    ck_assert(!lh_path_exists(p));
    ck_assert_int_eq(lh_file_size(p), -1);
    write_text(p, "12345");
    ck_assert_int_eq(lh_file_size(p), 5);
    ck_assert(!lh_is_dir(p));
    free(p);
}
END_TEST

START_TEST(test_read_file)
{
    char *p = lh_path_join(tmpdir, "r.txt");
    write_text(p, "hello\n");
    assert_content(p, "hello\n");
    char *text;
    size_t len;
    lh_error err = { 0 };
    /* files whose size stat does not know (procfs) are read to the end */
    ck_assert_int_eq(lh_read_file("/proc/self/status", &text, &len, &err), LH_OK);
    ck_assert(len > 0 && strstr(text, "Name:"));
    free(text);
    ck_assert_int_eq(lh_read_file(tmpdir, &text, &len, &err), LH_ERR_IO);
    ck_assert(strstr(err.msg, "is a directory"));
    unlink(p);
    ck_assert_int_eq(lh_read_file(p, &text, &len, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, p) && strstr(err.msg, "No such file"));
    free(p);
}
END_TEST

/* A FIFO nobody writes, a device, a socket: refused at once with what it is
 * (before, open() on the FIFO never returned: the test timed out). A pipe
 * that is being written (a shell's <(cmd)) is read like a file. */
START_TEST(test_read_not_regular)
{
    alarm(10); /* a blocked open fails the test instead of hanging it */
    char *fifo = lh_path_join(tmpdir, "fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    char *text = NULL;
    size_t len;
    lh_error err = {0};
    ck_assert_int_eq(lh_read_file(fifo, &text, &len, &err), LH_ERR_IO);
    ck_assert_msg(strstr(err.msg, fifo) && strstr(err.msg, "a FIFO with no writer"), "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    int fd = -1;
    uint64_t size;
    ck_assert_int_eq(lh_open_regular(fifo, &fd, &size, &err), LH_ERR_IO);
    ck_assert_msg(strstr(err.msg, "it is a FIFO, not a regular file"), "%s", err.msg);
    ck_assert_int_eq(fd, -1);
    ck_assert_int_eq(lh_read_file("/dev/zero", &text, &len, &err), LH_ERR_IO);
    ck_assert_msg(strstr(err.msg, "'/dev/zero': it is a character device"), "%s", err.msg);
    ck_assert_int_eq(lh_open_regular(tmpdir, &fd, &size, &err), LH_ERR_IO);
    ck_assert(strstr(err.msg, "it is a directory"));
    /* a regular file: open, blocking, its size */
    char *reg = lh_path_join(tmpdir, "r.json");
    write_text(reg, "{}\n");
    ck_assert_int_eq(lh_open_regular(reg, &fd, &size, &err), LH_OK);
    ck_assert_int_eq(size, 3);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    /* a pipe with a writer that writes later: waited for, read to EOF */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        usleep(200 * 1000);
        ssize_t w = write(p[1], "[1, 2]\n", 7);
        _exit(w == 7 ? 0 : 1);
    }
    close(p[1]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    ck_assert_int_eq(lh_read_file(path, &text, &len, &err), LH_OK);
    ck_assert_str_eq(text, "[1, 2]\n");
    free(text);
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    alarm(0);
    free(reg);
    free(fifo);
}
END_TEST

START_TEST(test_atomic_file)
{
    char *p = lh_path_join(tmpdir, "out.txt");
    lh_error err = { 0 };
    mode_t old = umask(022);
    ck_assert_int_eq(lh_write_file_atomic(p, "first", 5, &err), LH_OK);
    assert_content(p, "first");
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0644); /* umask applies, not mkstemp's 0600 */
    umask(old);
    ck_assert_int_eq(lh_write_file_atomic(p, "second!", 7, &err), LH_OK);
    assert_content(p, "second!");
    ck_assert_int_eq(lh_write_file_atomic(p, "", 0, &err), LH_OK);
    assert_content(p, "");
    char names[256];
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "out.txt"); /* no temp files left */

    /* streaming: an aborted file never appears, a committed one does */
    lh_atomic_file f;
    char *q = lh_path_join(tmpdir, "stream.bin");
    ck_assert_int_eq(lh_atomic_begin(&f, q, &err), LH_OK);
    ck_assert_int_eq(lh_atomic_write(&f, "abc", 3, &err), LH_OK);
    ck_assert(!lh_path_exists(q));
    ck_assert(strncmp(f.tmp_path, q, strlen(q)) == 0 && strstr(f.tmp_path, ".tmp."));
    lh_atomic_abort(&f);
    lh_atomic_abort(&f); /* twice is harmless */
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "out.txt");
    ck_assert_int_eq(lh_atomic_begin(&f, q, &err), LH_OK);
    ck_assert_int_eq(lh_atomic_write(&f, "abc", 3, &err), LH_OK);
    ck_assert_int_eq(lh_atomic_write(&f, "def", 3, &err), LH_OK);
    ck_assert_int_eq(lh_atomic_commit(&f, &err), LH_OK);
    lh_atomic_abort(&f);
    assert_content(q, "abcdef");

    char *bad = lh_path_join(tmpdir, "missing/x.txt");
    ck_assert_int_eq(lh_write_file_atomic(bad, "x", 1, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, bad));
    /* the target is a directory: rename fails, the temp file is removed */
    char *d = lh_path_join(tmpdir, "adir");
    ck_assert_int_eq(mkdir(d, 0755), 0);
    char *inner = lh_path_join(d, "keep");
    write_text(inner, "k");
    ck_assert_int_eq(lh_write_file_atomic(d, "x", 1, &err), LH_ERR_IO);
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "adir out.txt stream.bin");
    assert_content(inner, "k");
    free(p);
    free(q);
    free(bad);
    free(d);
    free(inner);
}
END_TEST

START_TEST(test_outdir)
{
    char *final = lh_path_join(tmpdir, "adapter");
    lh_error err = { 0 };
    lh_outdir od;
    char names[256];

    /* fresh: files appear only at commit */
    ck_assert_int_eq(lh_outdir_begin(&od, final, 0, &err), LH_OK);
    char *f1 = lh_outdir_file(&od, "a.txt");
    ck_assert_int_eq(lh_write_file_atomic(f1, "v1", 2, &err), LH_OK);
    ck_assert(!lh_path_exists(final));
    ck_assert(lh_is_dir(od.tmp_path));
    ck_assert(strstr(od.tmp_path, "adapter.tmp.") != NULL);
    ck_assert_int_eq(lh_outdir_commit(&od, &err), LH_OK);
    lh_outdir_abort(&od); /* safe after commit, must not remove the result */
    free(f1);
    char *a = lh_path_join(final, "a.txt");
    assert_content(a, "v1");

    /* exists, no force: refused at begin */
    ck_assert_int_eq(lh_outdir_begin(&od, final, 0, &err), LH_ERR_EXISTS);
    ck_assert(strstr(err.msg, final) && strstr(err.msg, "already exists"));
    lh_outdir_abort(&od);

    /* exists, force: replaced as a whole (old files do not survive) */
    ck_assert_int_eq(lh_outdir_begin(&od, final, 1, &err), LH_OK);
    char *f2 = lh_outdir_file(&od, "b.txt");
    ck_assert_int_eq(lh_write_file_atomic(f2, "v2", 2, &err), LH_OK);
    assert_content(a, "v1"); /* old output intact until commit */
    ck_assert_int_eq(lh_outdir_commit(&od, &err), LH_OK);
    free(f2);
    ck_assert(!lh_path_exists(a));
    char *b = lh_path_join(final, "b.txt");
    assert_content(b, "v2");
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "adapter"); /* no .tmp or .old left */

    /* abort removes the temp dir and keeps the old output */
    ck_assert_int_eq(lh_outdir_begin(&od, final, 1, &err), LH_OK);
    char *f3 = lh_outdir_file(&od, "c.txt");
    ck_assert_int_eq(lh_write_file_atomic(f3, "v3", 2, &err), LH_OK);
    lh_outdir_abort(&od);
    free(f3);
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "adapter");
    assert_content(b, "v2");

    /* created meanwhile by someone else, no force: commit refuses, cleans up */
    char *other = lh_path_join(tmpdir, "other");
    ck_assert_int_eq(lh_outdir_begin(&od, other, 0, &err), LH_OK);
    ck_assert_int_eq(mkdir(other, 0755), 0);
    char *marker = lh_path_join(other, "theirs");
    write_text(marker, "t");
    ck_assert_int_eq(lh_outdir_commit(&od, &err), LH_ERR_EXISTS);
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "adapter other");
    assert_content(marker, "t");

    /* a trailing slash still puts the temp dir next to the output */
    char slash[300];
    snprintf(slash, sizeof slash, "%s/new/", tmpdir);
    ck_assert_int_eq(lh_outdir_begin(&od, slash, 0, &err), LH_OK);
    ck_assert_int_eq(lh_outdir_commit(&od, &err), LH_OK);
    listing(tmpdir, names, sizeof names);
    ck_assert_str_eq(names, "adapter new other");

    /* parent missing */
    char *deep = lh_path_join(tmpdir, "no/such/out");
    ck_assert_int_eq(lh_outdir_begin(&od, deep, 0, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, deep));
    lh_outdir_abort(&od);

    lh_outdir zero = { 0 };
    lh_outdir_abort(&zero);
    lh_outdir_abort(NULL);
    ck_assert_ptr_null(lh_outdir_file(&zero, "x"));
    free(final);
    free(a);
    free(b);
    free(other);
    free(marker);
    free(deep);
}
END_TEST

START_TEST(test_rmtree)
{
    char *d = lh_path_join(tmpdir, "tree");
    char *sub = lh_path_join(d, "sub");
    char *f = lh_path_join(sub, "f");
    char *outside = lh_path_join(tmpdir, "outside");
    char *link = lh_path_join(d, "link");
    ck_assert_int_eq(mkdir(d, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_text(f, "x");
    ck_assert_int_eq(mkdir(outside, 0755), 0);
    char *precious = lh_path_join(outside, "precious");
    write_text(precious, "p");
    ck_assert_int_eq(symlink(outside, link), 0);
    ck_assert_int_eq(lh_rmtree(d), 0);
    ck_assert(!lh_path_exists(d));
    assert_content(precious, "p"); /* the symlink was not followed */
    ck_assert_int_eq(lh_rmtree(d), 0); /* already gone */
    ck_assert_int_eq(lh_rmtree(precious), 0); /* a plain file */
    ck_assert(!lh_path_exists(precious));
    free(d);
    free(sub);
    free(f);
    free(outside);
    free(link);
    free(precious);
}
END_TEST

static Suite *fsutil_suite(void)
{
    Suite *s = suite_create("fsutil");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_read_file);
    tcase_add_test(tc, test_read_not_regular);
    tcase_add_test(tc, test_atomic_file);
    tcase_add_test(tc, test_outdir);
    tcase_add_test(tc, test_rmtree);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fsutil_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
