/* tests/test.h — a tiny test harness in the style of libuv's: each test file defines its cases
 * and a table, TEST_MAIN runs them all (or the one named on the command line) and prints each
 * failure with both operands. Exit codes: 0 pass, 1 fail, 77 skipped (CTest SKIP_RETURN_CODE).
 *
 *   static void test_thing(void) { CHECK_EQ_INT(f(2), 4); }
 *   TEST_LIST = { TEST(test_thing), {0} };
 *   TEST_MAIN
 *
 * A case calls TEST_SKIP("why") to skip (for example when ../shared or a GPU is absent). */
#ifndef KVLAB_TEST_H
#define KVLAB_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

extern int test__failures;
extern int test__skipped;
extern const char *test__skip_why;

#define TEST(fn) {#fn, fn}
#define TEST_LIST static const test_case test__cases[]

#define TEST_FAIL_AT(...)                                           \
  do {                                                              \
    fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);          \
    fprintf(stderr, __VA_ARGS__);                                   \
    fprintf(stderr, "\n");                                          \
    test__failures++;                                               \
  } while (0)

/* CHECK continues after a failure; REQUIRE returns from the case. */
#define CHECK(c)                                          \
  do {                                                    \
    if (!(c)) TEST_FAIL_AT("CHECK(%s)", #c);              \
  } while (0)
#define REQUIRE(c)                                        \
  do {                                                    \
    if (!(c)) {                                           \
      TEST_FAIL_AT("REQUIRE(%s)", #c);                    \
      return;                                             \
    }                                                     \
  } while (0)
#define CHECK_EQ_INT(a, b)                                                                 \
  do {                                                                                     \
    long long test__a = (long long)(a), test__b = (long long)(b);                          \
    if (test__a != test__b) TEST_FAIL_AT("%s == %s: %lld vs %lld", #a, #b, test__a, test__b); \
  } while (0)
#define REQUIRE_EQ_INT(a, b)                                                               \
  do {                                                                                     \
    long long test__a = (long long)(a), test__b = (long long)(b);                          \
    if (test__a != test__b) {                                                              \
      TEST_FAIL_AT("%s == %s: %lld vs %lld", #a, #b, test__a, test__b);                    \
      return;                                                                              \
    }                                                                                      \
  } while (0)
/* |a-b| <= atol + rtol*|b| */
#define CHECK_NEAR(a, b, atol, rtol)                                                           \
  do {                                                                                         \
    double test__a = (double)(a), test__b = (double)(b);                                       \
    if (!(fabs(test__a - test__b) <= (atol) + (rtol)*fabs(test__b)))                           \
      TEST_FAIL_AT("%s ~= %s: %.9g vs %.9g (atol %g rtol %g)", #a, #b, test__a, test__b,       \
                   (double)(atol), (double)(rtol));                                            \
  } while (0)
#define CHECK_STR_CONTAINS(hay, needle)                                                        \
  do {                                                                                         \
    const char *test__h = (hay), *test__n = (needle);                                          \
    if (!test__h || !strstr(test__h, test__n))                                                 \
      TEST_FAIL_AT("'%s' does not contain '%s'", test__h ? test__h : "(null)", test__n);       \
  } while (0)
/* Call returned 0; otherwise print the kv_error message. */
#define CHECK_OK(call, errp)                                                                   \
  do {                                                                                         \
    int test__rc = (call);                                                                     \
    if (test__rc != 0) TEST_FAIL_AT("%s returned %d: %s", #call, test__rc, (errp)->msg);       \
  } while (0)
#define REQUIRE_OK(call, errp)                                                                 \
  do {                                                                                         \
    int test__rc = (call);                                                                     \
    if (test__rc != 0) {                                                                       \
      TEST_FAIL_AT("%s returned %d: %s", #call, test__rc, (errp)->msg);                        \
      return;                                                                                  \
    }                                                                                          \
  } while (0)

#define TEST_SKIP(why)                 \
  do {                                 \
    test__skipped++;                   \
    test__skip_why = (why);            \
    return;                            \
  } while (0)

/* Directory of the source tree (set by CTest); "." when run by hand from the top. */
static inline const char *test_source_dir(void) {
  const char *s = getenv("KVLAB_SOURCE_DIR");
  return s ? s : ".";
}
/* A scratch path under the build tree: "<build>/tests/tmp/<name>" (directory created). */
const char *test_tmp_path(const char *name);
/* <source>/tests/<area>/data/<name> (a crafted input committed beside the tests). */
const char *test_data_path(const char *area, const char *name);
/* <source>/<rel>: data that ship with the repository (traces/data/...). */
const char *test_repo_path(const char *rel);
/* ../shared/<rel> beside the source tree, or NULL when absent (tests then skip). */
const char *test_shared_path(const char *rel);

#define TEST_MAIN                                                                             \
  int test__failures = 0, test__skipped = 0;                                                  \
  const char *test__skip_why = NULL;                                                          \
  int main(int argc, char **argv) {                                                           \
    int ran = 0, skipped_cases = 0, failed_cases = 0;                                         \
    for (const test_case *t = test__cases; t->name; t++) {                                    \
      if (argc > 1 && strcmp(argv[1], t->name) != 0) continue;                                \
      int f0 = test__failures, s0 = test__skipped;                                            \
      t->fn();                                                                                \
      ran++;                                                                                  \
      if (test__failures != f0) {                                                             \
        failed_cases++;                                                                       \
        printf("not ok - %s\n", t->name);                                                     \
      } else if (test__skipped != s0) {                                                       \
        skipped_cases++;                                                                      \
        printf("skip   - %s (%s)\n", t->name, test__skip_why);                                \
      } else {                                                                                \
        printf("ok     - %s\n", t->name);                                                     \
      }                                                                                       \
      fflush(stdout);                                                                         \
    }                                                                                         \
    if (ran == 0) {                                                                           \
      fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");                   \
      return 1;                                                                               \
    }                                                                                         \
    printf("%d cases: %d failed, %d skipped\n", ran, failed_cases, skipped_cases);            \
    if (failed_cases) return 1;                                                               \
    return skipped_cases == ran ? 77 : 0;                                                     \
  }

#endif /* KVLAB_TEST_H */
