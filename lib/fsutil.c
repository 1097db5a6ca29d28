/* lib/fsutil.c - whole-file reads, atomic file and directory writes.
 *
 * Temp names are "<final>.tmp.XXXXXX" in the final directory, created with
 * O_EXCL / mkdir and mode 0666 / 0777 so that the umask applies exactly as it
 * would to a plain open() (mkstemp/mkdtemp would force 0600/0700 onto the
 * result). rename() within one directory is atomic; the directory is fsynced
 * after it so the new name survives a crash. */
#include "fsutil.h"
#include "tempreg.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *lh_path_base(const char *path, size_t *len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    *len = n - b;
    return path + b;
}

char *lh_path_join(const char *dir, const char *name)
{
    if (!dir || !name)
        return NULL;
    size_t nd = strlen(dir), nn = strlen(name);
    int slash = nd > 0 && dir[nd - 1] != '/';
    char *p = malloc(nd + slash + nn + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, nd);
    if (slash)
        p[nd] = '/';
    memcpy(p + nd + slash, name, nn + 1);
    return p;
}

int lh_is_dir(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int lh_path_exists(const char *path)
{
    struct stat sb;
    return path && lstat(path, &sb) == 0;
}

int64_t lh_file_size(const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || S_ISDIR(sb.st_mode))
        return -1;
    return (int64_t)sb.st_size;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        return rmdir(path);
    return unlink(path);
}

int lh_rmtree(const char *path)
{
    struct stat sb;
    if (!path)
        return -1;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode))
        return unlink(path);
    /* FTW_PHYS: never follow a symlink out of the tree being removed */
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* What a file that is not a regular file is, for messages. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

/* Open path for reading without ever blocking in open(): a FIFO without a
 * writer blocks a plain open() forever, a device may never end. stat first
 * (no open at all for devices, sockets, directories), then O_NONBLOCK, and
 * fstat again in case the path changed in between. allow_pipe keeps a FIFO
 * open (non-blocking) for lh_read_file; otherwise only regular files pass. */
static lh_status open_for_read(const char *path, int allow_pipe, int *out_fd, struct stat *sb,
                               lh_error *err)
{
    *out_fd = -1;
    for (int pass = 0; pass < 2; pass++) {
        if ((pass == 0 ? stat(path, sb) : fstat(*out_fd, sb)) != 0) {
            int e = errno;
            if (*out_fd >= 0)
                close(*out_fd);
            *out_fd = -1;
            return lh_error_errno(err, e == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, e,
                                  "cannot open '%s'", path);
        }
        if (!S_ISREG(sb->st_mode) && !(allow_pipe && S_ISFIFO(sb->st_mode))) {
            if (*out_fd >= 0)
                close(*out_fd);
            *out_fd = -1;
            return lh_error_set(err, LH_ERR_IO, "cannot read '%s': it is %s, not a regular file",
                                path, file_kind(sb->st_mode));
        }
        if (pass == 0 && (*out_fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
            return lh_error_errno(err, errno == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, errno,
                                  "cannot open '%s'", path);
    }
    if (S_ISREG(sb->st_mode)) {
        int fl = fcntl(*out_fd, F_GETFL);
        if (fl >= 0)
            fcntl(*out_fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return LH_OK;
}

lh_status lh_open_regular(const char *path, int *out_fd, uint64_t *size, lh_error *err)
{
    struct stat sb;
    lh_status st = open_for_read(path, 0, out_fd, &sb, err);
    if (st == LH_OK && size)
        *size = (uint64_t)sb.st_size;
    return st;
}

lh_status lh_map_regular(const char *path, int *out_fd, void **map, size_t *size, lh_error *err)
{
    uint64_t fsize = 0;
    *map = NULL;
    *size = 0;
    lh_status st = lh_open_regular(path, out_fd, &fsize, err);
    if (st != LH_OK || fsize == 0)
        return st;
    void *m = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, *out_fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        close(*out_fd);
        *out_fd = -1;
        return lh_error_errno(err, LH_ERR_IO, e, "cannot map '%s'", path);
    }
    *map = m;
    *size = (size_t)fsize;
    return LH_OK;
}

/* A pipe opened non-blocking: a writer that has not written yet answers
 * EAGAIN (then wait for it, blocking, as any reader of a pipe would); no
 * writer at all answers 0 at once, which would otherwise have been the
 * open() that never returns: refused. */
static lh_status pipe_first_read(int fd, const char *path, char *buf, size_t cap, size_t *len,
                                 lh_error *err)
{
    ssize_t r;
    do
        r = read(fd, buf, cap);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return lh_error_set(err, LH_ERR_IO, "cannot read '%s': it is a FIFO with no writer "
                                            "(lorahub reads regular files, or pipes being written)",
                            path);
    if (r < 0 && errno != EAGAIN)
        return lh_error_errno(err, LH_ERR_IO, errno, "cannot read '%s'", path);
    *len = r > 0 ? (size_t)r : 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return lh_error_errno(err, LH_ERR_IO, errno, "cannot read '%s'", path);
    return LH_OK;
}

lh_status lh_read_file(const char *path, char **out, size_t *out_len, lh_error *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    int fd;
    struct stat sb;
    lh_status st = open_for_read(path, 1, &fd, &sb, err);
    if (st != LH_OK)
        return st;
    /* st_size is a hint (pipes, /proc files report 0); read to EOF anyway */
    size_t cap = S_ISREG(sb.st_mode) && sb.st_size > 0 ? (size_t)sb.st_size + 1 : 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return lh_error_set(err, LH_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    if (S_ISFIFO(sb.st_mode) && (st = pipe_first_read(fd, path, buf, cap - 1, &len, err))) {
        free(buf);
        close(fd);
        return st;
    }
    for (;;) {
        if (cap - len < 2) {
            char *t = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!t) {
                free(buf);
                close(fd);
                return lh_error_set(err, LH_ERR_NOMEM, "cannot read '%s': out of memory", path);
            }
            buf = t;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return lh_error_errno(err, LH_ERR_IO, e, "cannot read '%s'", path);
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    if (out_len)
        *out_len = len;
    return LH_OK;
}

/* "<path>.tmp.XXXXXX" with a fresh random-ish suffix. */
static char *temp_name(const char *path)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long x = (unsigned long long)ts.tv_nsec * 2654435761u ^
                           (unsigned long long)getpid() << 20 ^ (unsigned long long)ts.tv_sec ^
                           (unsigned long long)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED)
                               * 0x9e3779b97f4a7c15ull;
    size_t n = strlen(path);
    char *t = malloc(n + 12);
    if (!t)
        return NULL;
    memcpy(t, path, n);
    memcpy(t + n, ".tmp.", 5);
    for (int i = 0; i < 6; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[n + 5 + i] = alpha[(x >> 33) % 36];
    }
    t[n + 11] = '\0';
    return t;
}

/* fsync the directory holding path, so a rename into it is durable. */
static void sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse fsync on dirs */
        close(fd);
    }
    free(dir);
}

lh_status lh_atomic_begin(lh_atomic_file *f, const char *path, lh_error *err)
{
    f->fd = -1;
    f->tmp_path = NULL;
    f->final_path = strdup(path);
    if (!f->final_path)
        return lh_error_set(err, LH_ERR_NOMEM, "cannot write '%s': out of memory", path);
    for (int tries = 0; tries < 100; tries++) {
        free(f->tmp_path);
        f->tmp_path = temp_name(path);
        if (!f->tmp_path)
            break;
        lh_temp_register(f->tmp_path); /* before it exists, as for directories */
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0)
            return LH_OK;
        int saved = errno;
        lh_temp_unregister(f->tmp_path);
        errno = saved;
        if (errno != EEXIST) {
            int e = errno;
            lh_atomic_abort(f);
            return lh_error_errno(err, e == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, e,
                                  "cannot create a file next to '%s'", path);
        }
    }
    lh_atomic_abort(f);
    return lh_error_set(err, LH_ERR_IO, "cannot create a temporary file next to '%s'", path);
}

lh_status lh_atomic_write(lh_atomic_file *f, const void *data, size_t len, lh_error *err)
{
    const char *p = data;
    while (len) {
        /* large writes go in pieces: Linux caps one write() near 2 GiB */
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return lh_error_errno(err, LH_ERR_IO, w < 0 ? errno : EIO, "cannot write '%s'",
                                  f->final_path);
        p += w;
        len -= (size_t)w;
    }
    return LH_OK;
}

lh_status lh_atomic_commit(lh_atomic_file *f, lh_error *err)
{
    lh_status st = LH_OK;
    if (fsync(f->fd) != 0)
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot write '%s'", f->final_path);
    if (close(f->fd) != 0 && !st)
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot write '%s'", f->final_path);
    f->fd = -1;
    if (!st && rename(f->tmp_path, f->final_path) != 0)
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot rename a temporary file to '%s'",
                            f->final_path);
    if (!st) {
        sync_parent(f->final_path);
        lh_temp_unregister(f->tmp_path);
        free(f->tmp_path);
        f->tmp_path = NULL;
    }
    lh_atomic_abort(f);
    return st;
}

void lh_atomic_abort(lh_atomic_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    lh_temp_unregister(f->tmp_path);
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->final_path);
    f->tmp_path = NULL;
    f->final_path = NULL;
}

lh_status lh_write_file_atomic(const char *path, const void *data, size_t len, lh_error *err)
{
    lh_atomic_file f;
    lh_status st = lh_atomic_begin(&f, path, err);
    if (st)
        return st;
    st = lh_atomic_write(&f, data, len, err);
    if (st) {
        lh_atomic_abort(&f);
        return st;
    }
    return lh_atomic_commit(&f, err);
}

/* ---------------------------------------------------------------- outdir */

static void outdir_clear(lh_outdir *od)
{
    lh_temp_unregister(od->tmp_path);
    free(od->final_path);
    free(od->tmp_path);
    od->final_path = NULL;
    od->tmp_path = NULL;
}

lh_status lh_outdir_begin(lh_outdir *od, const char *final_path, int force, lh_error *err)
{
    od->final_path = NULL;
    od->tmp_path = NULL;
    od->force = force;
    if (!final_path || !*final_path)
        return lh_error_set(err, LH_ERR_ARG, "empty output directory name");
    if (lh_path_is_stdout(final_path))
        return lh_error_set(err, LH_ERR_ARG, LH_STDOUT_DIR_MSG);
    if (!force && lh_path_exists(final_path))
        return lh_error_set(err, LH_ERR_EXISTS, "'%s' already exists", final_path);
    /* strip trailing slashes so "<final>.tmp.X" lands next to it, not inside */
    size_t n = strlen(final_path);
    while (n > 1 && final_path[n - 1] == '/')
        n--;
    od->final_path = strndup(final_path, n);
    if (!od->final_path)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (int tries = 0; tries < 100; tries++) {
        free(od->tmp_path);
        od->tmp_path = temp_name(od->final_path);
        if (!od->tmp_path)
            break;
        /* Registered before it exists: a handler running in any thread
         * (OpenBLAS's too) between the two would otherwise miss it. */
        lh_temp_register(od->tmp_path);
        if (mkdir(od->tmp_path, 0777) == 0)
            return LH_OK;
        int saved = errno;
        lh_temp_unregister(od->tmp_path);
        errno = saved;
        if (errno != EEXIST) {
            int e = errno;
            free(od->tmp_path);
            od->tmp_path = NULL;
            lh_status st = lh_error_errno(err, e == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, e,
                                          "cannot create a directory next to '%s'", od->final_path);
            outdir_clear(od);
            return st;
        }
    }
    outdir_clear(od);
    return lh_error_set(err, LH_ERR_IO, "cannot create a temporary directory next to '%s'",
                        final_path);
}

void lh_outdir_name_final(const lh_outdir *od, lh_error *err)
{
    if (!od || !od->tmp_path || !od->final_path || !err)
        return;
    char *at = strstr(err->msg, od->tmp_path);
    if (!at)
        return;
    char tmp[sizeof err->msg];
    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(at - err->msg), err->msg, od->final_path,
             at + strlen(od->tmp_path));
    memcpy(err->msg, tmp, sizeof tmp);
}

char *lh_outdir_file(const lh_outdir *od, const char *name)
{
    return od && od->tmp_path ? lh_path_join(od->tmp_path, name) : NULL;
}

lh_status lh_outdir_commit(lh_outdir *od, lh_error *err)
{
    if (!od->tmp_path)
        return lh_error_set(err, LH_ERR_ARG, "output directory was not started");
    lh_status st = LH_OK;
    char *old = NULL;
    if (lh_path_exists(od->final_path)) {
        if (!od->force) {
            st = lh_error_set(err, LH_ERR_EXISTS, "'%s' already exists", od->final_path);
            goto out;
        }
        /* move the old output aside first: the final name is never missing
         * a complete directory for longer than between two renames */
        for (int tries = 0; tries < 100 && !old; tries++) {
            old = temp_name(od->final_path);
            if (!old)
                break;
            if (lh_path_exists(old)) {
                free(old);
                old = NULL;
            }
        }
        if (!old || rename(od->final_path, old) != 0) {
            st = lh_error_errno(err, LH_ERR_IO, old ? errno : ENOMEM, "cannot replace '%s'",
                                od->final_path);
            free(old);
            old = NULL;
            goto out;
        }
    }
    if (rename(od->tmp_path, od->final_path) != 0) {
        int e = errno;
        if (old && rename(old, od->final_path) == 0) { /* put the old one back */
            free(old);
            old = NULL;
        }
        st = lh_error_errno(err, LH_ERR_IO, e, "cannot rename the new directory to '%s'",
                            od->final_path);
        goto out;
    }
    lh_temp_unregister(od->tmp_path);
    free(od->tmp_path);
    od->tmp_path = NULL;
    sync_parent(od->final_path);
    if (old)
        lh_rmtree(old);
out:
    free(old);
    lh_outdir_abort(od);
    return st;
}

void lh_outdir_abort(lh_outdir *od)
{
    if (!od)
        return;
    if (od->tmp_path)
        lh_rmtree(od->tmp_path);
    outdir_clear(od);
}

double lh_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
