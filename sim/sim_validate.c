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

static void sim__iter(const sim_cost *c, const sim_iter_work *w, int64_t *layer, int64_t *head,
                      unsigned *fl) {
  if (c->kind == SIM_COST_MEASURED) {
    unsigned f = 0;
    sim_prof_cost_iter(c->measured, w, layer, head, &f);
    *fl |= f;
  } else {
    sim_cost_iter(c, w, layer, head);
  }
}

int sim_val_predict(const sim_cost *c, const sim_val_iter *it, double h2d_bw, double lat_ns,
                    int64_t *ns, unsigned *flags, kv_error *err) {
  if (it->kind < 0 || it->kind >= SIM_VAL_KINDS || it->batch < 1 || it->tokens < 1 ||
      it->context < 0 || it->read_buffer < 0 || it->batch > (1 << 24)) {
    return kv_error_set(err, KV_EINVAL, "iteration kind %d, batch %lld, tokens %lld, context "
                        "%lld, read buffer %lld is not one the grid defines", (int)it->kind,
                        (long long)it->batch, (long long)it->tokens, (long long)it->context,
                        (long long)it->read_buffer);
  }
  if (it->kind >= SIM_VAL_PRELOAD && !(h2d_bw > 0)) {
    return kv_error_set(err, KV_EINVAL, "pre-loading needs a host-to-device bandwidth > 0");
  }
  unsigned fl = 0;
  int64_t L = c->model.layers, layer = 0, head = 0, total = 0;
  int64_t hist = it->kind == SIM_VAL_MIXED ? 0 : it->context, nw = it->tokens;
  int64_t hists[1] = {hist}, news[1] = {nw};
  sim_iter_work w = {0, hists, news, 0, 0};
  switch (it->kind) {
    case SIM_VAL_PREFILL: {
      /* batch sequences of the same shape: the cost model takes arrays of them */
      int64_t *a = malloc(2 * (size_t)it->batch * sizeof *a);
      if (!a) return kv_error_set(err, KV_ENOMEM, "prefill of %lld sequences: out of memory",
                                  (long long)it->batch);
      for (int64_t i = 0; i < it->batch; i++) {
        a[i] = it->context;
        a[it->batch + i] = it->tokens;
      }
      w = (sim_iter_work){(int32_t)it->batch, a, a + it->batch, 0, 0};
      sim__iter(c, &w, &layer, &head, &fl);
      free(a);
      total = L * layer + head;
      break;
    }
    case SIM_VAL_DECODE:
      w = (sim_iter_work){0, NULL, NULL, it->batch, it->batch * (it->context + 1)};
      sim__iter(c, &w, &layer, &head, &fl);
      total = L * layer + head;
      break;
    case SIM_VAL_MIXED:
      w = (sim_iter_work){1, hists, news, it->batch, it->batch * (it->context + 1)};
      sim__iter(c, &w, &layer, &head, &fl);
      total = L * layer + head;
      break;
    default: {
      w.n_prefill = 1;
      sim__iter(c, &w, &layer, &head, &fl);
      double bytes = (double)it->context * c->model.kv_bytes_per_token_layer;
      if (it->kind == SIM_VAL_RESIDENT) {
        total = L * layer + head;
      } else if (it->kind == SIM_VAL_SYNC) {
        /* the engine without pre-loading: one transfer of every layer, then the prefill */
        total = (int64_t)ceil(lat_ns + (double)L * bytes / h2d_bw * 1e9) + L * layer + head;
      } else {
        double x = lat_ns + bytes / h2d_bw * 1e9, end = 0;
        for (int64_t i = 0; i < L; i++) {
          double arrive = i < it->read_buffer ? 0 : (double)(i - it->read_buffer + 1) * x;
          end = (end > arrive ? end : arrive) + (double)layer;
        }
        total = (int64_t)ceil(end) + head;
      }
    }
  }
  *ns = total;
  if (flags) *flags = fl;
  return 0;
}
