#include "kv_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kv_atomic_open(kv_atomic_file *af, const char *path, kv_error *err) {
  memset(af, 0, sizeof *af);
  if (strlen(path) >= sizeof af->path) return kv_error_set(err, KV_EINVAL, "path too long");
  snprintf(af->path, sizeof af->path, "%s", path);
  snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
  af->f = fopen(af->tmp, "w");
  if (!af->f) {
    return kv_error_set(err, KV_EIO, "%s: cannot create: %s", af->tmp, strerror(errno));
  }
  return 0;
}

int kv_atomic_rename(const char *tmp, const char *path, kv_error *err) {
  int fd = open(tmp, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return kv_error_set(err, KV_EIO, "%s: cannot rename into place: %s", path, strerror(e));
  }
  return 0;
}

int kv_atomic_commit(kv_atomic_file *af, kv_error *err) {
  if (!af->f) return kv_error_set(err, KV_ESTATE, "%s: not open", af->path);
  int bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
  int e = errno;
  if (fclose(af->f) != 0) bad = 1;
  af->f = NULL;
  if (bad) {
    remove(af->tmp);
    return kv_error_set(err, KV_EIO, "%s: write failed: %s", af->path, strerror(e));
  }
  return kv_atomic_rename(af->tmp, af->path, err);
}

void kv_atomic_abort(kv_atomic_file *af) {
  if (af->f) {
    fclose(af->f);
    af->f = NULL;
  }
  if (af->tmp[0]) remove(af->tmp);
}

int kv_mkdirs(const char *dir, kv_error *err) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof buf) return kv_error_set(err, KV_EINVAL, "bad directory name");
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        return kv_error_set(err, KV_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
      }
      buf[i] = c;
    }
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return kv_error_set(err, KV_EIO, "%s: exists and is not a directory", dir);
  }
  return 0;
}

int kv_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int kv_read_file(const char *path, char **out, size_t *len, kv_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - 1 - n, f);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return kv_error_set(err, KV_EIO, "%s: read error", path);
  }
  buf[n] = '\0';
  *out = buf;
  if (len) *len = n;
  return 0;
}
