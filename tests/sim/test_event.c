/* Event kernel: the (time, seq) order, lazy cancellation, counters, time monotonicity. */
#include "sim_event.h"
#include "test.h"

typedef struct {
  sim_events *ev;
  int64_t fired_time[4096];
  int64_t fired_arg[4096];
  int n;
} rec;

static void on_fire(void *ctx, int64_t arg) {
  rec *r = ctx;
  r->fired_time[r->n] = r->ev->now;
  r->fired_arg[r->n] = arg;
  r->n++;
}

/* The order is defined by sim_event_before alone: time first, then sequence. */
static void test_order_definition(void) {
  sim_event_key a = {10, 5, 0}, b = {10, 6, 1}, c = {9, 100, 2};
  CHECK(sim_event_before(&a, &b));
  CHECK(!sim_event_before(&b, &a));
  CHECK(sim_event_before(&c, &a));
  CHECK(!sim_event_before(&a, &a)); /* strict */
}

/* Same-time events fire in scheduling order; different times in time order; the fired
 * sequence equals a stable sort of (time, scheduling index). */
static void test_fifo_ties_and_sorted(void) {
  sim_events ev;
  sim_events_init(&ev);
  static rec r;
  memset(&r, 0, sizeof r);
  r.ev = &ev;
  uint64_t x = 12345;
  int64_t times[2000];
  for (int i = 0; i < 2000; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    times[i] = (int64_t)((x >> 33) % 50); /* many ties */
    sim_event_schedule(&ev, times[i], on_fire, &r, i, NULL);
  }
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  REQUIRE_EQ_INT(r.n, 2000);
  /* reference: counting sort by time, stable in index */
  int k = 0;
  int ok = 1;
  for (int64_t t = 0; t < 50; t++) {
    for (int i = 0; i < 2000; i++) {
      if (times[i] != t) continue;
      if (r.fired_arg[k] != i || r.fired_time[k] != t) ok = 0;
      k++;
    }
  }
  CHECK(ok);
  kv_error e = {0};
  CHECK_OK(sim_events_check(&ev, &e), &e);
  CHECK_EQ_INT(ev.n_scheduled, ev.n_fired + ev.n_cancelled + ev.n_pending);
  sim_events_free(&ev);
}

typedef struct {
  sim_events *ev;
  sim_event_id victim;
  int fired_victim;
  int chain_left;
  int64_t last;
  int backwards;
} chain_ctx;

static void on_victim(void *ctx, int64_t arg) {
  (void)arg;
  ((chain_ctx *)ctx)->fired_victim++;
}

static void on_chain(void *ctx, int64_t arg) {
  chain_ctx *c = ctx;
  if (c->ev->now < c->last) c->backwards = 1;
  c->last = c->ev->now;
  if (arg == 0) sim_event_cancel(c->ev, c->victim); /* cancel from inside a callback */
  if (c->chain_left-- > 0) {
    sim_event_schedule(c->ev, c->ev->now + (arg % 3), on_chain, c, arg + 1, NULL);
  }
}

static void test_lazy_cancel_and_counters(void) {
  sim_events ev;
  sim_events_init(&ev);
  chain_ctx c = {&ev, SIM_EVENT_NONE, 0, 100, 0, 0};
  c.victim = sim_event_schedule(&ev, 50, on_victim, &c, 0, NULL);
  sim_event_id other = sim_event_schedule(&ev, 60, on_victim, &c, 0, NULL);
  sim_event_schedule(&ev, 0, on_chain, &c, 0, NULL);
  CHECK(sim_event_pending(&ev, c.victim));
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_EQ_INT(c.fired_victim, 1); /* only `other` fired */
  CHECK(!c.backwards);
  CHECK(!sim_event_pending(&ev, other));
  CHECK_EQ_INT(sim_event_cancel(&ev, other), 0);    /* stale: already fired */
  CHECK_EQ_INT(sim_event_cancel(&ev, c.victim), 0); /* stale: already cancelled */
  CHECK_EQ_INT(sim_event_cancel(&ev, SIM_EVENT_NONE), 0);
  CHECK_EQ_INT(ev.n_cancelled, 1);
  CHECK_EQ_INT(ev.n_pending, 0);
  CHECK_EQ_INT(ev.n_scheduled, ev.n_fired + ev.n_cancelled);
  CHECK_EQ_INT(ev.n_fired, 1 + 101); /* `other` + the chain (first event + 100 follow-ups) */
  kv_error e = {0};
  CHECK_OK(sim_events_check(&ev, &e), &e);
  sim_events_free(&ev);
}

/* A cancelled event does not count as the next time; slot reuse keeps stale handles stale. */
static void test_next_time_and_slot_reuse(void) {
  sim_events ev;
  sim_events_init(&ev);
  static rec r;
  memset(&r, 0, sizeof r);
  r.ev = &ev;
  sim_event_id a = sim_event_schedule(&ev, 5, on_fire, &r, 1, NULL);
  sim_event_schedule(&ev, 7, on_fire, &r, 2, NULL);
  CHECK_EQ_INT(sim_events_next_time(&ev), 5);
  sim_event_cancel(&ev, a);
  CHECK_EQ_INT(sim_events_next_time(&ev), 7);
  /* the slot of `a` is reused by a new event: the old handle must not cancel it */
  sim_event_id b = sim_event_schedule(&ev, 9, on_fire, &r, 3, NULL);
  CHECK_EQ_INT(sim_event_cancel(&ev, a), 0);
  CHECK(sim_event_pending(&ev, b));
  sim_events_run(&ev, 8, NULL); /* stops before 9 */
  CHECK_EQ_INT(r.n, 1);
  CHECK_EQ_INT(ev.now, 7);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_EQ_INT(r.n, 2);
  CHECK_EQ_INT(r.fired_arg[1], 3);
  sim_events_free(&ev);
}

TEST_LIST = {TEST(test_order_definition), TEST(test_fifo_ties_and_sorted),
             TEST(test_lazy_cancel_and_counters), TEST(test_next_time_and_slot_reuse), {0}};
TEST_MAIN
