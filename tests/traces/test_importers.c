/* The importer registry (traces/trace_importers.h): every entry complete and findable, each of
 * its listed options accepted with a value of the form its help shows and anything else refused,
 * the suffix that routes [workload] source files, the one open/read/close wrapper (errors name
 * the path; a failed import leaves an empty trace), and the typed wrappers equal to it. */
#include <string.h>

#include "import_azure.h"
#include "import_mooncake.h"
#include "test.h"
#include "trace_importers.h"

static const char *data(const char *name) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/tests/traces/data/%s", test_source_dir(), name);
  return p;
}

/* A value of the form `arg` shows: the first alternative of "a|b", or a number, or a name. */
static const char *sample_value(const char *arg) {
  static char v[64];
  if (!arg) return NULL;
  if (strchr(arg, '|')) {
    snprintf(v, sizeof v, "%.*s", (int)strcspn(arg, "|"), arg);
    return v;
  }
  return !strcmp(arg, "N") || !strcmp(arg, "R") || !strcmp(arg, "S") ? "2" : "x";
}

static void test_every_entry(void) {
  CHECK(trace_importer_count() >= 4);
  for (int i = 0; i < trace_importer_count(); i++) {
    const trace_importer *imp = trace_importer_at(i);
    REQUIRE(imp && imp->name && imp->input && imp->init && imp->set && imp->base &&
            imp->base_stats && imp->read && imp->report);
    CHECK(trace_importer_find(imp->name) == imp);
    CHECK(imp->opts_size >= sizeof(trace_import_opts) && imp->stats_size >= sizeof(trace_import_stats));
    char opts[16384];
    REQUIRE(imp->opts_size <= sizeof opts);
    imp->init(opts);
    CHECK_EQ_INT(imp->base(opts)->on_bad, TRACE_ON_BAD_STOP);
    kv_error e = {0};
    for (const trace_importer_opt *o = imp->opts; o && o->name; o++) {
      if (imp->set(opts, o->name, sample_value(o->arg), &e)) {
        TEST_FAIL_AT("%s --%s %s: %s", imp->name, o->name, o->arg ? o->arg : "", e.msg);
      }
    }
    CHECK_EQ_INT(imp->set(opts, "no-such-option", "1", &e), KV_ENOENT);
  }
  CHECK(trace_importer_find("nope") == NULL);
  /* a bad value names the accepted ones */
  char o[16384];
  const trace_importer *b = trace_importer_find("burstgpt");
  REQUIRE(b);
  b->init(o);
  kv_error e = {0};
  CHECK_EQ_INT(b->set(o, "history", "all", &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "--history takes none or prev");
}

static void test_sources_and_files(void) {
  CHECK(trace_importer_for_source("a/b/trace.jsonl") == trace_importer_find("mooncake"));
  CHECK(trace_importer_for_source("trace.h5") == NULL);
  CHECK(trace_importer_for_source("trace.csv") == NULL); /* the project's own CSV */
  trace t;
  kv_error e = {0};
  CHECK_EQ_INT(trace_import_named("azure", "/nonexistent/x.csv", NULL, &t, NULL, &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "/nonexistent/x.csv: cannot open");
  CHECK_EQ_INT(t.n_turns, 0);
  CHECK_EQ_INT(trace_import_named("nope", data("azure_good.csv"), NULL, &t, NULL, &e), KV_EINVAL);
  /* the typed wrapper is the registry's import */
  trace a, r;
  trace_import_stats sa, sr;
  REQUIRE_OK(trace_import_azure(data("azure_good.csv"), NULL, &a, &sa, &e), &e);
  REQUIRE_OK(trace_import_file(trace_importer_find("azure"), data("azure_good.csv"), NULL, &r,
                               &sr, &e), &e);
  CHECK_EQ_INT(a.n_turns, r.n_turns);
  CHECK_EQ_INT(sa.records, sr.records);
  CHECK(a.n_turns > 0 && memcmp(a.turns, r.turns, (size_t)a.n_turns * sizeof *a.turns) == 0);
  trace_free(&a);
  trace_free(&r);
  /* a failed import leaves the trace empty */
  CHECK_EQ_INT(trace_import_mooncake(data("mooncake_bad.jsonl"), NULL, &t, NULL, &e), KV_EFORMAT);
  CHECK_EQ_INT(t.n_turns, 0);
  CHECK_EQ_INT(t.n_sessions, 0);
}

TEST_LIST = {TEST(test_every_entry), TEST(test_sources_and_files), {0}};
TEST_MAIN
