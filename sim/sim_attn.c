/* sim_attn.c — one run's decode attention: admission by working set, per-iteration plans of
 * bytes, times and block-cache traffic, the capacity comparison (sim_attn.h). */
#include "sim_attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_stats.h"

/* ---- a run ------------------------------------------------------------------------------- */

void sim_attn_run_free(sim_attn_run *r) {
  free(r->plan.pre_ns);
  free(r->plan.att_ns);
  free(r->plan.post_ns);
  free(r->plan.h2d_bytes);
  free(r->plan.plain_ns);
  free(r->prev_need);
  free(r->ws);
  free(r->u_fixed);
  free(r->host_used);
  free(r->admitted);
  free(r->ws_sum);
  free(r->wprev_l);
  free(r->need_l);
  free(r->need_log);
  free(r->rowdraw);
  free(r->rowdraw_ok);
  memset(r, 0, sizeof *r);
}

int sim_attn_run_init(sim_attn_run *r, const sim_attn_model *am, uint64_t seed,
                      int64_t pool_bytes, int64_t *stats, kv_error *err) {
  memset(r, 0, sizeof *r);
  r->am = am;
  r->stats = stats;
  r->L = am->model.layers;
  r->kvh = am->model.kv_heads;
  kv_rng_seed(&r->rng, seed ^ 0x7073612d73696dULL);
  size_t L = (size_t)r->L;
  r->plan.pre_ns = calloc(L, sizeof(int64_t));
  r->plan.att_ns = calloc(L, sizeof(int64_t));
  r->plan.post_ns = calloc(L, sizeof(int64_t));
  r->plan.h2d_bytes = calloc(L, sizeof(int64_t));
  r->plan.plain_ns = calloc(L, sizeof(int64_t));
  r->ws_sum = calloc(L, sizeof(double));
  r->wprev_l = calloc(L, sizeof(double));
  r->need_l = calloc(L, sizeof(double));
  if (!r->plan.pre_ns || !r->plan.att_ns || !r->plan.post_ns || !r->plan.h2d_bytes ||
      !r->plan.plain_ns || !r->ws_sum || !r->wprev_l || !r->need_l) {
    sim_attn_run_free(r);
    return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  r->pool_blocks = am->block_bytes > 0 ? (double)pool_bytes / (double)am->block_bytes : 0;
  r->n_rows = am->have_prof ? am->prof.n_layers : 0;
  return 0;
}

static int sim__ensure_job(sim_attn_run *r, int32_t job) {
  if (job < r->cap_jobs) return 0;
  int32_t nc = r->cap_jobs ? r->cap_jobs : 64;
  while (nc <= job) nc *= 2;
  size_t L = (size_t)r->L, H = (size_t)r->am->prm.head_draws;
  double *pn = realloc(r->prev_need, (size_t)nc * L * sizeof *pn);
  if (pn) r->prev_need = pn;
  double *ws = realloc(r->ws, (size_t)nc * L * sizeof *ws);
  if (ws) r->ws = ws;
  double *uf = realloc(r->u_fixed, (size_t)nc * L * H * sizeof *uf);
  if (uf) r->u_fixed = uf;
  int64_t *hu = realloc(r->host_used, (size_t)nc * sizeof *hu);
  if (hu) r->host_used = hu;
  uint8_t *ad = realloc(r->admitted, (size_t)nc);
  if (ad) r->admitted = ad;
  if (!pn || !ws || !uf || !hu || !ad) return KV_ENOMEM;
  for (int32_t j = r->cap_jobs; j < nc; j++) {
    r->admitted[j] = 0;
    r->host_used[j] = 0;
  }
  r->cap_jobs = nc;
  return 0;
}

/* Expected working set (blocks of all KV heads) of a request at final context n in layer l. */
static double sim__ws_layer(const sim_attn_run *r, int layer, int64_t n) {
  const sim_attn_model *am = r->am;
  double t = sim_attn_mean_tokens(am, layer, n);
  return (double)r->kvh * ceil(t / (double)am->method.block_size);
}

int sim_attn_can_admit(const sim_attn_run *r, int64_t final_ctx, int batch_empty) {
  const sim_attn_model *am = r->am;
  if (!am->prm.offload || batch_empty) return 1;
  if (r->host_sum + final_ctx * sim_attn_bytes_per_token(am) > am->prm.host_bytes) return 0;
  if (!am->prm.admit_ws) return 1;
  double cap = am->prm.admit_headroom * r->pool_blocks;
  if (am->prm.pool == SIM_ATTN_POOL_UNIFIED) {
    double tot = 0;
    for (int64_t l = 0; l < r->L; l++) tot += r->ws_sum[l] + sim__ws_layer(r, (int)l, final_ctx);
    return tot <= cap;
  }
  for (int64_t l = 0; l < r->L; l++) {
    if (r->ws_sum[l] + sim__ws_layer(r, (int)l, final_ctx) > cap / (double)r->L) return 0;
  }
  return 1;
}

int sim_attn_admit(sim_attn_run *r, int32_t job, int64_t final_ctx) {
  if (sim__ensure_job(r, job)) return KV_ENOMEM;
  const sim_attn_model *am = r->am;
  size_t L = (size_t)r->L, H = (size_t)am->prm.head_draws;
  for (size_t l = 0; l < L; l++) {
    r->prev_need[(size_t)job * L + l] = -1.0;
    double w = am->prm.offload ? sim__ws_layer(r, (int)l, final_ctx) : 0.0;
    r->ws[(size_t)job * L + l] = w;
    r->ws_sum[l] += w;
    if (am->prm.redraw == SIM_ATTN_REDRAW_REQUEST) {
      for (size_t h = 0; h < H; h++) r->u_fixed[((size_t)job * L + l) * H + h] = kv_rng_uniform(&r->rng);
    }
  }
  r->host_used[job] = am->prm.offload ? final_ctx * sim_attn_bytes_per_token(am) : 0;
  r->host_sum += r->host_used[job];
  r->admitted[job] = 1;
  return 0;
}

void sim_attn_release(sim_attn_run *r, int32_t job) {
  if (job >= r->cap_jobs || !r->admitted[job]) return;
  size_t L = (size_t)r->L;
  for (size_t l = 0; l < L; l++) {
    r->ws_sum[l] -= r->ws[(size_t)job * L + l];
    if (r->ws_sum[l] < 1e-6) r->ws_sum[l] = 0; /* rounding of the running sum */
  }
  r->host_sum -= r->host_used[job];
  r->host_used[job] = 0;
  r->admitted[job] = 0;
}

static int64_t sim__ns(double t) {
  if (!(t > 0)) return 0;
  if (t > 9e18) return INT64_MAX / 4;
  return (int64_t)llround(t);
}

/* pre (launch + selection) and att (the attention kernels) of one layer from the HBM bytes it
 * reads, through the measured kernel fit when there is one for the class, else the model of
 * sim_attn.h (imax: the layer's largest PSA iteration count). */
static void sim__layer_time(const sim_attn_model *am, int sparse, int64_t imax, double bytes,
                            int64_t *pre_ns, int64_t *att_ns) {
  const sim_attn_params *ap = &am->prm;
  const int psa = ap->mode == SIM_ATTN_PSA;
  int kc = !sparse ? SIM_ATTN_KCLASS_DENSE
           : !psa ? SIM_ATTN_KCLASS_TOPK
           : ap->loop == SIM_ATTN_LOOP_PIPELINED ? SIM_ATTN_KCLASS_PSA_PIPE
                                                  : SIM_ATTN_KCLASS_PSA_HOST;
  if (am->have_kprof && am->kc1[kc] > 0) {
    *att_ns = sim__ns(am->kc0[kc] + am->kc1[kc] * bytes / (double)am->tp);
    return;
  }
  *pre_ns = ap->launch_ns + (sparse ? ap->select_ns : 0);
  double t_hbm = bytes / ((double)am->tp * am->hw.hbm_bw * ap->hbm_eff) * 1e9;
  if (sparse && psa) {
    if (ap->loop == SIM_ATTN_LOOP_PIPELINED) {
      double t_it = (double)imax * (double)ap->iter_pipelined_ns;
      t_hbm = t_hbm > t_it ? t_hbm : t_it;
    } else {
      t_hbm += (double)imax * (double)ap->iter_hostsync_ns;
    }
  }
  *att_ns = sim__ns(t_hbm);
}

/* The step's needs become the previous step of the next one and join the need log; its totals
 * (tokens, dense tokens, HBM bytes, hit and missed blocks, H2D bytes: sums[6]) go to the
 * counters. KV_ENOMEM when the log cannot grow. */
static int sim__record_step(sim_attn_run *r, int64_t n, const double sums[6], int64_t ns_all) {
  const int64_t L = r->L;
  r->wprev = 0;
  for (int64_t l = 0; l < L; l++) {
    r->wprev_l[l] = r->need_l[l];
    r->wprev += r->need_l[l];
  }
  if (r->n_steps == r->cap_steps) {
    int64_t nc = r->cap_steps ? r->cap_steps * 2 : 1024;
    int64_t *nl = realloc(r->need_log, (size_t)(nc * L) * sizeof *nl);
    if (!nl) return KV_ENOMEM;
    r->need_log = nl;
    r->cap_steps = nc;
  }
  for (int64_t l = 0; l < L; l++) r->need_log[r->n_steps * L + l] = (int64_t)llround(r->need_l[l]);
  r->n_steps++;
  int64_t *st = r->stats;
  st[SIM_STAT_ATTN_STEPS] += 1;
  st[SIM_STAT_ATTN_DECODE_SEQS] += n;
  st[SIM_STAT_ATTN_TOKENS] += (int64_t)llround(sums[0]);
  st[SIM_STAT_ATTN_DENSE_TOKENS] += (int64_t)llround(sums[1]);
  st[SIM_STAT_ATTN_HBM_BYTES] += (int64_t)llround(sums[2]);
  st[SIM_STAT_ATTN_HIT_BLOCKS] += (int64_t)llround(sums[3]);
  st[SIM_STAT_ATTN_MISS_BLOCKS] += (int64_t)llround(sums[4]);
  st[SIM_STAT_ATTN_NS] += ns_all;
  st[SIM_STAT_ATTN_H2D_BYTES] += (int64_t)llround(sums[5]);
  return 0;
}

int sim_attn_iter(sim_attn_run *r, const sim_attn_seq *seqs, int64_t n, int64_t post_ns,
                  int64_t new_kv_tokens, int has_store, kv_error *err) {
  const sim_attn_model *am = r->am;
  const sim_attn_params *ap = &am->prm;
  const int64_t L = r->L, kvh = r->kvh, H = ap->head_draws;
  const int64_t bs = am->method.block_size, D = am->model.head_dim;
  const int elem = (int)am->model.bytes_per_elem;
  const int psa = ap->mode == SIM_ATTN_PSA;
  const int64_t forced = am->method.forced_blocks;
  const double per_draw = (double)kvh / (double)H;
  sim_attn_plan *pl = &r->plan;
  for (int64_t i = 0; i < n; i++) {
    if (sim__ensure_job(r, seqs[i].job)) return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  if (am->have_prof && n * r->n_rows > r->cap_rowdraw) {
    int64_t nc = n * r->n_rows * 2;
    void *a = realloc(r->rowdraw, (size_t)nc * sizeof(sim_attn_rowdraw));
    if (a) r->rowdraw = a;
    uint8_t *b = realloc(r->rowdraw_ok, (size_t)nc);
    if (b) r->rowdraw_ok = b;
    if (!a || !b) return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
    r->cap_rowdraw = nc;
  }
  if (am->have_prof && n > 0) memset(r->rowdraw_ok, 0, (size_t)(n * r->n_rows));
  double tok_all = 0, dense_all = 0, bytes_all = 0, hits_all = 0, miss_all = 0, h2d_all = 0;
  int64_t ns_all = 0;
  for (int64_t l = 0; l < L; l++) {
    double bytes = 0, need = 0, hits = 0, tok = 0;
    int64_t imax = 0;
    int sparse = 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t ctx = seqs[i].ctx;
      const int32_t j = seqs[i].job;
      double blocks_il = 0;
      int full = sim_attn_static_full(am, ctx);
      dense_all += (double)(kvh * ctx);
      if (full) {
        tok += (double)(kvh * ctx);
        bytes += (double)(kvh * ctx * 2 * D * elem);
        blocks_il = (double)(kvh * ((ctx + bs - 1) / bs));
      } else {
        sparse = 1;
        int64_t tsum = 0, bsum = 0;
        const int row = am->row[l];
        sim_attn_rowdraw *rd = (sim_attn_rowdraw *)r->rowdraw + (size_t)i * r->n_rows + row;
        if (!r->rowdraw_ok[(size_t)i * r->n_rows + row]) {
          sim_attn_rowdraw_init(am, row, ctx, rd);
          r->rowdraw_ok[(size_t)i * r->n_rows + row] = 1;
        }
        for (int64_t h = 0; h < H; h++) {
          double u = ap->redraw == SIM_ATTN_REDRAW_REQUEST
                         ? r->u_fixed[((size_t)j * L + l) * H + h]
                         : kv_rng_uniform(&r->rng);
          int64_t t = sim_attn_frac_tokens(sim_attn_rowdraw_frac(am, rd, u), ctx);
          int64_t b = (t + bs - 1) / bs;
          tsum += t;
          bsum += b;
          if (psa) {
            int64_t it = 1 + (b > forced ? (b - forced + am->method.group_blocks - 1) /
                                               am->method.group_blocks : 0);
            if (it > imax) imax = it;
          }
        }
        /* bytes read are affine in the tokens: K+V of the tokens plus the metadata of all
         * blocks, the same for every draw */
        tok += per_draw * (double)tsum;
        bytes += per_draw * (double)(sim_attn_bytes_read(&am->method, D, elem, ctx, tsum) +
                                     (H - 1) * sim_attn_bytes_read(&am->method, D, elem, ctx, 0));
        blocks_il += per_draw * (double)bsum;
      }
      need += blocks_il;
      if (ap->offload) {
        double *prev = &r->prev_need[(size_t)j * L + l];
        double before = *prev < 0 ? blocks_il : *prev;
        double rr = full ? 1.0 : am->reuse[l];
        double x = rr * blocks_il < before ? rr * blocks_il : before;
        double rho = 1.0;
        if (ap->pool == SIM_ATTN_POOL_UNIFIED) {
          if (r->wprev > r->pool_blocks) rho = r->pool_blocks / r->wprev;
        } else {
          double c = r->pool_blocks / (double)L;
          if (r->wprev_l[l] > c) rho = c / r->wprev_l[l];
        }
        hits += rho * x;
        *prev = blocks_il;
      }
    }
    r->need_l[l] = need;
    int64_t pre = 0, att = 0;
    if (n > 0) sim__layer_time(am, sparse, imax, bytes, &pre, &att);
    double miss = need - hits;
    if (miss < 0) miss = 0;
    pl->pre_ns[l] = pre;
    pl->att_ns[l] = att;
    pl->post_ns[l] = post_ns;
    pl->plain_ns[l] = pre + att + post_ns;
    pl->h2d_bytes[l] = ap->offload ? (int64_t)llround(miss * (double)am->block_bytes) : 0;
    tok_all += tok;
    bytes_all += bytes;
    hits_all += hits;
    miss_all += ap->offload ? miss : 0;
    h2d_all += (double)pl->h2d_bytes[l];
    ns_all += pre + att;
  }
  pl->decode_ns = ns_all;
  pl->d2h_bytes = ap->offload && !has_store ? new_kv_tokens * sim_attn_bytes_per_token(am) : 0;
  if (n > 0) {
    const double sums[6] = {tok_all, dense_all, bytes_all, hits_all, miss_all, h2d_all};
    if (sim__record_step(r, n, sums, ns_all)) {
      return kv_error_set(err, KV_ENOMEM, "attention: out of memory (need log)");
    }
  }
  r->stats[SIM_STAT_ATTN_D2H_BYTES] += pl->d2h_bytes;
  return 0;
}

int sim_attn_finish(sim_attn_run *r, int64_t gpu_kv_peak_bytes, sim_attn_result *res,
                    kv_error *err) {
  memset(res, 0, sizeof *res);
  res->pool_bytes = (int64_t)llround(r->pool_blocks * (double)r->am->block_bytes);
  res->pool_blocks = (int64_t)floor(r->pool_blocks);
  res->gpu_kv_peak_bytes = gpu_kv_peak_bytes;
  res->mean_err = r->am->mean_err;
  res->kernel_measured = r->am->have_kprof;
  if (r->n_steps > 0) {
    int rc = kv_pool_compare(r->need_log, r->n_steps, (int)r->L, r->am->block_bytes,
                              &res->pool_report, err);
    if (rc) return rc;
    res->have_pool_report = 1;
  }
  return 0;
}

int sim_attn_summary_rows(const sim_attn_params *ap, const sim_attn_result *res,
                          const int64_t *ms, double served_s, sim_attn_row *out, int cap) {
  int n = 0;
#define ROW(nm, val)                                 \
  do {                                               \
    if (n < cap) out[n++] = (sim_attn_row){nm, (double)(val)}; \
  } while (0)
  double dec = (double)ms[SIM_STAT_DECODE_TOKENS];
  double steps = (double)ms[SIM_STAT_ATTN_STEPS];
  double on = ap->mode != SIM_ATTN_OFF;
  ROW("throughput_tok_s", served_s > 0 ? dec / served_s : NAN);
  ROW("time_per_token_s", dec > 0 ? served_s / dec : NAN);
  ROW("throughput_sat_tok_s", ms[SIM_STAT_SAT_NS] > 0
                                  ? (double)ms[SIM_STAT_SAT_TOKENS] / ((double)ms[SIM_STAT_SAT_NS] * 1e-9)
                                  : NAN);
  ROW("sat_time_frac", served_s > 0 ? (double)ms[SIM_STAT_SAT_NS] * 1e-9 / served_s : NAN);
  ROW("attn_mode", ap->mode);
  ROW("attn_offload", ap->offload);
  ROW("attn_pool", ap->pool);
  ROW("attn_loop", ap->loop);
  ROW("attn_kernel_measured", on ? res->kernel_measured : NAN);
  ROW("attn_mean_err", on ? res->mean_err : NAN);
  ROW("attn_batch_mean", on && steps > 0 ? (double)ms[SIM_STAT_ATTN_DECODE_SEQS] / steps : NAN);
  ROW("attn_read_frac", on && ms[SIM_STAT_ATTN_DENSE_TOKENS] > 0
                            ? (double)ms[SIM_STAT_ATTN_TOKENS] / (double)ms[SIM_STAT_ATTN_DENSE_TOKENS]
                            : NAN);
  ROW("attn_hbm_bytes", on ? (double)ms[SIM_STAT_ATTN_HBM_BYTES] : NAN);
  ROW("attn_hbm_bytes_per_token", on && dec > 0 ? (double)ms[SIM_STAT_ATTN_HBM_BYTES] / dec : NAN);
  ROW("attn_h2d_bytes", on ? (double)ms[SIM_STAT_ATTN_H2D_BYTES] : NAN);
  ROW("attn_h2d_bytes_per_token", on && dec > 0 ? (double)ms[SIM_STAT_ATTN_H2D_BYTES] / dec : NAN);
  ROW("attn_d2h_bytes", on ? (double)ms[SIM_STAT_ATTN_D2H_BYTES] : NAN);
  double hm = (double)(ms[SIM_STAT_ATTN_HIT_BLOCKS] + ms[SIM_STAT_ATTN_MISS_BLOCKS]);
  ROW("attn_block_hit_rate", on && ap->offload && hm > 0 ? (double)ms[SIM_STAT_ATTN_HIT_BLOCKS] / hm : NAN);
  double busy = (double)ms[SIM_STAT_GPU_BUSY_NS];
  ROW("attn_time_frac", on && busy > 0 ? (double)ms[SIM_STAT_ATTN_NS] / busy : NAN);
  ROW("attn_pcie_stall_frac", on && busy > 0 ? (double)ms[SIM_STAT_ATTN_PCIE_STALL_NS] / busy : NAN);
  ROW("gpu_kv_peak_bytes", res->gpu_kv_peak_bytes);
  ROW("pool_bytes", on && ap->offload ? (double)res->pool_bytes : NAN);
  const kv_pool_report *pr = &res->pool_report;
  int pool = on && res->have_pool_report;
  ROW("pool_block_bytes", pool ? (double)pr->block_bytes : NAN);
  ROW("pool_need_unified_blocks", pool ? (double)pr->unified_blocks : NAN);
  ROW("pool_need_equal_blocks", pool ? (double)pr->equal_blocks : NAN);
  ROW("pool_need_sized_blocks", pool ? (double)pr->sized_blocks : NAN);
  ROW("pool_need_unified_p99", pool ? (double)pr->unified_p99 : NAN);
  ROW("pool_need_equal_p99", pool ? (double)pr->equal_p99 : NAN);
  ROW("pool_equal_over_unified", pool && pr->unified_blocks > 0
                                     ? (double)pr->equal_blocks / (double)pr->unified_blocks
                                     : NAN);
  ROW("pool_unified_util", pool ? pr->unified_util : NAN);
  ROW("pool_equal_util", pool ? pr->equal_util : NAN);
#undef ROW
  return n;
}
