/* lib/tempreg.h - the temporary files and directories being written right
 * now, so that a signal handler can remove them before the process dies.
 *
 * lib/fsutil registers every "<final>.tmp.XXXXXX" it creates and forgets
 * it on commit or abort; other temporaries (a trace, the exec backend's
 * directory) register themselves. A fixed table: registering beyond its
 * size is ignored (the temporary is then only removed by the normal path,
 * or as a stale temporary by the next run on that output). */
#ifndef LH_TEMPREG_H
#define LH_TEMPREG_H

void lh_temp_register(const char *path);
void lh_temp_unregister(const char *path);
/* Remove every registered path (files, and directory trees a few levels
 * deep) using only async-signal-safe calls: for a signal handler that is
 * about to end the process. */
void lh_temp_remove_all(void);

#endif
