/* lib/outpath.c - outputs that do not replace inputs, and output locks
 * (see outpath.h). */
#include "outpath.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/strbuf.h"
#include "lib/tempreg.h"

/* Append the components of rest to the resolved prefix in sb, handling
 * "." and ".." lexically (nothing below the prefix exists to be a link). */
static void append_components(lh_sb *sb, const char *rest)
{
    while (*rest) {
        size_t len = strcspn(rest, "/");
        if (len == 2 && !strncmp(rest, "..", 2)) {
            char *slash = sb->buf ? strrchr(sb->buf, '/') : NULL;
            if (slash) {
                sb->len = slash == sb->buf ? 1 : (size_t)(slash - sb->buf);
                sb->buf[sb->len] = '\0';
            }
        } else if (len > 0 && !(len == 1 && rest[0] == '.')) {
            if (sb->len == 0 || sb->buf[sb->len - 1] != '/')
                lh_sb_append(sb, "/");
            lh_sb_append_n(sb, rest, len);
        }
        rest += len + (rest[len] == '/');
    }
}

char *lh_path_resolved(const char *path)
{
    lh_sb abs;
    lh_sb_init(&abs);
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            snprintf(cwd, sizeof cwd, ".");
        lh_sb_append(&abs, cwd);
        lh_sb_append(&abs, "/");
    }
    lh_sb_append(&abs, path);
    if (lh_sb_failed(&abs)) {
        lh_sb_release(&abs);
        return NULL;
    }
    /* The deepest existing prefix, resolved; the rest appended. */
    char *p = abs.buf;
    size_t cut = abs.len;
    char resolved[PATH_MAX];
    for (;;) {
        char saved = p[cut];
        p[cut] = '\0';
        char *r = realpath(cut ? p : "/", resolved);
        p[cut] = saved;
        if (r || cut == 0)
            break;
        while (cut > 0 && p[cut - 1] != '/')
            cut--;
        while (cut > 1 && p[cut - 1] == '/')
            cut--;
        if (cut == 1 && p[0] == '/')
            cut = 0;
    }
    lh_sb out;
    lh_sb_init(&out);
    lh_sb_append(&out, resolved);
    append_components(&out, p + cut);
    lh_sb_release(&abs);
    if (lh_sb_failed(&out)) {
        lh_sb_release(&out);
        return NULL;
    }
    return lh_sb_detach(&out);
}

static int inside(const char *a, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return 1;
    return !strncmp(a, dir, n) && (a[n] == '/' || a[n] == '\0');
}

int lh_paths_overlap(const char *a, const char *b)
{
    return inside(a, b) || inside(b, a);
}

void lh_path_lock_init(lh_path_lock *l)
{
    l->fd = -1;
    l->lock_path = NULL;
}

/* Open and flock lock_path; 1 when held, 0 when another process holds it,
 * -1 on an error (errno set). The file we lock must still be the one at
 * lock_path: a holder that released it in between unlinked it. */
static int try_lock(const char *lock_path, int *fd_out)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return 0;
            errno = e;
            return -1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lock_path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            *fd_out = fd;
            return 1;
        }
        close(fd);
    }
    errno = EAGAIN;
    return -1;
}

lh_status lh_path_lock_take(lh_path_lock *l, const char *path, const char *what, lh_error *err)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    char *lp = malloc(n + 8);
    if (!lp)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    snprintf(lp, n + 8, "%.*s.lock", (int)n, path);
    int fd = -1;
    int r = try_lock(lp, &fd);
    if (r <= 0) {
        lh_status st;
        if (r == 0) {
            char owner[32] = "";
            FILE *f = fopen(lp, "r");
            long pid = 0;
            if (f && fscanf(f, "%ld", &pid) == 1 && pid > 0)
                snprintf(owner, sizeof owner, " (pid %ld)", pid);
            if (f)
                fclose(f);
            st = lh_error_set(err, LH_ERR_EXISTS,
                              "%s '%s' is being written by another lorahub run%s", what, path,
                              owner);
        } else {
            st = lh_error_errno(err, LH_ERR_IO, errno, "cannot lock '%s'", lp);
        }
        free(lp);
        return st;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)len) != len) {
        /* the pid is only for the other run's message */
    }
    l->fd = fd;
    l->lock_path = lp;
    lh_temp_register(lp); /* a signal that ends the process removes it too */
    return LH_OK;
}

void lh_path_lock_release(lh_path_lock *l)
{
    if (!l || l->fd < 0)
        return;
    lh_temp_unregister(l->lock_path);
    unlink(l->lock_path); /* while still holding it: see try_lock */
    close(l->fd);
    free(l->lock_path);
    lh_path_lock_init(l);
}

int lh_remove_stale_temps(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    char *dir = b ? strndup(path, b) : strdup(".");
    DIR *d = dir ? opendir(dir) : NULL;
    int removed = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *name = e->d_name;
        size_t len = n - b;
        if (strncmp(name, path + b, len) || strncmp(name + len, ".tmp.", 5) ||
            strlen(name + len + 5) != 6)
            continue;
        int ok = 1;
        for (const char *p = name + len + 5; *p; p++)
            ok &= isalnum((unsigned char)*p) != 0;
        char *full = ok ? lh_path_join(dir, name) : NULL;
        if (full && lh_rmtree(full) == 0)
            removed++;
        free(full);
    }
    if (d)
        closedir(d);
    free(dir);
    return removed;
}
