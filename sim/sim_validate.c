#include "sim_validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim_profile.h"

const char *const sim_val_kind_names[] = {"prefill", "decode", "mixed", "preload",
                                          "resident", "sync", NULL};

int sim_val_kind_find(const char *name) {
  for (int i = 0; sim_val_kind_names[i]; i++) {
    if (strcmp(sim_val_kind_names[i], name) == 0) return i;
  }
  return -1;
}

int sim_val_work(const sim_val_iter *it, sim_iter_work *w, int64_t **arrays, kv_error *err) {
  *arrays = NULL;
  if (it->kind < 0 || it->kind >= SIM_VAL_KINDS || it->batch < 1 || it->tokens < 1 ||
      it->context < 0 || it->read_buffer < 0 || it->batch > (1 << 24)) {
    return kv_error_set(err, KV_EINVAL, "iteration kind %d, batch %lld, tokens %lld, context "
                        "%lld, read buffer %lld is not one the grid defines", (int)it->kind,
                        (long long)it->batch, (long long)it->tokens, (long long)it->context,
                        (long long)it->read_buffer);
  }
  int64_t nseq = it->kind == SIM_VAL_PREFILL ? it->batch : 1;
  int64_t *a = malloc(2 * (size_t)nseq * sizeof *a);
  if (!a) return kv_error_set(err, KV_ENOMEM, "prefill of %lld sequences: out of memory",
                              (long long)nseq);
  /* prefill: batch sequences of the same shape; mixed: one prefill with nothing cached;
   * pre-loading kinds: one prefill after `context` history tokens */
  for (int64_t i = 0; i < nseq; i++) {
    a[i] = it->kind == SIM_VAL_MIXED ? 0 : it->context;
    a[nseq + i] = it->tokens;
  }
  *w = (sim_iter_work){(int32_t)nseq, a, a + nseq, 0, 0};
  if (it->kind == SIM_VAL_DECODE) {
    *w = (sim_iter_work){0, NULL, NULL, it->batch, it->batch * (it->context + 1)};
  } else if (it->kind == SIM_VAL_MIXED) {
    w->n_decode = it->batch;
    w->decode_ctx_sum = it->batch * (it->context + 1);
  }
  *arrays = a;
  return 0;
}

/* GPU time of one layer and of the head (ns) and the host's launch time per layer and fixed
 * (ns; 0 for a model without a host path). */
static void sim__times(const sim_cost *c, const sim_iter_work *w, double *g_layer, double *g_head,
                       double *h_layer, double *h_fixed, unsigned *fl) {
  *h_layer = *h_fixed = 0;
  if (c->kind == SIM_COST_MEASURED) {
    unsigned f = 0;
    sim_prof_cost_gpu(c->measured, w, g_layer, g_head, &f);
    *g_layer *= 1e3;
    *g_head *= 1e3;
    *fl |= f;
    if (*g_layer > 0) {
      *h_layer = c->measured->host_layer_us * 1e3;
      *h_fixed = c->measured->host_fixed_us * 1e3;
    }
  } else {
    int64_t layer = 0, head = 0;
    sim_cost_iter(c, w, &layer, &head);
    *g_layer = (double)layer;
    *g_head = (double)head;
  }
}

int sim_val_predict(const sim_cost *c, const sim_val_iter *it, double h2d_bw, double lat_ns,
                    int64_t *ns, unsigned *flags, kv_error *err) {
  if (it->kind >= SIM_VAL_PRELOAD && it->kind < SIM_VAL_KINDS && !(h2d_bw > 0)) {
    return kv_error_set(err, KV_EINVAL, "pre-loading needs a host-to-device bandwidth > 0");
  }
  sim_iter_work w;
  int64_t *a = NULL;
  int rc = sim_val_work(it, &w, &a, err);
  if (rc) return rc;
  unsigned fl = 0;
  double g, gh, h, hf;
  sim__times(c, &w, &g, &gh, &h, &hf, &fl);
  free(a);
  const int64_t L = c->model.layers;
  /* Two timelines: the host launches layer i's kernels during [i h, (i + 1) h] (eager; h = 0
   * for graph replay) and the GPU runs layer i after layer i - 1, after its KV arrived and not
   * before its launches end: end_i = max(end_{i-1} + g, arrive_i + g, (i + 1) h). The head ends
   * at max(end + GPU head, L h + fixed host time). Without arrivals and h <= g this is L g +
   * head; host-bound, L h + fixed: the per-layer floor of sim_prof_cost_iter. Pre-loading: a
   * transfer takes lat + bytes / bw, back to back from t = 0 on the copy stream, for the
   * layers outside the read buffer; sync waits for every layer's history before layer 0. */
  double bytes = (double)it->context * c->model.kv_bytes_per_token_layer;
  double x = lat_ns + bytes / h2d_bw * 1e9;
  double end = 0;
  for (int64_t i = 0; i < L; i++) {
    double arrive = 0;
    if (it->kind == SIM_VAL_PRELOAD && i >= it->read_buffer) {
      arrive = (double)(i - it->read_buffer + 1) * x;
    } else if (it->kind == SIM_VAL_SYNC) {
      arrive = lat_ns + (double)L * bytes / h2d_bw * 1e9;
    }
    double start = end > arrive ? end : arrive;
    double e = start + g, hl = (double)(i + 1) * h;
    end = e > hl ? e : hl;
  }
  double total = end + gh, host_end = (double)L * h + hf;
  if (host_end > total) total = host_end;
  *ns = (int64_t)ceil(total);
  if (flags) *flags = fl;
  return 0;
}
