/* kvsim-bench — speed of the simulator (a benchmark, not a test; run it on an idle machine).
 *
 *   kvsim-bench [config.ini] [-s section.key=value]...
 *
 * 1. Event kernel: schedules and fires 20M events through a heap holding 1024 pending events
 *    (each fired event schedules one at a pseudo-random later time); prints events/s.
 * 2. One full configuration (default: sim/data/configs/cachedattention-13b.ini, the paper's
 *    ShareGPT-scale workload of 9K sessions / ~52K turns): prints the wall time of sim_run,
 *    its events/s and the peak resident memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kv_progress.h"
#include "sim.h"
#include "sim_event.h"
#include "sim_workload.h"

#ifndef SIM_DATA_DIR
#define SIM_DATA_DIR "sim/data"
#endif

/* CPU seconds of this process (wall time on a shared machine overstates the cost). */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  sim_events *ev;
  uint64_t x;
  int64_t left;
} bench_ctx;

static void bench_fire(void *ctx, int64_t arg) {
  bench_ctx *b = ctx;
  (void)arg;
  if (b->left-- <= 0) return;
  b->x ^= b->x << 13;
  b->x ^= b->x >> 7;
  b->x ^= b->x << 17;
  sim_event_schedule(b->ev, b->ev->now + (int64_t)(b->x % 1000000), bench_fire, b, 0, NULL);
}

int main(int argc, char **argv) {
  const char *cfg_path = SIM_DATA_DIR "/configs/cachedattention-13b.ini";
  kv_error err = {0};
  int first_over = 1;
  if (argc > 1 && strcmp(argv[1], "-s") != 0) {
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
      printf("usage: kvsim-bench [config.ini] [-s section.key=value]...\n");
      return 0;
    }
    cfg_path = argv[1];
    first_over = 2;
  }
  /* 1. event kernel */
  {
    sim_events ev;
    sim_events_init(&ev);
    bench_ctx b = {&ev, 88172645463325252ull, 20000000};
    for (int i = 0; i < 1024; i++) {
      sim_event_schedule(&ev, (int64_t)i * 977, bench_fire, &b, 0, NULL);
    }
    double t0 = kv_now_s(), c0 = cpu_s();
    sim_events_run(&ev, SIM_TIME_MAX, NULL);
    double dt = kv_now_s() - t0, dc = cpu_s() - c0;
    printf("event kernel: %lld events in %.3f s wall = %.2f M events/s; %.3f s CPU = %.2f M "
           "events/CPU-s (1024 pending)\n", (long long)ev.n_fired, dt,
           (double)ev.n_fired / dt * 1e-6, dc, (double)ev.n_fired / dc * 1e-6);
    sim_events_free(&ev);
  }
  /* 2. one configuration */
  kv_config *cfg = NULL;
  int rc = kv_config_load(cfg_path, &cfg, &err);
  for (int i = first_over; !rc && i < argc; i++) {
    if (!strcmp(argv[i], "-s") && i + 1 < argc) rc = kv_config_override(cfg, argv[++i], &err);
    else rc = kv_error_set(&err, KV_EINVAL, "unknown argument '%s'", argv[i]);
  }
  sim_params p;
  trace t;
  trace_init(&t);
  int have_p = 0;
  if (!rc) {
    rc = sim_params_from_config(cfg, &p, &err);
    have_p = !rc;
  }
  double tg0 = kv_now_s();
  if (!rc) rc = sim_workload_build(cfg, p.seed, &t, &err);
  double tg = kv_now_s() - tg0;
  if (!rc) rc = kv_config_check_unused(cfg, &err);
  sim_result r;
  memset(&r, 0, sizeof r);
  double c0 = cpu_s();
  if (!rc) rc = sim_run(&p, &t, NULL, &r, &err);
  double run_cpu = cpu_s() - c0;
  if (!rc) {
    sim_summary s;
    sim_summarize(&r, &p, &s, &err);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("config %s: %lld sessions, %lld turns (workload generated in %.3f s)\n", cfg_path,
           (long long)t.n_sessions, (long long)t.n_turns, tg);
    printf("sim_run: %.3f s wall, %.3f s CPU, %lld events fired (%lld scheduled, %lld "
           "cancelled), %.2f M events/s wall, %.2f M events/CPU-s, %.1f simulated s\n",
           r.wall_s, run_cpu, (long long)r.events_fired, (long long)r.events_scheduled,
           (long long)r.events_cancelled, (double)r.events_fired / r.wall_s * 1e-6,
           (double)r.events_fired / run_cpu * 1e-6, (double)r.end_ns * 1e-9);
    printf("peak RSS %.1f MiB; hit rate %.4f, TTFT mean %.4f s\n", (double)ru.ru_maxrss / 1024.0,
           s.hit_rate, s.ttft_mean_s);
  } else {
    fprintf(stderr, "kvsim-bench: %s\n", err.msg);
  }
  sim_result_free(&r);
  trace_free(&t);
  if (have_p) sim_params_free(&p);
  kv_config_free(cfg);
  return rc ? 1 : 0;
}
