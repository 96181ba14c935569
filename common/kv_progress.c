#include "kv_progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double kv_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kv_progress_init(kv_progress *p, const char *label, int64_t total, int quiet) {
  p->label = label;
  p->total = total;
  p->done = 0;
  p->t_start = p->t_last = kv_now_s();
  p->tty = isatty(2);
  p->quiet = quiet;
}

static void kv__fmt_time(double s, char *buf, size_t cap) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, cap, "--:--");
  } else if (s >= 3600) {
    snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
  } else {
    snprintf(buf, cap, "%02d:%02d", (int)s / 60, (int)s % 60);
  }
}

static void kv__draw(kv_progress *p, double now, int final) {
  double el = now - p->t_start;
  double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0;
  double eta = (p->done > 0 && frac < 1.0) ? el * (1.0 - frac) / frac : 0.0;
  char e1[32], e2[32];
  kv__fmt_time(el, e1, sizeof e1);
  kv__fmt_time(eta, e2, sizeof e2);
  if (p->tty) {
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r%s [%s] %lld/%lld %5.1f%% %s eta %s%s", p->label, bar,
            (long long)p->done, (long long)p->total, 100.0 * frac, e1, e2, final ? "\n" : "");
  } else {
    fprintf(stderr, "%s: %lld/%lld (%.1f%%) elapsed %s eta %s\n", p->label, (long long)p->done,
            (long long)p->total, 100.0 * frac, e1, e2);
  }
  fflush(stderr);
}

void kv_progress_add(kv_progress *p, int64_t n) {
  p->done += n;
  if (p->quiet) return;
  double now = kv_now_s();
  double every = p->tty ? 0.2 : 5.0;
  if (now - p->t_last >= every) {
    p->t_last = now;
    kv__draw(p, now, 0);
  }
}

void kv_progress_finish(kv_progress *p) {
  if (p->quiet) return;
  kv__draw(p, kv_now_s(), 1);
}
