/* lib/fsutil.h - files and directories written atomically.
 *
 * Every output of lorahub is written under a temporary name in the same
 * directory and renamed into place, so an error or a signal never leaves a
 * half-written file or directory behind. */
#ifndef LH_FSUTIL_H
#define LH_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "status.h"

/* Read a whole file into a malloc'd, NUL-terminated buffer: a regular file,
 * or a pipe being written (`<(cmd)`); a FIFO without a writer, a device, a
 * socket or a directory is refused at once (never a blocked open). */
lh_status lh_read_file(const char *path, char **out, size_t *out_len, lh_error *err);
/* Open a regular file for reading (*out_fd, its size in *size if not
 * NULL); anything else (FIFO, device, socket, directory) is refused without
 * blocking, naming what it is. */
lh_status lh_open_regular(const char *path, int *out_fd, uint64_t *size, lh_error *err);
/* lh_open_regular, then the whole file mapped read-only: *map [*size]
 * bytes, NULL for an empty file; *out_fd stays open for the caller. */
lh_status lh_map_regular(const char *path, int *out_fd, void **map, size_t *size, lh_error *err);
/* Write data to path via "<path>.tmp.XXXXXX" + fsync + rename. */
lh_status lh_write_file_atomic(const char *path, const void *data, size_t len, lh_error *err);

/* A file written in pieces (e.g. safetensors data streamed tensor by tensor):
 * begin creates "<path>.tmp.XXXXXX", commit fsyncs, renames and releases f
 * (on failure too, removing the temp file), abort removes it. */
typedef struct lh_atomic_file {
    int fd;
    char *tmp_path;
    char *final_path;
} lh_atomic_file;

lh_status lh_atomic_begin(lh_atomic_file *f, const char *path, lh_error *err);
lh_status lh_atomic_write(lh_atomic_file *f, const void *data, size_t len, lh_error *err);
lh_status lh_atomic_commit(lh_atomic_file *f, lh_error *err);
void lh_atomic_abort(lh_atomic_file *f); /* safe after commit */

/* A directory being built: files go into tmp_path, lh_outdir_commit renames
 * it to final_path (replacing an existing directory only when force was
 * given at begin), lh_outdir_abort removes it. */
typedef struct lh_outdir {
    char *final_path;
    char *tmp_path;
    int force;
} lh_outdir;

/* "-" names standard output, which cannot hold a directory: every output
 * directory refuses it with this message (before any work, where it can). */
#define LH_STDOUT_DIR_MSG \
    "'-' is standard output, which cannot hold an adapter directory (for a directory named '-', " \
    "write ./-)"
static inline int lh_path_is_stdout(const char *path) { return path && !strcmp(path, "-"); }

/* Refuses (LH_ERR_EXISTS) when final_path exists and force is 0; refuses "-". */
lh_status lh_outdir_begin(lh_outdir *od, const char *final_path, int force, lh_error *err);
/* "<tmp_path>/<name>", malloc'd. */
char *lh_outdir_file(const lh_outdir *od, const char *name);
/* Always releases od; on failure the temp directory is removed and an
 * existing final_path is left as it was. */
lh_status lh_outdir_commit(lh_outdir *od, lh_error *err);
void lh_outdir_abort(lh_outdir *od); /* safe after commit or on a zeroed od */
/* An error about a file inside the temporary directory names the output
 * the user asked for instead ("out/adapter_model.safetensors", not
 * "out.tmp.x1y2z3/..."): call before lh_outdir_abort. */
void lh_outdir_name_final(const lh_outdir *od, lh_error *err);

/* Remove a directory tree (used for temp dirs) or a file, never following
 * symlinks. Returns 0 on success or when path does not exist. */
int lh_rmtree(const char *path);
int lh_is_dir(const char *path);
int lh_path_exists(const char *path);
/* The last component of path without trailing slashes ("a/b/" -> "b", "/" ->
 * ""): a pointer into path, its length in *len (not NUL-terminated). */
const char *lh_path_base(const char *path, size_t *len);
/* malloc'd "dir/name". */
char *lh_path_join(const char *dir, const char *name);
/* Size of a file in bytes, or -1. */
int64_t lh_file_size(const char *path);
/* Seconds on the monotonic clock (for durations only). */
double lh_monotonic_seconds(void);

#endif
