/* The kvsim tool: help, usage errors, config errors with their origin, a small run. */
#include <stdlib.h>
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


/* Writes text to a file under the test's scratch folder; returns its path. */
static const char *write_ini(const char *name, const char *text) {
  const char *path = test_tmp_path(name);
  FILE *f = fopen(path, "w");
  if (!f) return NULL;
  fputs(text, f);
  fclose(f);
  return path;
}

/* 1 when path exists. */
static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Configurations that disable what a run studies are errors naming the file and line of the key
 * responsible, before anything is written (no output folder is left behind), unless [sim] allow
 * names them; configurations that cannot run are errors that allow does not lift. */
static void test_disabling_configs(void) {
  char args[8192], dir[4096];
  snprintf(dir, sizeof dir, "%s/a/b", test_tmp_path("kvsim-disabled"));
  const char *base = "[sim]\nmodel = llama-2-13b\nhardware = a100-80gb\nn_gpus = 2\n"
                     "[workload]\nsource = synthetic\nsessions = 20\n"  /* lines 5-7 */
                     "[output]\nwarmup_turns = 10\nrequests_csv = false\n"; /* 8-10 */
  const char *ini = write_ini("disabled.ini", base);
  REQUIRE(ini);
  struct {
    const char *over, *want;
  } cases[] = {
      /* an empty workload: a generator with no sessions (ttft nan before) */
      {"-s workload.sessions=0", "<command line>: [workload] sessions = 0: the workload"},
      /* a warm-up over every turn: nothing measured */
      {"-s output.warmup_turns=100000", "<command line>: [output] warmup_turns = 100000 covers "
                                        "all"},
      /* a caching mode with no capacity (it ran with no cache before) */
      {"-s cache.dram_gib=0 -s cache.ssd_gib=0", "<command line>: [cache] mode = hbm_dram_ssd "
                                                 "with no capacity: hbm_gib = 0 (the default), "
                                                 "dram_gib = 0 (<command line>)"},
      {"-s cache.mode=hbm_dram -s cache.hbm_gib=0 -s cache.dram_gib=0",
       "[cache] mode = hbm_dram with no capacity"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(args, sizeof args, "-q -c %s %s -o %s", ini, cases[i].over, dir);
    CHECK_EQ_INT(run(args, out, sizeof out), 1);
    CHECK_STR_CONTAINS(out, cases[i].want);
    CHECK_STR_CONTAINS(out, "set [sim] allow = ");
    if (exists(dir)) TEST_FAIL_AT("case %zu left %s", i, dir);
  }
  /* ... and with [sim] allow they run */
  snprintf(args, sizeof args, "-q -c %s -s cache.dram_gib=0 -s cache.ssd_gib=0 "
           "-s sim.allow=no_cache,no_measurement -s output.warmup_turns=100000 -o %s", ini, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 0);
  CHECK(exists(dir));
  snprintf(args, sizeof args, "-q -c %s -s sim.allow=empty_workload -s workload.sessions=0 -o %s",
           ini, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 0);
  snprintf(args, sizeof args, "rm -rf %s", dir);
  CHECK(system(args) == 0);
  snprintf(args, sizeof args, "-q -c %s -s sim.allow=no_cash -o %s", ini, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<command line>: [sim] allow: 'no_cash' is not one of empty_workload");

  /* the key's own file and line */
  char text[2048];
  snprintf(text, sizeof text, "%s[cache]\nmode = hbm_dram_ssd\ndram_gib = 0\nssd_gib = 0\n", base);
  const char *ini2 = write_ini("disabled2.ini", text);
  REQUIRE(ini2);
  snprintf(args, sizeof args, "-q -c %s -o %s", ini2, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "disabled2.ini:13: [cache] mode = hbm_dram_ssd with no capacity");
  CHECK(!exists(dir));
  /* an empty trace file, in both engines: the source's line */
  const char *empty = write_ini("empty-trace.csv",
                                "# kvlab-trace-csv 1\n# name: empty\n# source: test\n"
                                "# tokenizer: none\n# flags: 0\n# block_tokens: 16\n"
                                "# sessions: 0\n# turns: 0\nsession_id,session_arrival_ns,turn,"
                                "arrival_ns,think_ns,input_tokens,new_tokens,output_tokens,hashes\n");
  REQUIRE(empty);
  snprintf(text, sizeof text, "[sim]\nmodel = llama-2-13b\nhardware = a100-80gb\n"
           "[workload]\nsource = %s\n", empty);
  const char *ini3 = write_ini("disabled3.ini", text);
  REQUIRE(ini3);
  snprintf(args, sizeof args, "-q -c %s -o %s", ini3, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "disabled3.ini:5: [workload] source = ");
  CHECK_STR_CONTAINS(out, "has no sessions");
  CHECK(!exists(dir));
  snprintf(args, sizeof args, "-q -s sim.engine=replay -s cache.eviction=lru -s workload.source=%s "
           "-o %s", empty, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<command line>: [workload] source = ");
  CHECK(!exists(dir));

  /* cannot run at all, whatever allow says: HBM beyond the GPUs', sa with the block store */
  snprintf(args, sizeof args, "-q -c %s -s sim.allow=no_cache -s cache.hbm_gib=1000 -o %s", ini,
           dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<command line>: [cache] hbm_gib leaves no HBM for running jobs' KV: "
                          "2 x A100-80GB hold 160.0 GiB");
  CHECK(!exists(dir));
  snprintf(text, sizeof text, "%s[cache]\nstore = block\n", base);
  const char *ini4 = write_ini("disabled4.ini", text);
  REQUIRE(ini4);
  snprintf(args, sizeof args, "-q -c %s -o %s", ini4, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "<default>: [cache] eviction = sa (the default) needs the session store "
                          "(its job queue), and ");
  CHECK_STR_CONTAINS(out, "disabled4.ini:12 sets store = block");
  CHECK(!exists(dir));
  /* a folder that was there before a failed run stays, with what it held */
  char keep[4200];
  snprintf(args, sizeof args, "mkdir -p %s && echo old > %s/summary.csv", dir, dir);
  REQUIRE(system(args) == 0);
  snprintf(args, sizeof args, "-q -c %s -o %s", ini4, dir);
  CHECK_EQ_INT(run(args, out, sizeof out), 1);
  snprintf(keep, sizeof keep, "%s/summary.csv", dir);
  CHECK(exists(keep));
  snprintf(args, sizeof args, "rm -rf %s", dir);
  CHECK(system(args) == 0);
}

TEST_LIST = {TEST(test_help_and_usage), TEST(test_config_errors), TEST(test_small_run),
             TEST(test_one_cache_reader), TEST(test_disabling_configs), {0}};
TEST_MAIN
