/* libFuzzer target: the output helper (common/kv_fs.h) on fuzzed names and what is already at
 * them, inside a private temporary directory. Input: [operation][what is there][flags][name...].
 * What is there: nothing, a regular file, a symbolic link, a FIFO or a directory; the operation
 * opens a stream or reserves a path, writes, then commits or aborts. Checked after every run:
 * a symbolic link, FIFO or directory is refused and left as it was (and the link's target
 * untouched); a regular file or nothing is replaced on commit and left as it was on abort; no
 * temporary file remains. Names use [a-z0-9._-] only (no '/', so nothing leaves the directory). */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv_fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[4096];

static void fail(const char *what, const char *path) {
  fprintf(stderr, "fuzz_output: %s: %s\n", what, path);
  abort();
}

static void clear_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    kv_error e = {0};
    kv_remove_tree(p, &e);
  }
  closedir(d);
}

static int count_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) n += strstr(de->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

static void put(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) fail("cannot write", path);
  fwrite(text, 1, n, f);
  fclose(f);
}

/* 1 when path holds exactly text[0..n). */
static int holds(const char *path, const char *text, size_t n) {
  char *buf;
  size_t len;
  kv_error e = {0};
  if (kv_read_file(path, &buf, &len, &e)) return 0;
  int ok = len == n && !memcmp(buf, text, n);
  free(buf);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  if (!g_dir[0]) {
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kvlab-fuzz-output-XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(g_dir)) fail("mkdtemp", g_dir);
  }
  int op = data[0] % 4, kind = data[1] % 5;
  static const char cs[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
  char name[201];
  size_t nn = 0;
  for (size_t i = 3; i < size && nn < 200; i++) name[nn++] = cs[data[i] % (sizeof cs - 1)];
  name[nn] = '\0';
  if (!nn || !strcmp(name, ".") || !strcmp(name, "..") || !strncmp(name, "victim", 6)) {
    memmove(name + 1, name, nn + 1 > 200 ? 200 : nn + 1);
    name[0] = 'n';
    name[200] = '\0';
  }
  const char *content = (const char *)data + 3;
  size_t clen = size - 3;
  char path[4400], victim[4400];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  snprintf(victim, sizeof victim, "%s/victim", g_dir);
  put(victim, "keep", 4);
  /* what is there before */
  switch (kind) {
    case 1: put(path, "old", 3); break;
    case 2: if (symlink("victim", path)) fail("symlink", path); break;
    case 3: if (mkfifo(path, 0666)) fail("mkfifo", path); break;
    case 4: if (mkdir(path, 0777)) fail("mkdir", path); break;
    default: break;
  }
  kv_atomic_file af;
  kv_error e = {0};
  int rc = op < 2 ? kv_atomic_open(&af, path, &e) : kv_atomic_reserve(&af, path, &e);
  int special = kind >= 2;
  if (special) {
    if (rc != KV_EINVAL || !strstr(e.msg, name)) fail("a special file was not refused", path);
  } else {
    if (rc) fail(e.msg, path);
    if (op < 2) {
      fwrite(content, 1, clen, af.f);
    } else {
      put(af.tmp, content, clen);
    }
    if (op % 2 == 0) {
      if (kv_atomic_commit(&af, &e)) fail(e.msg, path);
      if (!holds(path, content, clen)) fail("the commit did not write the new content", path);
    } else {
      kv_atomic_abort(&af);
      if (kind == 0 && kv_path_exists(path)) fail("an aborted output exists", path);
      if (kind == 1 && !holds(path, "old", 3)) fail("an abort changed the file", path);
    }
  }
  struct stat st;
  if (kind == 2 && (lstat(path, &st) || !S_ISLNK(st.st_mode))) fail("the link changed", path);
  if (kind == 3 && (lstat(path, &st) || !S_ISFIFO(st.st_mode))) fail("the FIFO changed", path);
  if (kind == 4 && (lstat(path, &st) || !S_ISDIR(st.st_mode))) fail("the directory changed", path);
  if (!holds(victim, "keep", 4)) fail("the link's target changed", victim);
  if (count_tmp(g_dir)) fail("a temporary file was left", g_dir);
  clear_dir(g_dir);
  return 0;
}
