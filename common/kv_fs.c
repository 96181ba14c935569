/* realpath (X/Open), on top of the POSIX 2008 the build defines */
#define _XOPEN_SOURCE 700

#include "kv_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- cleanup registry ----------------------------------------------------------------------
 * Slots hold the names of open temporary files. The signal handler reads them without locking:
 * a slot's name is written before `used` is set and `used` is cleared before the name changes,
 * so the handler sees either no name or a whole one. */

typedef struct kv__slot {
  volatile sig_atomic_t used;
  char tmp[4096 + 64];
} kv__slot;

static kv__slot kv__slots[KV_OUT_MAX];
static pthread_mutex_t kv__lock = PTHREAD_MUTEX_INITIALIZER;
static int kv__hooks_installed;

static void kv__remove_all(void) {
  for (int i = 0; i < KV_OUT_MAX; i++) {
    if (kv__slots[i].used) unlink(kv__slots[i].tmp);
  }
}

static void kv__on_signal(int sig) {
  kv__remove_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void kv__at_exit(void) { kv__remove_all(); }

/* Installs the exit hook and, for each signal still at its default action, the handler. */
static void kv__install_hooks(void) {
  if (kv__hooks_installed) return;
  kv__hooks_installed = 1;
  atexit(kv__at_exit);
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old;
    if (sigaction(sigs[i], NULL, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue; /* the tool's own */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kv__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sigs[i], &sa, NULL);
  }
}

static int kv__register(const char *tmp) {
  pthread_mutex_lock(&kv__lock);
  kv__install_hooks();
  int slot = -1;
  for (int i = 0; i < KV_OUT_MAX; i++) {
    if (!kv__slots[i].used) {
      snprintf(kv__slots[i].tmp, sizeof kv__slots[i].tmp, "%s", tmp);
      kv__slots[i].used = 1;
      slot = i;
      break;
    }
  }
  pthread_mutex_unlock(&kv__lock);
  return slot;
}

static void kv__unregister(kv_atomic_file *af) {
  if (af->slot < 0) return;
  pthread_mutex_lock(&kv__lock);
  kv__slots[af->slot].used = 0;
  pthread_mutex_unlock(&kv__lock);
  af->slot = -1;
}

/* ---- outputs ----------------------------------------------------------------------------------- */

int kv_out_check(const char *path, kv_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return 0;
    return kv_error_set(err, KV_EIO, "%s: cannot examine the output path: %s", path,
                        strerror(errno));
  }
  const char *what = NULL;
  if (S_ISREG(st.st_mode)) return 0;
  if (S_ISLNK(st.st_mode)) {
    char to[1024];
    ssize_t n = readlink(path, to, sizeof to - 1);
    to[n > 0 ? n : 0] = '\0';
    int fd_link = !strncmp(to, "/proc/self/fd/", 14);
    return kv_error_set(err, KV_EINVAL, "%s: is a symbolic link (to '%s'); refusing to replace "
                        "it with a regular file: %s", path, to,
                        fd_link ? "for standard output give '-' where the tool takes it"
                                : "name the file itself");
  }
  if (S_ISDIR(st.st_mode)) what = "a directory";
  else if (S_ISFIFO(st.st_mode)) what = "a FIFO (named pipe)";
  else if (S_ISCHR(st.st_mode)) what = "a character device";
  else if (S_ISBLK(st.st_mode)) what = "a block device";
  else if (S_ISSOCK(st.st_mode)) what = "a socket";
  else what = "not a regular file";
  return kv_error_set(err, KV_EINVAL, "%s: is %s; an output replaces only a regular file or "
                      "nothing (name a file path%s)", path, what,
                      S_ISDIR(st.st_mode) ? " inside it" : "");
}

/* Creates a fresh temporary file beside path; returns an fd or a negative status. */
static int kv__make_tmp(kv_atomic_file *af, kv_error *err) {
  int e = 0;
  for (int k = 0; k < 100; k++) {
    if (k == 0) snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", af->path, (long)getpid());
    else snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld.%d", af->path, (long)getpid(), k);
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      af->slot = kv__register(af->tmp);
      return fd;
    }
    e = errno;
    if (e != EEXIST) break;
  }
  int rc = kv_error_set(err, KV_EIO, "%s: cannot create a temporary file beside it (%s): %s",
                        af->path, af->tmp, strerror(e));
  af->tmp[0] = '\0';
  return rc;
}

static int kv__begin(kv_atomic_file *af, const char *path, kv_error *err) {
  memset(af, 0, sizeof *af);
  af->slot = -1;
  if (!path || !path[0]) return kv_error_set(err, KV_EINVAL, "empty output path");
  if (strlen(path) >= sizeof af->path) {
    return kv_error_set(err, KV_EINVAL, "%.200s...: output path too long", path);
  }
  snprintf(af->path, sizeof af->path, "%s", path);
  return kv_out_check(path, err);
}

int kv_atomic_open2(kv_atomic_file *af, const char *path, unsigned flags, kv_error *err) {
  if ((flags & KV_OUT_STDOUT) && path && !strcmp(path, "-")) {
    memset(af, 0, sizeof *af);
    af->slot = -1;
    af->stream = 1;
    af->f = stdout;
    snprintf(af->path, sizeof af->path, "<stdout>");
    return 0;
  }
  int rc = kv__begin(af, path, err);
  if (rc) return rc;
  int fd = kv__make_tmp(af, err);
  if (fd < 0) return fd;
  af->f = fdopen(fd, "w");
  if (!af->f) {
    int e = errno;
    close(fd);
    kv_atomic_abort(af);
    return kv_error_set(err, KV_EIO, "%s: cannot open a stream: %s", path, strerror(e));
  }
  return 0;
}

int kv_atomic_open(kv_atomic_file *af, const char *path, kv_error *err) {
  return kv_atomic_open2(af, path, 0, err);
}

int kv_atomic_reserve(kv_atomic_file *af, const char *path, kv_error *err) {
  int rc = kv__begin(af, path, err);
  if (rc) return rc;
  int fd = kv__make_tmp(af, err);
  if (fd < 0) return fd;
  close(fd);
  return 0;
}

/* fsync, check, rename; removes tmp on failure. */
static int kv__finish(const char *tmp, const char *path, kv_error *err) {
  int fd = open(tmp, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  int rc = kv_out_check(path, err);
  if (rc) {
    unlink(tmp);
    kv_error_prefix(err, "not written");
    return rc;
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return kv_error_set(err, KV_EIO, "%s: cannot rename into place: %s", path, strerror(e));
  }
  return 0;
}

int kv_atomic_rename(const char *tmp, const char *path, kv_error *err) {
  return kv__finish(tmp, path, err);
}

int kv_atomic_commit(kv_atomic_file *af, kv_error *err) {
  if (af->stream) {
    int bad = fflush(af->f) != 0 || ferror(af->f);
    af->f = NULL;
    af->stream = 0;
    return bad ? kv_error_set(err, KV_EIO, "standard output: write failed") : 0;
  }
  if (!af->tmp[0]) return kv_error_set(err, KV_ESTATE, "%s: output not open", af->path);
  int bad = 0, e = 0;
  if (af->f) {
    bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    e = errno;
    if (fclose(af->f) != 0 && !bad) bad = 1, e = errno;
    af->f = NULL;
  }
  int rc;
  if (bad) {
    unlink(af->tmp);
    rc = kv_error_set(err, KV_EIO, "%s: write failed: %s", af->path,
                      e ? strerror(e) : "stream error");
  } else {
    rc = kv__finish(af->tmp, af->path, err);
  }
  kv__unregister(af);
  af->tmp[0] = '\0';
  return rc;
}

void kv_atomic_abort(kv_atomic_file *af) {
  if (af->stream) {
    if (af->f) fflush(af->f);
    af->f = NULL;
    af->stream = 0;
    return;
  }
  if (af->f) {
    fclose(af->f);
    af->f = NULL;
  }
  if (af->tmp[0]) unlink(af->tmp);
  kv__unregister(af);
  af->tmp[0] = '\0';
}

/* ---- directories and whole files ------------------------------------------------------------ */

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

int kv_remove_tree(const char *path, kv_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return 0;
    return kv_error_set(err, KV_EIO, "%s: cannot examine: %s", path, strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d)) != NULL) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      size_t n = strlen(path) + strlen(de->d_name) + 2;
      char *child = malloc(n);
      if (!child) {
        rc = kv_error_set(err, KV_ENOMEM, "out of memory");
        break;
      }
      snprintf(child, n, "%s/%s", path, de->d_name);
      rc = kv_remove_tree(child, err);
      free(child);
    }
    closedir(d);
    if (rc) return rc;
    if (rmdir(path) != 0 && errno != ENOENT) {
      return kv_error_set(err, KV_EIO, "%s: cannot remove: %s", path, strerror(errno));
    }
    return 0;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    return kv_error_set(err, KV_EIO, "%s: cannot remove: %s", path, strerror(errno));
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
  kv_fs_note_input(path);
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

/* ---- inputs ------------------------------------------------------------------------------------ */

void kv_fs_note_input(const char *path) {
  const char *dep = getenv("KVLAB_DEPFILE");
  if (!dep || !dep[0] || !path) return;
  char abs[PATH_MAX + 2];
  if (!realpath(path, abs)) return; /* not readable: the reader reports it */
  size_t n = strlen(abs);
  abs[n++] = '\n';
  static int warned;
  int fd = open(dep, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  /* one write per line: O_APPEND keeps lines whole across threads and processes */
  if (fd < 0 || write(fd, abs, n) != (ssize_t)n) {
    if (!warned) fprintf(stderr, "warning: %s: cannot record the inputs of this run\n", dep);
    warned = 1;
  }
  if (fd >= 0) close(fd);
}

int kv_hash_file(const char *path, uint64_t *hash, int64_t *size, kv_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  uint64_t h = 1469598103934665603ULL;
  int64_t total = 0;
  unsigned char buf[1 << 16];
  size_t r;
  while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < r; i++) {
      h ^= buf[i];
      h *= 1099511628211ULL;
    }
    total += (int64_t)r;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) return kv_error_set(err, KV_EIO, "%s: read error", path);
  *hash = h;
  if (size) *size = total;
  return 0;
}
