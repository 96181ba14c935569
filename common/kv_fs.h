/* kv_fs.h — files that are never left half-written, and directory creation.
 *
 * kv_atomic_open() returns a FILE* to a temporary file beside `path` ("path.tmp.<pid>");
 * kv_atomic_commit() flushes, fsyncs and renames it over `path`, so a reader (or a resumed sweep)
 * sees either the old file or the complete new one, never a partial one. kv_atomic_abort()
 * removes the temporary file. */
#ifndef KV_FS_H
#define KV_FS_H

#include <stdio.h>

#include "kv_err.h"

typedef struct kv_atomic_file {
  FILE *f;
  char path[4096];
  char tmp[4096 + 32];
} kv_atomic_file;

int kv_atomic_open(kv_atomic_file *af, const char *path, kv_error *err);
int kv_atomic_commit(kv_atomic_file *af, kv_error *err);
void kv_atomic_abort(kv_atomic_file *af);

/* Renames an already written temporary file `tmp` over `path` after fsync (for files written by
 * libraries that want a path, such as HDF5). */
int kv_atomic_rename(const char *tmp, const char *path, kv_error *err);

/* mkdir -p: creates `dir` and its parents (mode 0777 & ~umask). Existing directories are fine. */
int kv_mkdirs(const char *dir, kv_error *err);

/* 1 when `path` exists (any type), 0 otherwise. */
int kv_path_exists(const char *path);

/* Reads a whole file into a malloc'ed, NUL-terminated buffer (*len excludes the NUL). */
int kv_read_file(const char *path, char **out, size_t *len, kv_error *err);

#endif /* KV_FS_H */
