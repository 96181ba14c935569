/* Replays the inputs kept in tests/traces/data/fuzz/<target>/ through a fuzz target's own entry
 * point (traces/fuzz/fuzz_<target>.c is compiled into this test), so that every input a fuzzer
 * once crashed on stays a regression test in the normal build and under ASan + UBSan. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <target>\n", argv[0]);
    return 2;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/traces/data/fuzz/%s", test_source_dir(), argv[1]);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "%s: cannot open\n", dir);
    return 1;
  }
  int n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.') continue;
    char path[8200];
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    char *buf = NULL;
    size_t len = 0;
    kv_error e = {0};
    if (kv_read_file(path, &buf, &len, &e)) {
      fprintf(stderr, "%s\n", e.msg);
      closedir(d);
      return 1;
    }
    printf("replay %s (%zu bytes)\n", ent->d_name, len);
    fflush(stdout);
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    n++;
  }
  closedir(d);
  printf("%d inputs replayed without a crash\n", n);
  return n > 0 ? 0 : 1;
}
