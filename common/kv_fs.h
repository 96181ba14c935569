/* kv_fs.h — output files that are never half-written and never replace what they should not,
 * the record of what a run read, content hashes, and directory creation.
 *
 * Outputs. Every tool writes its files through kv_atomic_*:
 *   - the destination must be a regular file or absent: a symbolic link, FIFO, device, socket or
 *     directory at the path is refused with an error naming the path and what is there (a rename
 *     would replace the link or the device node itself: `-o /dev/null` would delete /dev/null);
 *   - the data go to a temporary file beside the destination ("<path>.tmp.<pid>[.<n>]", created
 *     with O_EXCL, so it never follows or reuses something already there); kv_atomic_commit()
 *     flushes, fsyncs, checks the destination again and renames the temporary file over it, so a
 *     reader (or a resumed sweep) sees the old file or the whole new one, never a partial one;
 *   - the temporary file is removed on every error path (kv_atomic_abort, a failed commit), at
 *     exit() when it was neither committed nor aborted (a tool that dies half-way), and on
 *     SIGINT / SIGTERM / SIGHUP (the handler, installed only where the signal's action is still
 *     the default, removes the open temporary files and re-raises the signal).
 *   - where a tool documents "-" as standard output, KV_OUT_STDOUT makes "-" stream to stdout
 *     (no temporary file; commit only flushes).
 * The registry behind the cleanup holds KV_OUT_MAX open outputs per process; beyond that an
 * output still works but is cleaned only by abort/commit. Opening and committing are meant for
 * one thread at a time per output; the registry itself is locked.
 *
 * Inputs. kv_fs_note_input() appends the absolute path of a file a run reads to the file named
 * by the environment variable KVLAB_DEPFILE (when set): the sweep runner sets it for each point
 * and keys the point by the content of everything listed (experiments/xp_sweep.h). kv_config_load,
 * kv_read_file and kv_h5_open_read note their files; any other reader of an input calls it.
 */
#ifndef KV_FS_H
#define KV_FS_H

#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

#define KV_OUT_MAX 64

/* kv_atomic_open2 flags */
#define KV_OUT_STDOUT 1u /* "-" is standard output (streamed, nothing renamed) */

typedef struct kv_atomic_file {
  FILE *f;            /* the stream to write; NULL after kv_atomic_reserve */
  char path[4096];    /* the destination */
  char tmp[4096 + 64];/* the temporary file beside it ("" when streaming to stdout) */
  int slot;           /* cleanup registry slot, -1 when not registered */
  int stream;         /* 1: f is stdout */
} kv_atomic_file;

/* 0 when `path` names nothing or a regular file (something an output may replace); otherwise
 * KV_EINVAL with a message naming the path and what it is (symbolic link, FIFO, character or
 * block device, socket, directory), or KV_EIO when it cannot be examined. */
int kv_out_check(const char *path, kv_error *err);

/* Opens a temporary file beside `path` for writing (after kv_out_check). The caller writes to
 * af->f, then calls kv_atomic_commit or kv_atomic_abort exactly once. */
int kv_atomic_open(kv_atomic_file *af, const char *path, kv_error *err);
int kv_atomic_open2(kv_atomic_file *af, const char *path, unsigned flags, kv_error *err);
/* For writers that need a path rather than a stream (HDF5): checks `path`, creates the empty
 * temporary file af->tmp (registered for cleanup) and leaves af->f NULL; the caller writes
 * af->tmp by name (truncating it), closes it, then commits or aborts. */
int kv_atomic_reserve(kv_atomic_file *af, const char *path, kv_error *err);
/* Flushes, fsyncs and closes the stream (if any), re-checks the destination and renames the
 * temporary file over it. On failure the temporary file is removed and the destination is
 * untouched. */
int kv_atomic_commit(kv_atomic_file *af, kv_error *err);
/* Closes and removes the temporary file; the destination is untouched. Safe to call twice. */
void kv_atomic_abort(kv_atomic_file *af);

/* Renames an already written temporary file `tmp` over `path` after fsync, refusing (and
 * removing tmp) when path is not a regular file or absent. Prefer kv_atomic_reserve/commit,
 * which also clean up on signals. */
int kv_atomic_rename(const char *tmp, const char *path, kv_error *err);

/* mkdir -p: creates `dir` and its parents (mode 0777 & ~umask). Existing directories are fine. */
int kv_mkdirs(const char *dir, kv_error *err);

/* rm -r: removes `path` and, when it is a directory, everything under it (symbolic links are
 * removed, never followed). A missing path is fine. */
int kv_remove_tree(const char *path, kv_error *err);

/* 1 when `path` exists (any type), 0 otherwise. */
int kv_path_exists(const char *path);

/* Reads a whole file into a malloc'ed, NUL-terminated buffer (*len excludes the NUL). */
int kv_read_file(const char *path, char **out, size_t *len, kv_error *err);

/* Notes that the run reads `path` (see "Inputs" above). Never fails the run: a depfile that
 * cannot be written is reported once on stderr. */
void kv_fs_note_input(const char *path);

/* FNV-1a (64-bit) of a file's bytes, and its size. Not cryptographic: it tells a changed input
 * from an unchanged one. */
int kv_hash_file(const char *path, uint64_t *hash, int64_t *size, kv_error *err);

#endif /* KV_FS_H */
