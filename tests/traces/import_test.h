/* tests/traces/import_test.h — helpers shared by the importer tests: crafted inputs in
 * tests/traces/data and a log of the records an importer skipped (its bad_fn callback). */
#ifndef KVLAB_IMPORT_TEST_H
#define KVLAB_IMPORT_TEST_H

#include <stdio.h>

#include "kv_err.h"
#include "test.h"

static inline const char *data(const char *name) { return test_data_path("traces", name); }

/* Messages of skipped records (the first 32). */
typedef struct bad_log {
  int n;
  char msg[32][400];
} bad_log;

static inline void collect(void *ctx, const kv_error *e) {
  bad_log *l = ctx;
  if (l->n < 32) snprintf(l->msg[l->n], sizeof l->msg[0], "%s", e->msg);
  l->n++;
}

#endif /* KVLAB_IMPORT_TEST_H */
