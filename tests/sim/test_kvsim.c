/* The kvsim tool: help, usage errors, config errors with their origin, a small run. */
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static int run(const char *args, char *out, size_t cap) {
  const char *b = getenv("KVLAB_BUILD_DIR");
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s/bin/kvsim %s 2>&1", b ? b : "build", args);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[65536];

static void test_help_and_usage(void) {
  CHECK_EQ_INT(run("--help", out, sizeof out), 0);
  CHECK_STR_CONTAINS(out, "usage: kvsim");
  CHECK_EQ_INT(run("--bogus", out, sizeof out), 2);
  CHECK_STR_CONTAINS(out, "unknown or incomplete argument '--bogus'");
  CHECK_EQ_INT(run("-c", out, sizeof out), 2);
  CHECK_EQ_INT(run("", out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "[sim] model is required");
}

static void test_config_errors(void) {
  char args[4096];
  snprintf(args, sizeof args, "-c %s/sim/data/configs/cachedattention-13b.ini -s cache.evict=lru",
           test_source_dir());
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<command line>: [cache] evict");
  snprintf(args, sizeof args, "-c %s/sim/data/configs/cachedattention-13b.ini -s engine.batch_limit=0",
           test_source_dir());
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "batch_limit = 0 is outside");
  CHECK_EQ_INT(run("-c /nonexistent.ini", out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "/nonexistent.ini: cannot open config");
}

static void test_small_run(void) {
  char dir[4096], args[8192], path[4200];
  snprintf(dir, sizeof dir, "%s", test_tmp_path("kvsim-run"));
  snprintf(args, sizeof args,
           "-c %s/sim/data/configs/cachedattention-13b.ini -s workload.sessions=30 "
           "-s output.warmup_turns=20 -s output.log=true -o %s", test_source_dir(), dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 0);
  CHECK_STR_CONTAINS(out, "hit rate");
  const char *files[] = {"results.h5", "summary.csv", "requests.csv", "hit_by_turn.csv", "sim.log"};
  for (int i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    CHECK(access(path, R_OK) == 0);
  }
  snprintf(path, sizeof path, "%s/summary.csv", dir);
  FILE *f = fopen(path, "r");
  REQUIRE(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  CHECK_STR_CONTAINS(out, "seed=1");
  CHECK_STR_CONTAINS(out, "# config: sessions = 30");
  CHECK_STR_CONTAINS(out, "hit_rate,");
}

/* [cache] has one reader for both engines: one default (sa) for eviction, which the replay
 * engine cannot run (it has no job queue) and says so; each engine refuses the other's keys. */
static void test_one_cache_reader(void) {
  char dir[4096], args[8192];
  snprintf(dir, sizeof dir, "%s", test_tmp_path("kvsim-replay"));
  const char *wl = "-s sim.engine=replay -s workload.source=sharegpt -s workload.n_sessions=20 "
                   "-s workload.block_tokens=16";
  snprintf(args, sizeof args, "%s -o %s", wl, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "[cache] eviction = sa (the default) needs the timed engine's job queue");
  snprintf(args, sizeof args, "%s -s cache.eviction=lru -s cache.capacity_tokens=2000 -q -o %s",
           wl, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 0);
  snprintf(args, sizeof args, "%s -s cache.eviction=lru -s cache.dram_gib=1 -o %s", wl, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<command line>: [cache] dram_gib has no effect with [sim] engine = replay");
  snprintf(args, sizeof args, "%s -s cache.eviction=lru -s sim.model=llama-2-13b -o %s", wl, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "[sim] model has no effect with [sim] engine = replay");
  snprintf(args, sizeof args,
           "-c %s/sim/data/configs/cachedattention-13b.ini -s cache.capacity_tokens=5 -o %s",
           test_source_dir(), dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "[cache] capacity_tokens has no effect with [sim] engine = timed");
}

TEST_LIST = {TEST(test_help_and_usage), TEST(test_config_errors), TEST(test_small_run),
             TEST(test_one_cache_reader), {0}};
TEST_MAIN
