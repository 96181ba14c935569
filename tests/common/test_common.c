/* Tests of common/: errors, configs, fp16/bf16 conversion, output files, input records. */
#define _XOPEN_SOURCE 700 /* realpath */

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv_config.h"
#include "kv_err.h"
#include "kv_fs.h"
#include "kv_half.h"
#include "kv_rng.h"
#include "test.h"

static void test_error_messages(void) {
  kv_error e = {0};
  CHECK_EQ_INT(kv_error_set(&e, KV_EFORMAT, "%s:%d: bad", "f.csv", 7), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "f.csv:7: bad");
  kv_error_prefix(&e, "import");
  CHECK_STR_CONTAINS(e.msg, "import: f.csv:7");
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  kv_error_set(&e, KV_EIO, "%s", big);
  CHECK_EQ_INT(strlen(e.msg), KV_ERROR_MSG_MAX - 1);
  CHECK(strcmp(e.msg + strlen(e.msg) - 3, "...") == 0);
  CHECK(kv_error_set(NULL, KV_EIO, "x") == KV_EIO);
}

static void test_config_parse_and_getters(void) {
  const char *text =
      "; comment\n[sim]\nbatch = 24\nrate = 1.5\npolicy = lru\nasync = yes\n"
      "sizes = 1, 2 ,3\n[cost]\ngpu_per_hour = 5\n";
  kv_error e = {0};
  kv_config *c = NULL;
  REQUIRE_OK(kv_config_parse(text, "t.ini", &c, &e), &e);
  int64_t b;
  double r;
  int on, pol;
  CHECK_OK(kv_config_int(c, "sim", "batch", 1, 1, 1000, &b, &e), &e);
  CHECK_EQ_INT(b, 24);
  CHECK_OK(kv_config_double(c, "sim", "rate", 0, 0, 10, &r, &e), &e);
  CHECK_NEAR(r, 1.5, 0, 0);
  CHECK_OK(kv_config_bool(c, "sim", "async", 0, &on, &e), &e);
  CHECK_EQ_INT(on, 1);
  static const char *const pols[] = {"fifo", "lru", "sched", NULL};
  CHECK_OK(kv_config_enum(c, "sim", "policy", 0, pols, &pol, &e), &e);
  CHECK_EQ_INT(pol, 1);
  char *items[8], store[64];
  int n = kv_config_list(kv_config_get(c, "sim", "sizes"), items, 8, store, sizeof store);
  CHECK_EQ_INT(n, 3);
  CHECK(n == 3 && strcmp(items[1], "2") == 0);
  CHECK_EQ_INT(kv_config_list("1,2,3", items, 2, store, sizeof store), KV_ERANGE);
  /* default when absent */
  CHECK_OK(kv_config_int(c, "sim", "absent", 7, 0, 10, &b, &e), &e);
  CHECK_EQ_INT(b, 7);
  /* unused key is reported with its line */
  CHECK(kv_config_check_unused(c, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "t.ini:9: [cost] gpu_per_hour");
  kv_config_free(c);
}

static void test_config_errors_name_file_and_line(void) {
  kv_error e = {0};
  kv_config *c = NULL;
  CHECK(kv_config_parse("[a]\nx = 1\nx = 2\n", "dup.ini", &c, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "dup.ini:3: [a] x given twice");
  CHECK(kv_config_parse("[a]\nthis line has no equals\n", "syn.ini", &c, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "syn.ini:2");
  CHECK(kv_config_parse("x = 1\n", "nosec.ini", &c, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "outside any [section]");
  char longline[5000];
  memset(longline, 'a', sizeof longline);
  memcpy(longline, "[s]\nk = ", 8);
  longline[sizeof longline - 1] = '\0';
  CHECK(kv_config_parse(longline, "long.ini", &c, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "line too long");
  /* A 3,000-byte line is fine (lines up to 4,000 bytes are accepted). */
  char mid[3100];
  memcpy(mid, "[s]\nk = ", 8);
  memset(mid + 8, 'b', 3000);
  mid[3008] = '\0';
  REQUIRE_OK(kv_config_parse(mid, "mid.ini", &c, &e), &e);
  CHECK_EQ_INT(strlen(kv_config_get(c, "s", "k")), 3000);
  kv_config_free(c);
  REQUIRE_OK(kv_config_parse("[a]\nn = 12x\nf = nan\nr = 50\n", "v.ini", &c, &e), &e);
  int64_t v;
  double d;
  CHECK_EQ_INT(kv_config_int(c, "a", "n", 0, 0, 100, &v, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "v.ini:2: [a] n = '12x' is not an integer");
  CHECK_EQ_INT(kv_config_double(c, "a", "f", 0, 0, 1, &d, &e), KV_EINVAL);
  CHECK_EQ_INT(kv_config_int(c, "a", "r", 0, 0, 10, &v, &e), KV_ERANGE);
  CHECK_STR_CONTAINS(e.msg, "outside [0, 10]");
  CHECK(kv_config_override(c, "a.r=5", &e) == 0);
  CHECK_OK(kv_config_int(c, "a", "r", 0, 0, 10, &v, &e), &e);
  CHECK_EQ_INT(v, 5);
  CHECK(kv_config_override(c, "noequals", &e) != 0);
  kv_config_free(c);
}

static void test_config_roundtrip(void) {
  kv_error e = {0};
  kv_config *c = NULL, *c2 = NULL;
  REQUIRE_OK(kv_config_parse("[b]\ny = 2\n[a]\nx = hello world\n[b]\nz = 3\n", "r.ini", &c, &e),
             &e);
  char *s = kv_config_to_string(c);
  REQUIRE(s != NULL);
  REQUIRE_OK(kv_config_parse(s, "r2.ini", &c2, &e), &e);
  CHECK_EQ_INT(kv_config_count(c2), 3);
  CHECK(strcmp(kv_config_get(c2, "a", "x"), "hello world") == 0);
  CHECK(strcmp(kv_config_get(c2, "b", "z"), "3") == 0);
  free(s);
  kv_config_free(c);
  kv_config_free(c2);
}

static void test_config_expand(void) {
  kv_error e = {0};
  kv_config *c = NULL;
  REQUIRE_OK(kv_config_parse("[w]\nsource = {d}/a/{d}.csv\nother = x\n", "x.ini", &c, &e), &e);
  REQUIRE_OK(kv_config_expand(c, "{d}", "/data", &e), &e);
  CHECK(strcmp(kv_config_get(c, "w", "source"), "/data/a//data.csv") == 0);
  CHECK(strcmp(kv_config_get(c, "w", "other"), "x") == 0);
  char big[3000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK_EQ_INT(kv_config_expand(c, "{d}", big, &e), 0); /* no placeholder left: nothing to do */
  kv_config_set(c, "w", "k", "{q}{q}", "here");
  CHECK_EQ_INT(kv_config_expand(c, "{q}", big, &e), KV_ERANGE);
  CHECK_STR_CONTAINS(e.msg, "[w] k");
  kv_config_free(c);
}

static void test_half_conversions(void) {
  /* Exact values, rounding to nearest even, overflow, subnormals, NaN. */
  CHECK_EQ_INT(kv_f32_to_f16(1.0f), 0x3c00);
  CHECK_EQ_INT(kv_f32_to_f16(-2.0f), 0xc000);
  CHECK_EQ_INT(kv_f32_to_f16(65504.0f), 0x7bff);
  CHECK_EQ_INT(kv_f32_to_f16(65520.0f), 0x7c00);
  CHECK_EQ_INT(kv_f32_to_f16(5.960464477539063e-08f), 0x0001);
  CHECK_EQ_INT(kv_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);          /* tie to even: down */
  CHECK_EQ_INT(kv_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);          /* tie to even: up */
  CHECK(isnan(kv_f16_to_f32(kv_f32_to_f16(NAN))));
  CHECK_NEAR(kv_f16_to_f32(0x0001), 5.960464477539063e-08, 0, 1e-7);
  CHECK_NEAR(kv_f16_to_f32(0x3555), 0.333251953125, 0, 0);
  CHECK_EQ_INT(kv_f32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(kv_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);          /* tie to even */
  CHECK_EQ_INT(kv_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  CHECK(isnan(kv_bf16_to_f32(kv_f32_to_bf16(NAN))));
  /* Every fp16 value round-trips. */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    if (kv_f32_to_f16(kv_f16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

static void test_rng_reproducible(void) {
  kv_rng a, b;
  kv_rng_seed(&a, 42);
  kv_rng_seed(&b, 42);
  for (int i = 0; i < 100; i++) CHECK(kv_rng_u64(&a) == kv_rng_u64(&b));
  double s = 0, s2 = 0;
  for (int i = 0; i < 100000; i++) {
    double x = kv_rng_normal(&a);
    s += x;
    s2 += x * x;
  }
  CHECK_NEAR(s / 100000, 0.0, 0.02, 0);
  CHECK_NEAR(s2 / 100000, 1.0, 0.02, 0);
  for (int i = 0; i < 1000; i++) CHECK(kv_rng_below(&a, 7) < 7);
}

static void test_atomic_file(void) {
  const char *p = test_tmp_path("atomic.txt");
  kv_error e = {0};
  kv_atomic_file af;
  REQUIRE_OK(kv_atomic_open(&af, p, &e), &e);
  fprintf(af.f, "hello\n");
  CHECK(!kv_path_exists(p));
  REQUIRE_OK(kv_atomic_commit(&af, &e), &e);
  char *buf;
  size_t len;
  REQUIRE_OK(kv_read_file(p, &buf, &len, &e), &e);
  CHECK(strcmp(buf, "hello\n") == 0);
  free(buf);
  REQUIRE_OK(kv_atomic_open(&af, p, &e), &e);
  fprintf(af.f, "partial");
  kv_atomic_abort(&af);
  REQUIRE_OK(kv_read_file(p, &buf, &len, &e), &e);
  CHECK(strcmp(buf, "hello\n") == 0); /* old content kept */
  free(buf);
  remove(p);
  CHECK(kv_read_file("/nonexistent/x", &buf, &len, &e) == KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "/nonexistent/x");
}

/* A fresh empty directory for one test. */
static const char *fresh_dir(const char *name) {
  const char *d = test_tmp_path(name);
  kv_error e = {0};
  kv_remove_tree(d, &e);
  mkdir(d, 0777);
  return d;
}

/* Number of entries of dir whose name contains ".tmp". */
static int count_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) n += strstr(de->d_name, ".tmp") != NULL;
  closedir(d);
  return n;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* Output paths that are not a regular file (or nothing) are refused, and left as they were. */
static void test_output_refuses_special_files(void) {
  const char *dir = fresh_dir("out-special");
  char target[4200], link[4200], fifo[4200], sub[4200];
  snprintf(target, sizeof target, "%s/target.txt", dir);
  snprintf(link, sizeof link, "%s/link.txt", dir);
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  snprintf(sub, sizeof sub, "%s/sub", dir);
  write_file(target, "original\n");
  REQUIRE(symlink("target.txt", link) == 0);
  REQUIRE(mkfifo(fifo, 0666) == 0);
  REQUIRE(mkdir(sub, 0777) == 0);
  kv_error e = {0};
  kv_atomic_file af;
  struct {
    const char *path, *what;
  } cases[] = {{link, "symbolic link"}, {fifo, "FIFO"}, {"/dev/null", "character device"},
               {sub, "directory"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(kv_atomic_open(&af, cases[i].path, &e), KV_EINVAL);
    CHECK_STR_CONTAINS(e.msg, cases[i].path);
    CHECK_STR_CONTAINS(e.msg, cases[i].what);
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(kv_atomic_reserve(&af, cases[i].path, &e), KV_EINVAL);
    CHECK_STR_CONTAINS(e.msg, cases[i].what);
  }
  struct stat st;
  REQUIRE(lstat(link, &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  REQUIRE(lstat(fifo, &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  REQUIRE(lstat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  REQUIRE(lstat(sub, &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  char *buf;
  size_t len;
  REQUIRE_OK(kv_read_file(target, &buf, &len, &e), &e);
  CHECK(strcmp(buf, "original\n") == 0);
  free(buf);
  CHECK_EQ_INT(count_tmp(dir), 0);
  /* The destination turned into a symbolic link after the open: the commit refuses it. */
  char late[4200];
  snprintf(late, sizeof late, "%s/late.txt", dir);
  REQUIRE_OK(kv_atomic_open(&af, late, &e), &e);
  fputs("new\n", af.f);
  REQUIRE(symlink("target.txt", late) == 0);
  CHECK_EQ_INT(kv_atomic_commit(&af, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "symbolic link");
  REQUIRE(lstat(late, &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK_EQ_INT(count_tmp(dir), 0);
  /* kv_atomic_rename (the older interface) refuses too, and removes its temporary file. */
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s/x.tmp", dir);
  write_file(tmp, "x");
  CHECK_EQ_INT(kv_atomic_rename(tmp, fifo, &e), KV_EINVAL);
  CHECK(!kv_path_exists(tmp));
}

/* A regular file or nothing is replaced; "-" streams to stdout only where asked for. */
static void test_output_regular_and_stdout(void) {
  const char *dir = fresh_dir("out-regular");
  char p[4200];
  snprintf(p, sizeof p, "%s/a.txt", dir);
  kv_error e = {0};
  kv_atomic_file af;
  REQUIRE_OK(kv_atomic_reserve(&af, p, &e), &e);
  CHECK(kv_path_exists(af.tmp));
  CHECK(!kv_path_exists(p));
  write_file(af.tmp, "by name\n");
  REQUIRE_OK(kv_atomic_commit(&af, &e), &e);
  char *buf;
  size_t len;
  REQUIRE_OK(kv_read_file(p, &buf, &len, &e), &e);
  CHECK(strcmp(buf, "by name\n") == 0);
  free(buf);
  REQUIRE_OK(kv_atomic_reserve(&af, p, &e), &e);
  kv_atomic_abort(&af);
  kv_atomic_abort(&af); /* twice is harmless */
  CHECK_EQ_INT(count_tmp(dir), 0);
  REQUIRE_OK(kv_atomic_open2(&af, "-", KV_OUT_STDOUT, &e), &e);
  CHECK(af.f == stdout);
  CHECK_OK(kv_atomic_commit(&af, &e), &e);
  /* two outputs of one path at once get distinct temporary files */
  kv_atomic_file a1, a2;
  REQUIRE_OK(kv_atomic_open(&a1, p, &e), &e);
  REQUIRE_OK(kv_atomic_open(&a2, p, &e), &e);
  CHECK(strcmp(a1.tmp, a2.tmp) != 0);
  kv_atomic_abort(&a1);
  kv_atomic_abort(&a2);
  CHECK_EQ_INT(count_tmp(dir), 0);
  /* a missing directory is named */
  snprintf(p, sizeof p, "%s/no/such/dir/a.txt", dir);
  CHECK_EQ_INT(kv_atomic_open(&af, p, &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, p);
}

/* A process that exits or is killed by SIGTERM/SIGINT with an output open leaves no temporary
 * file and does not touch the destination. */
static void test_output_cleanup_on_exit_and_signals(void) {
  const char *dir = fresh_dir("out-cleanup");
  char p[4200];
  snprintf(p, sizeof p, "%s/result.csv", dir);
  write_file(p, "old\n");
  for (int how = 0; how < 3; how++) {
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      kv_error e = {0};
      kv_atomic_file af;
      if (kv_atomic_open(&af, p, &e)) _exit(3);
      fputs("half", af.f);
      fflush(af.f);
      if (count_tmp(dir) != 1) _exit(4);
      if (how == 0) exit(1); /* a tool's die(): exit without commit or abort */
      raise(how == 1 ? SIGTERM : SIGINT);
      _exit(5);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (how == 0) {
      CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    } else {
      CHECK(WIFSIGNALED(status) && WTERMSIG(status) == (how == 1 ? SIGTERM : SIGINT));
    }
    CHECK_EQ_INT(count_tmp(dir), 0);
    char *buf;
    size_t len;
    kv_error e = {0};
    REQUIRE_OK(kv_read_file(p, &buf, &len, &e), &e);
    CHECK(strcmp(buf, "old\n") == 0);
    free(buf);
  }
}

/* KVLAB_DEPFILE lists the absolute path of each file read through the common readers. */
static void test_depfile_and_hash(void) {
  const char *dir = fresh_dir("depfile");
  char a[4200], b[4200], dep[4200];
  snprintf(a, sizeof a, "%s/a.ini", dir);
  snprintf(b, sizeof b, "%s/b.txt", dir);
  snprintf(dep, sizeof dep, "%s/inputs.list", dir);
  write_file(a, "[s]\nk = 1\n");
  write_file(b, "text");
  kv_error e = {0};
  REQUIRE(setenv("KVLAB_DEPFILE", dep, 1) == 0);
  kv_config *c;
  char *buf;
  size_t len;
  int ok = kv_config_load(a, &c, &e) == 0;
  if (ok) kv_config_free(c);
  ok = ok && kv_read_file(b, &buf, &len, &e) == 0;
  if (ok) free(buf);
  unsetenv("KVLAB_DEPFILE");
  REQUIRE(ok);
  REQUIRE_OK(kv_read_file(dep, &buf, &len, &e), &e);
  char ra[4200], rb[4200], want[8500];
  REQUIRE(realpath(a, ra) && realpath(b, rb));
  snprintf(want, sizeof want, "%s\n%s\n", ra, rb);
  CHECK(strcmp(buf, want) == 0);
  free(buf);
  /* content hash: equal content, equal hash; one changed byte, another hash */
  uint64_t h1, h2, h3;
  int64_t n1;
  REQUIRE_OK(kv_hash_file(a, &h1, &n1, &e), &e);
  CHECK_EQ_INT(n1, 10);
  write_file(b, "[s]\nk = 1\n");
  REQUIRE_OK(kv_hash_file(b, &h2, NULL, &e), &e);
  write_file(b, "[s]\nk = 2\n");
  REQUIRE_OK(kv_hash_file(b, &h3, NULL, &e), &e);
  CHECK(h1 == h2);
  CHECK(h1 != h3);
  CHECK_EQ_INT(kv_hash_file("/nonexistent/x", &h1, NULL, &e), KV_EIO);
  /* remove_tree: a folder with a file, a subfolder and a link to outside (not followed) */
  char sub[4200], lnk[4200];
  snprintf(sub, sizeof sub, "%s/t/u", dir);
  REQUIRE_OK(kv_mkdirs(sub, &e), &e);
  snprintf(lnk, sizeof lnk, "%s/t/link", dir);
  REQUIRE(symlink(a, lnk) == 0);
  snprintf(sub, sizeof sub, "%s/t", dir);
  REQUIRE_OK(kv_remove_tree(sub, &e), &e);
  CHECK(!kv_path_exists(sub));
  CHECK(kv_path_exists(a));
}

TEST_LIST = {TEST(test_error_messages),
             TEST(test_config_parse_and_getters),
             TEST(test_config_errors_name_file_and_line),
             TEST(test_config_roundtrip),
             TEST(test_config_expand),
             TEST(test_half_conversions),
             TEST(test_rng_reproducible),
             TEST(test_atomic_file),
             TEST(test_output_refuses_special_files),
             TEST(test_output_regular_and_stdout),
             TEST(test_output_cleanup_on_exit_and_signals),
             TEST(test_depfile_and_hash),
             {0}};
TEST_MAIN
