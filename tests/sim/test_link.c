/* Fluid link model against closed-form results (tests/sim: analytic link checks). */
#include "sim_link.h"
#include "test.h"

typedef struct {
  sim_events *ev;
  int64_t done[64];
  int n;
  sim_net *net;
  int restart;       /* start a follow-up flow from the callback */
  int32_t link;
} ctx_t;

static void on_done(void *c, int64_t arg) {
  ctx_t *x = c;
  x->done[arg] = x->ev->now;
  x->n++;
  if (x->restart && arg == 0) {
    int32_t r[1] = {x->link};
    sim_net_start(x->net, r, 1, 1e6, 0, on_done, x, 1, NULL, NULL);
  }
}

static void setup(sim_events *ev, sim_net *net, ctx_t *c) {
  sim_events_init(ev);
  sim_net_init(net, ev);
  memset(c, 0, sizeof *c);
  c->ev = ev;
  c->net = net;
}

/* Unloaded transfer: latency + bytes / bandwidth, for several sizes (ns, rounded up). */
static void test_unloaded(void) {
  double sizes[] = {1, 4096, 1e6, 5368709120.0 /* 5 GiB */, 123456789};
  for (int i = 0; i < 5; i++) {
    sim_events ev;
    sim_net net;
    ctx_t c;
    setup(&ev, &net, &c);
    kv_error e = {0};
    int32_t l = sim_net_add_link(&net, "pcie", 27.92e9, 5000, &e);
    REQUIRE(l >= 0);
    REQUIRE_OK(sim_net_start(&net, &l, 1, sizes[i], 0, on_done, &c, 0, NULL, &e), &e);
    sim_events_run(&ev, SIM_TIME_MAX, NULL);
    int64_t expect = 5000 + (int64_t)ceil(sizes[i] / 27.92e9 * 1e9 - 1e-7);
    CHECK_EQ_INT(c.done[0], expect);
    CHECK_NEAR(net.links[l].bytes_done, sizes[i], 1e-6, 1e-12);
    sim_net_free(&net);
    sim_events_free(&ev);
  }
  /* the paper's motivation number: 5 GiB over 26 GiB/s takes 192 ms (+ latency 0) */
  sim_events ev;
  sim_net net;
  ctx_t c;
  setup(&ev, &net, &c);
  int32_t l = sim_net_add_link(&net, "pcie", 26.0 * 1073741824.0, 0, NULL);
  sim_net_start(&net, &l, 1, 5.0 * 1073741824.0, 0, on_done, &c, 0, NULL, NULL);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_NEAR(c.done[0] * 1e-9, 5.0 / 26.0, 1e-9, 0);
  sim_net_free(&net);
  sim_events_free(&ev);
}

/* n equal flows started together share equally: all finish at n*b/B; a saturated link
 * delivers exactly its bandwidth (bytes_done / busy time == B). */
static void test_saturated_equal_share(void) {
  for (int n = 1; n <= 16; n *= 2) {
    sim_events ev;
    sim_net net;
    ctx_t c;
    setup(&ev, &net, &c);
    int32_t l = sim_net_add_link(&net, "ssd", 4e9, 0, NULL);
    for (int i = 0; i < n; i++) sim_net_start(&net, &l, 1, 1e8, 0, on_done, &c, i, NULL, NULL);
    CHECK_NEAR(sim_net_rate(&net, (sim_flow_id){0, 1}), 4e9 / n, 1, 1e-12);
    sim_events_run(&ev, SIM_TIME_MAX, NULL);
    int64_t expect = (int64_t)ceil(n * 1e8 / 4e9 * 1e9 - 1e-7);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(c.done[i], expect);
    sim_net_sync(&net);
    CHECK_NEAR(net.links[l].bytes_done / (net.links[l].busy_ns * 1e-9), 4e9, 0, 1e-9);
    sim_net_free(&net);
    sim_events_free(&ev);
  }
}

/* Two flows of s < l bytes: the small one ends at 2s/B, the large one at (s+l)/B (it gets the
 * whole link after the small one leaves). A flow arriving later shares from its start. */
static void test_unequal_and_late(void) {
  sim_events ev;
  sim_net net;
  ctx_t c;
  setup(&ev, &net, &c);
  double B = 1e9; /* 1 byte per ns */
  int32_t l = sim_net_add_link(&net, "x", B, 0, NULL);
  sim_net_start(&net, &l, 1, 1000, 0, on_done, &c, 0, NULL, NULL);
  sim_net_start(&net, &l, 1, 5000, 0, on_done, &c, 1, NULL, NULL);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_EQ_INT(c.done[0], 2000);
  CHECK_EQ_INT(c.done[1], 6000);
  sim_net_free(&net);
  sim_events_free(&ev);
  /* a second flow started (from a callback) when the first ends gets the full rate */
  setup(&ev, &net, &c);
  l = sim_net_add_link(&net, "x", B, 0, NULL);
  c.restart = 1;
  c.link = l;
  sim_net_start(&net, &l, 1, 3000, 0, on_done, &c, 0, NULL, NULL);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_EQ_INT(c.done[0], 3000);
  CHECK_EQ_INT(c.done[1], 3000 + 1000000);
  sim_net_free(&net);
  sim_events_free(&ev);
}

/* Max-min fairness: a capped flow takes its cap, the other the rest; a flow over two links is
 * limited by the narrower one and the wider link's spare capacity goes to its other flow. */
static void test_max_min(void) {
  sim_events ev;
  sim_net net;
  ctx_t c;
  setup(&ev, &net, &c);
  int32_t a = sim_net_add_link(&net, "h2d", 10e9, 0, NULL);
  int32_t b = sim_net_add_link(&net, "ssd_read", 2e9, 0, NULL);
  sim_flow_id f1, f2, f3;
  int32_t r1[1] = {a}, r2[2] = {b, a};
  sim_net_start(&net, r1, 1, 1e9, 0, on_done, &c, 0, &f1, NULL);
  sim_net_start(&net, r2, 2, 1e9, 0, on_done, &c, 1, &f2, NULL);
  CHECK_NEAR(sim_net_rate(&net, f2), 2e9, 1, 1e-12);  /* SSD-bound */
  CHECK_NEAR(sim_net_rate(&net, f1), 8e9, 1, 1e-12);  /* the rest of h2d */
  sim_net_start(&net, r1, 1, 1e9, 1e9, on_done, &c, 2, &f3, NULL); /* capped at 1 GB/s */
  CHECK_NEAR(sim_net_rate(&net, f3), 1e9, 1, 1e-12);
  CHECK_NEAR(sim_net_rate(&net, f2), 2e9, 1, 1e-12);
  CHECK_NEAR(sim_net_rate(&net, f1), 7e9, 1, 1e-12);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  /* f1: 1e9 bytes at 7 GB/s = 142857143 ns (rounded up) */
  CHECK_EQ_INT(c.done[0], (int64_t)ceil(1e9 / 7e9 * 1e9 - 1e-7));
  CHECK_EQ_INT(c.done[1], 500000000);  /* 1e9 / 2e9 s */
  CHECK_EQ_INT(c.done[2], 1000000000); /* 1e9 / 1e9 s */
  sim_net_free(&net);
  sim_events_free(&ev);
}

/* Latencies add along the route; during latency a flow takes no bandwidth. */
static void test_latency(void) {
  sim_events ev;
  sim_net net;
  ctx_t c;
  setup(&ev, &net, &c);
  int32_t a = sim_net_add_link(&net, "a", 1e9, 3000, NULL);
  int32_t b = sim_net_add_link(&net, "b", 1e9, 7000, NULL);
  int32_t r2[2] = {a, b};
  sim_net_start(&net, &a, 1, 10000, 0, on_done, &c, 0, NULL, NULL);
  sim_net_start(&net, r2, 2, 10000, 0, on_done, &c, 1, NULL, NULL);
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  /* flow 0 active at 3000 alone until flow 1 activates at 10000 (7000 bytes done), then both
   * share link a: flow 0's last 3000 bytes take 6000 ns -> 16000; flow 1 has 6000*0.5 = 3000
   * bytes by then and its last 7000 bytes at full rate -> 23000 */
  CHECK_EQ_INT(c.done[0], 16000);
  CHECK_EQ_INT(c.done[1], 23000);
  kv_error e = {0};
  CHECK_OK(sim_events_check(&ev, &e), &e);
  CHECK(sim_net_add_link(&net, "bad", 0, 0, &e) == KV_EINVAL);
  CHECK(sim_net_start(&net, &a, 1, 0, 0, on_done, &c, 0, NULL, &e) == KV_EINVAL);
  sim_net_free(&net);
  sim_events_free(&ev);
}

TEST_LIST = {TEST(test_unloaded), TEST(test_saturated_equal_share), TEST(test_unequal_and_late),
             TEST(test_max_min), TEST(test_latency), {0}};
TEST_MAIN
