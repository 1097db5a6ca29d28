/* tests/tools/shim/write_faults.c - an LD_PRELOAD shim that makes writes
 * fail, for tests/cli/test-write-faults.sh (a full disk or a dying one,
 * without root or a small tmpfs).
 *
 * Faultable calls: write, pwrite, writev on a regular file (fd > 2); fsync,
 * fdatasync and close of a regular file open for writing; rename, renameat,
 * renameat2; fflush and fclose of a stream on such a file. They are counted
 * in order; from the call numbered LH_FAULT_AFTER + 1 on (or only that one
 * with LH_FAULT_ONCE=1) each fails with LH_FAULT_ERRNO (ENOSPC, the
 * default, or EIO) and has no effect, except close and fclose, which still
 * release the descriptor as the kernel does when close reports an error.
 * Without LH_FAULT_AFTER nothing fails. LH_FAULT_COUNT_FILE names a file
 * that receives the number of faultable calls at exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static long fault_after = -1; /* -1: never fail */
static int fault_once, fault_errno = ENOSPC;
static long calls;

__attribute__((constructor)) static void init(void)
{
    const char *a = getenv("LH_FAULT_AFTER"), *e = getenv("LH_FAULT_ERRNO"),
               *o = getenv("LH_FAULT_ONCE");
    if (a && *a)
        fault_after = strtol(a, NULL, 10);
    if (e && !strcmp(e, "EIO"))
        fault_errno = EIO;
    fault_once = o && !strcmp(o, "1");
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("LH_FAULT_COUNT_FILE");
    if (!path || !*path)
        return;
    int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    ssize_t (*real_write)(int, const void *, size_t) =
        (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    int (*real_close)(int) = (int (*)(int))dlsym(RTLD_NEXT, "close");
    int fd = real_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", calls);
    if (real_write(fd, buf, (size_t)n) != n)
        n = 0;
    real_close(fd);
}

/* A regular file, and (for sync and close) one open for writing. */
static int is_output(int fd, int need_writable)
{
    struct stat sb;
    if (fd <= 2 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    if (!need_writable)
        return 1;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

/* Count one faultable call; non-zero when it must fail. */
static int should_fail(void)
{
    long n = ++calls;
    if (fault_after < 0)
        return 0;
    return fault_once ? n == fault_after + 1 : n > fault_after;
}

#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (is_output(fd, 0) && should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (is_output(fd, 0) && should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_pwrite(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    if (is_output(fd, 0) && should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

int fsync(int fd)
{
    REAL(fsync);
    if (is_output(fd, 1) && should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    if (is_output(fd, 1) && should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_fdatasync(fd);
}

int close(int fd)
{
    REAL(close);
    int fail = is_output(fd, 1) && should_fail();
    int rc = real_close(fd);
    if (fail) {
        errno = fault_errno;
        return -1;
    }
    return rc;
}

int rename(const char *from, const char *to)
{
    REAL(rename);
    if (should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
    REAL(renameat);
    if (should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    REAL(renameat2);
    if (should_fail()) {
        errno = fault_errno;
        return -1;
    }
    return real_renameat2(fd1, from, fd2, to, flags);
}

/* stdio writes through glibc's internal write, out of the shim's reach:
 * its errors surface at fflush and fclose, which are faulted instead. */
int fflush(FILE *f)
{
    REAL(fflush);
    if (f && is_output(fileno(f), 1) && should_fail()) {
        errno = fault_errno;
        return EOF;
    }
    return real_fflush(f);
}

int fclose(FILE *f)
{
    REAL(fclose);
    int fail = f && is_output(fileno(f), 1) && should_fail();
    int rc = real_fclose(f);
    if (fail) {
        errno = fault_errno;
        return EOF;
    }
    return rc;
}
