/* Tests of sweep files (experiments/xp_sweep.h): list expressions, the point order and ids,
 * per-point configs, argument templates, and errors that name file:line. */
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "xp_sweep.h"

static void test_lists(void) {
  char v[64][128];
  kv_error e = {0};
  CHECK_EQ_INT(xp_expand_list(" a , b,c ", v, 64, "x", &e), 3);
  CHECK(strcmp(v[1], "b") == 0 && strcmp(v[2], "c") == 0);
  CHECK_EQ_INT(xp_expand_list("range(0, 10, 2.5)", v, 64, "x", &e), 5);
  CHECK(strcmp(v[4], "10") == 0 && strcmp(v[1], "2.5") == 0);
  CHECK_EQ_INT(xp_expand_list("range(5, 1, -2)", v, 64, "x", &e), 3);
  CHECK(strcmp(v[2], "1") == 0);
  CHECK_EQ_INT(xp_expand_list("lin(0.5, 2, 4)", v, 64, "x", &e), 4);
  CHECK(strcmp(v[1], "1") == 0 && strcmp(v[3], "2") == 0);
  CHECK_EQ_INT(xp_expand_list("geom(1e5, 1e8, 4)", v, 64, "x", &e), 4);
  CHECK(strcmp(v[0], "100000") == 0 && strcmp(v[1], "1000000") == 0 &&
        strcmp(v[3], "100000000") == 0);
  CHECK_EQ_INT(xp_expand_list("range(0, 10, -1)", v, 64, "where", &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "where");
  CHECK_EQ_INT(xp_expand_list("geom(0, 10, 3)", v, 64, "x", &e), KV_EINVAL);
  CHECK_EQ_INT(xp_expand_list("lin(0, 1, 100)", v, 64, "x", &e), KV_ERANGE);
  CHECK_EQ_INT(xp_expand_list("a,,b", v, 64, "x", &e), KV_EINVAL);
  CHECK_EQ_INT(xp_expand_list("range(1, 2", v, 64, "x", &e), KV_EINVAL);
}

static const char *write_file(const char *name, const char *text) {
  const char *p = test_tmp_path(name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  return p;
}

static void test_points_and_configs(void) {
  const char *base = write_file("base.ini", "[cache]\npolicy = lru\n[sim]\nseed = 0\n");
  char text[2048];
  const char *slash = strrchr(base, '/');
  snprintf(text, sizeof text,
           "[sweep]\nname = t\ntool = kvsim\nargs = -c {config} -o {out} --tag {mode}\n"
           "config = %s\nseeds = 1, 2\n[vary]\ncache.policy = lru, fifo, sched\nmode = a, b\n"
           "[fixed]\ncache.dram_gb = 64\n[quick]\ncache.policy = lru\nseeds = 7\n"
           "workload.sessions = 100\n",
           slash + 1);
  const char *sw = write_file("sweep.ini", text);
  xp_sweep s;
  kv_error e = {0};
  REQUIRE_OK(xp_sweep_load(sw, NULL, &s, &e), &e);
  CHECK_EQ_INT(xp_sweep_n_points(&s), 3 * 2 * 2);
  /* Order: last parameter fastest, seeds innermost. */
  xp_point p;
  xp_sweep_point(&s, 0, &p);
  CHECK(strcmp(p.id, "policy=lru_mode=a_seed=1") == 0);
  xp_sweep_point(&s, 1, &p);
  CHECK(strcmp(p.id, "policy=lru_mode=a_seed=2") == 0);
  xp_sweep_point(&s, 2, &p);
  CHECK(strcmp(p.id, "policy=lru_mode=b_seed=1") == 0);
  xp_sweep_point(&s, 11, &p);
  CHECK(strcmp(p.id, "policy=sched_mode=b_seed=2") == 0);
  kv_config *c;
  REQUIRE_OK(xp_point_config(&s, &p, &c, &e), &e);
  CHECK(strcmp(kv_config_get(c, "cache", "policy"), "sched") == 0);
  CHECK(strcmp(kv_config_get(c, "cache", "dram_gb"), "64") == 0);
  CHECK(strcmp(kv_config_get(c, "sim", "seed"), "2") == 0);
  CHECK(kv_config_get(c, "mode", "") == NULL);
  kv_config_free(c);
  char *w[32], store[4096];
  int n = xp_point_argv(&s, &p, "/r/c.ini", "/r/out", "/src", "/bin", w, 32, store, sizeof store, &e);
  REQUIRE_EQ_INT(n, 6);
  CHECK(strcmp(w[1], "/r/c.ini") == 0 && strcmp(w[3], "/r/out") == 0 && strcmp(w[5], "b") == 0);
  xp_sweep_free(&s);
  /* The quick scale replaces the policy list and the seeds, and adds an override. */
  REQUIRE_OK(xp_sweep_load(sw, "quick", &s, &e), &e);
  CHECK_EQ_INT(xp_sweep_n_points(&s), 1 * 2 * 1);
  xp_sweep_point(&s, 1, &p);
  CHECK(strcmp(p.id, "policy=lru_mode=b_seed=7") == 0);
  REQUIRE_OK(xp_point_config(&s, &p, &c, &e), &e);
  CHECK(strcmp(kv_config_get(c, "workload", "sessions"), "100") == 0);
  kv_config_free(c);
  xp_sweep_free(&s);
  CHECK_EQ_INT(xp_sweep_load(sw, "huge", &s, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "no [huge] section");
}

static void test_errors(void) {
  xp_sweep s;
  kv_error e = {0};
  const char *p = write_file("e1.ini", "[sweep]\nname = t\ntool = kvsim\n");
  CHECK_EQ_INT(xp_sweep_load(p, NULL, &s, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "[sweep] args is required");
  p = write_file("e2.ini", "[sweep]\nname = t\ntool = kvsim\nargs = x\nfoo = 1\n");
  CHECK_EQ_INT(xp_sweep_load(p, NULL, &s, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "e2.ini:5: [sweep] unknown key 'foo'");
  p = write_file("e3.ini", "[sweep]\nname = t\ntool = kvsim\nargs = x\n[vary]\na.b = range(1,2,0)\n");
  CHECK_EQ_INT(xp_sweep_load(p, NULL, &s, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "e3.ini:6: [vary] a.b");
  p = write_file("e4.ini", "[sweep]\nname = a/b\ntool = kvsim\nargs = x\n");
  CHECK_EQ_INT(xp_sweep_load(p, NULL, &s, &e), KV_EINVAL);
  p = write_file("e5.ini", "[sweep]\nname = t\ntool = kvsim\nargs = x\nconfig = missing.ini\n");
  CHECK_EQ_INT(xp_sweep_load(p, NULL, &s, &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "missing.ini");
  p = write_file("e6.ini", "[sweep]\nname = t\ntool = kvsim\nargs = {nope}\n");
  REQUIRE_OK(xp_sweep_load(p, NULL, &s, &e), &e);
  xp_point pt;
  xp_sweep_point(&s, 0, &pt);
  char *w[8], store[256];
  CHECK_EQ_INT(xp_point_argv(&s, &pt, "c", "o", "s", "b", w, 8, store, sizeof store, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "unknown variable {nope}");
  xp_sweep_free(&s);
}

static void test_zipped(void) {
  const char *sw = write_file("zip.ini", "[sweep]\nname = z\ntool = kvsim\nargs = {tag}\n[vary]\n"
                              "sim.model+sim.n_gpus+tag = m13/2/a, m65/4/b\ncache.mode = re, x\n");
  xp_sweep s;
  kv_error e = {0};
  REQUIRE_OK(xp_sweep_load(sw, NULL, &s, &e), &e);
  CHECK_EQ_INT(xp_sweep_n_points(&s), 4);
  xp_point p;
  xp_sweep_point(&s, 2, &p);
  CHECK(strcmp(p.id, "model=m65-4-b_mode=re") == 0);
  kv_config *c;
  REQUIRE_OK(xp_point_config(&s, &p, &c, &e), &e);
  CHECK(strcmp(kv_config_get(c, "sim", "model"), "m65") == 0);
  CHECK(strcmp(kv_config_get(c, "sim", "n_gpus"), "4") == 0);
  kv_config_free(c);
  char *w[8], store[256];
  REQUIRE_EQ_INT(xp_point_argv(&s, &p, "c", "o", "s", "b", w, 8, store, sizeof store, &e), 1);
  CHECK(strcmp(w[0], "b") == 0);
  /* the assignment analysis reads (point.ini [assign]): components in order */
  xp_assign as[XP_MAX_ASSIGN];
  REQUIRE_EQ_INT(xp_point_assignment(&s, &p, as, XP_MAX_ASSIGN), 4);
  const char *want[4][2] = {{"sim.model", "m65"}, {"sim.n_gpus", "4"}, {"tag", "b"},
                            {"cache.mode", "re"}};
  for (int i = 0; i < 4; i++) {
    CHECK(strcmp(as[i].key, want[i][0]) == 0 && strcmp(as[i].value, want[i][1]) == 0);
  }
  xp_sweep_free(&s);
  /* a single key keeps a value with '/' whole (a path) */
  sw = write_file("zip3.ini", "[sweep]\nname = z\ntool = kvsim\nargs = x\n[vary]\n"
                  "workload.source = data/a.h5\n");
  REQUIRE_OK(xp_sweep_load(sw, NULL, &s, &e), &e);
  xp_sweep_point(&s, 0, &p);
  REQUIRE_EQ_INT(xp_point_assignment(&s, &p, as, XP_MAX_ASSIGN), 1);
  CHECK(strcmp(as[0].value, "data/a.h5") == 0);
  xp_sweep_free(&s);
  sw = write_file("zip2.ini", "[sweep]\nname = z\ntool = kvsim\nargs = x\n[vary]\na.b+c.d = 1/2, 3\n");
  CHECK_EQ_INT(xp_sweep_load(sw, NULL, &s, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "zip2.ini:6");
  CHECK_STR_CONTAINS(e.msg, "1 '/'-separated parts for 2 zipped keys");
}

TEST_LIST = {TEST(test_zipped), TEST(test_lists), TEST(test_points_and_configs), TEST(test_errors), {0}};
TEST_MAIN
