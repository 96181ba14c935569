/* Tests of common/: errors, configs, fp16/bf16 conversion, atomic files. */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

TEST_LIST = {TEST(test_error_messages),
             TEST(test_config_parse_and_getters),
             TEST(test_config_errors_name_file_and_line),
             TEST(test_config_roundtrip),
             TEST(test_config_expand),
             TEST(test_half_conversions),
             TEST(test_rng_reproducible),
             TEST(test_atomic_file),
             {0}};
TEST_MAIN
