/* kv_progress.h — progress reporting on stderr for long runs: a bar with ETA when stderr is a
 * terminal, plain "label: done/total (pct) eta" lines at most every few seconds otherwise. */
#ifndef KV_PROGRESS_H
#define KV_PROGRESS_H

#include <stdint.h>

typedef struct kv_progress {
  const char *label;
  int64_t total;
  int64_t done;
  double t_start, t_last;
  int tty;
  int quiet;
} kv_progress;

/* Wall-clock seconds from a monotonic clock. */
double kv_now_s(void);

void kv_progress_init(kv_progress *p, const char *label, int64_t total, int quiet);
/* Adds `n` finished units and redraws when due. */
void kv_progress_add(kv_progress *p, int64_t n);
/* Final line with total time. */
void kv_progress_finish(kv_progress *p);

#endif /* KV_PROGRESS_H */
