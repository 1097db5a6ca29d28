/* lib/tempreg.c - temporaries a signal handler can remove (see tempreg.h).
 *
 * A slot's path is written before its "used" flag is set and the flag is
 * cleared before the slot is reused, so a handler that interrupts either
 * sees a complete path or none. Directories are walked with getdents64
 * and unlinkat (async-signal-safe), not opendir. */
#include "tempreg.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLOTS 32
#define MAX_DEPTH 4

static struct {
    volatile sig_atomic_t used;
    char path[PATH_MAX];
} slots[SLOTS];

void lh_temp_register(const char *path)
{
    if (!path || strlen(path) >= PATH_MAX)
        return;
    for (int i = 0; i < SLOTS; i++)
        if (!slots[i].used) {
            memcpy(slots[i].path, path, strlen(path) + 1);
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            slots[i].used = 1;
            return;
        }
}

void lh_temp_unregister(const char *path)
{
    for (int i = 0; path && i < SLOTS; i++)
        if (slots[i].used && !strcmp(slots[i].path, path)) {
            slots[i].used = 0;
            return;
        }
}

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Remove what dirfd holds, then nothing else; entries deeper than
 * MAX_DEPTH stay (and so does their directory). */
static void empty_dir(int dirfd, int depth)
{
    char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
        if (n <= 0)
            return;
        int removed = 0;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
                continue;
            if (unlinkat(dirfd, d->d_name, 0) == 0) {
                removed = 1;
                continue;
            }
            if (depth >= MAX_DEPTH)
                continue;
            int sub = openat(dirfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                empty_dir(sub, depth + 1);
                close(sub);
                removed |= unlinkat(dirfd, d->d_name, AT_REMOVEDIR) == 0;
            }
        }
        if (removed) /* the directory changed under the read offset: read it again */
            lseek(dirfd, 0, SEEK_SET);
    }
}

void lh_temp_remove_all(void)
{
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i].used)
            continue;
        const char *p = slots[i].path;
        if (unlink(p) != 0) {
            int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0) {
                empty_dir(fd, 1);
                close(fd);
                rmdir(p);
            }
        }
        slots[i].used = 0;
    }
}
