#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

const char *test_tmp_path(const char *name) {
  static char buf[8][4096];
  static int slot = 0;
  const char *b = getenv("KVLAB_BUILD_DIR");
  char dir[4000];
  snprintf(dir, sizeof dir, "%s/tests/tmp", b ? b : "/tmp/kvlab-tests");
  mkdir(b ? dir : "/tmp/kvlab-tests", 0777);
  if (!b) snprintf(dir, sizeof dir, "/tmp/kvlab-tests/tmp");
  mkdir(dir, 0777);
  char *out = buf[slot++ % 8];
  snprintf(out, 4096, "%s/%ld-%s", dir, (long)getpid(), name);
  return out;
}

const char *test_shared_path(const char *rel) {
  static char buf[4][4096];
  static int slot = 0;
  char *out = buf[slot++ % 4];
  const char *env = getenv("KVLAB_SHARED_DIR");
  if (env) {
    snprintf(out, 4096, "%s/%s", env, rel);
  } else {
    snprintf(out, 4096, "%s/../shared/%s", test_source_dir(), rel);
  }
  return access(out, R_OK) == 0 ? out : NULL;
}

const char *test_repo_path(const char *rel) {
  static char buf[4][4096];
  static int slot = 0;
  char *out = buf[slot++ % 4];
  snprintf(out, 4096, "%s/%s", test_source_dir(), rel);
  return out;
}

const char *test_data_path(const char *area, const char *name) {
  static char buf[4][4096];
  static int slot = 0;
  char *out = buf[slot++ % 4];
  snprintf(out, 4096, "%s/tests/%s/data/%s", test_source_dir(), area, name);
  return out;
}
