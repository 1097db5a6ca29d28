/* lib/outpath.h - where outputs may go: never onto an input or another
 * output, and never onto an output another run is writing.
 *
 * Paths are compared after resolving symlinks and "..": an output that
 * does not exist yet is its deepest existing parent, resolved, plus the
 * rest of its name. */
#ifndef LH_OUTPATH_H
#define LH_OUTPATH_H

#include "status.h"

/* The absolute, resolved form of path (which need not exist), malloc'd;
 * NULL when out of memory. */
char *lh_path_resolved(const char *path);
/* 1 when the resolved paths a and b are the same, or one lies inside the
 * other (a directory and a file under it). */
int lh_paths_overlap(const char *a, const char *b);

/* An exclusive lock on an output: flock on "<path>.lock", which holds the
 * owner's pid and is removed on release. Locks die with their process, so
 * a lock file a killed run left behind is taken over. */
typedef struct lh_path_lock {
    int fd;           /* -1 when not held */
    char *lock_path;
} lh_path_lock;

void lh_path_lock_init(lh_path_lock *l);
/* LH_ERR_EXISTS, naming what and path (and the owner's pid), when another
 * process holds it. */
lh_status lh_path_lock_take(lh_path_lock *l, const char *path, const char *what, lh_error *err);
void lh_path_lock_release(lh_path_lock *l); /* safe on an initialized, unheld lock */

/* Remove "<path>.tmp.XXXXXX" files and directories (XXXXXX: 6 letters or
 * digits) that an earlier run killed while writing path left behind. Call
 * it only while holding path's lock. Returns how many were removed. */
int lh_remove_stale_temps(const char *path);

#endif
