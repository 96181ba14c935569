/* sim_output.c — aggregates (sim_summarize) and result files (sim_result_write), declared in
 * sim.h. HDF5 objects are created without modification times so that the same run gives a
 * byte-identical file. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_fs.h"
#include "kv_h5.h"
#include "sim.h"

#define SIM_GIB 1073741824.0

static int sim__cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Mean TTFT of measured requests whose arrival lies in [lo, hi) (NaN when none). */
static double sim__ttft_between(const sim_result *r, int64_t lo, int64_t hi) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < r->n_req; i++) {
    const sim_request *q = &r->req[i];
    if (q->warmup || q->finish_ns < 0 || q->arrival_ns < lo || q->arrival_ns >= hi) continue;
    sum += (double)(q->first_token_ns - q->arrival_ns);
    n++;
  }
  return n ? sum / (double)n * 1e-9 : NAN;
}

int sim_summarize(const sim_result *r, const sim_params *p, sim_summary *s, kv_error *err) {
  memset(s, 0, sizeof *s);
  s->n_by_turn = 32;
  int64_t n = 0;
  int64_t *ttft = malloc((size_t)(r->n_req ? r->n_req : 1) * sizeof *ttft);
  if (!ttft) return kv_error_set(err, KV_ENOMEM, "summary: out of memory");
  double sum_e2e = 0, sum_q = 0, sum_tbt = 0, n_tbt = 0, sum_hit = 0, sum_in = 0, sum_hist = 0;
  double sum_noq = 0, hit_tok_src[SIM_SRC_COUNT] = {0};
  int64_t last_finish = r->warm_ns, n_trunc = 0;
  int64_t first_arr = INT64_MAX, last_arr = INT64_MIN;
  double sum_ttft_h = 0, sum_pl_h = 0;
  for (int64_t i = 0; i < r->n_req; i++) {
    const sim_request *q = &r->req[i];
    if (q->warmup || q->finish_ns < 0) continue;
    ttft[n++] = q->first_token_ns - q->arrival_ns;
    if (q->finish_ns > last_finish) last_finish = q->finish_ns;
    if (q->arrival_ns < first_arr) first_arr = q->arrival_ns;
    if (q->arrival_ns > last_arr) last_arr = q->arrival_ns;
    sum_e2e += (double)(q->finish_ns - q->arrival_ns);
    sum_q += (double)(q->admit_ns - q->arrival_ns);
    sum_noq += (double)(q->first_token_ns - q->admit_ns);
    if (q->output_tokens > 1) {
      sum_tbt += (double)q->tbt_mean_ns * (double)(q->output_tokens - 1);
      n_tbt += (double)(q->output_tokens - 1);
    }
    sum_hit += (double)q->hit_tokens;
    sum_in += (double)q->input_tokens;
    sum_hist += (double)q->hist_tokens;
    n_trunc += q->truncated != 0;
    int b = q->turn < s->n_by_turn - 1 ? q->turn : s->n_by_turn - 1;
    if (q->hist_tokens > 0) {
      sum_ttft_h += (double)(q->first_token_ns - q->arrival_ns);
      sum_pl_h += (double)(q->first_token_ns - q->admit_ns);
      s->turns_with_history++;
      s->by_turn_with_history[b]++;
      if (q->hit_tokens > 0) {
        /* the one definition of a hit: every per-tier figure counts exactly these turns */
        s->hit_turns++;
        s->by_turn_hits[b]++;
        s->hit_by_src[q->src]++;
      }
    }
    if (q->hit_tokens > 0) hit_tok_src[q->src] += (double)q->hit_tokens;
  }
  s->turns = n;
  double twh = s->turns_with_history ? (double)s->turns_with_history : NAN;
  s->hit_rate = (double)s->hit_turns / twh;
  s->hit_rate_hbm = (double)s->hit_by_src[SIM_SRC_HBM] / twh;
  s->hit_rate_dram = (double)s->hit_by_src[SIM_SRC_DRAM] / twh;
  s->hit_rate_ssd = (double)s->hit_by_src[SIM_SRC_SSD] / twh;
  double tin = sum_in > 0 ? sum_in : NAN;
  s->token_hit_rate = sum_hit / tin;
  s->token_hit_rate_hbm = hit_tok_src[SIM_SRC_HBM] / tin;
  s->token_hit_rate_dram = hit_tok_src[SIM_SRC_DRAM] / tin;
  s->token_hit_rate_ssd = hit_tok_src[SIM_SRC_SSD] / tin;
  s->hist_hit_rate = sum_hist > 0 ? sum_hit / sum_hist : NAN;
  s->truncated_frac = n > 0 ? (double)n_trunc / (double)n : NAN;
  s->ttft_hist_mean_s = sum_ttft_h / twh * 1e-9;
  s->prefill_latency_hist_mean_s = sum_pl_h / twh * 1e-9;
  if (n > 0) {
    qsort(ttft, (size_t)n, sizeof *ttft, sim__cmp_i64);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)ttft[i];
    s->ttft_mean_s = sum / (double)n * 1e-9;
    s->ttft_p50_s = (double)ttft[(n - 1) / 2] * 1e-9;
    s->ttft_p99_s = (double)ttft[(int64_t)floor(0.99 * (double)(n - 1))] * 1e-9;
    s->e2e_mean_s = sum_e2e / (double)n * 1e-9;
    s->queue_mean_s = sum_q / (double)n * 1e-9;
    s->ttft_noqueue_mean_s = sum_noq / (double)n * 1e-9;
  } else {
    s->ttft_mean_s = s->ttft_p50_s = s->ttft_p99_s = s->e2e_mean_s = s->queue_mean_s = NAN;
    s->ttft_noqueue_mean_s = NAN;
  }
  s->tbt_mean_s = n_tbt > 0 ? sum_tbt / n_tbt * 1e-9 : NAN;
  free(ttft);
  /* counters over the measured window [warm_ns, cool_ns] */
  const int64_t *f = r->cool.v, *w = r->warm.v;
  int64_t cool_ns = r->cool_ns > r->warm_ns ? r->cool_ns : r->end_ns;
  if (r->cool_ns <= r->warm_ns) f = r->final.v;
  double prefill_ns = (double)(f[SIM_STAT_PREFILL_NS] - w[SIM_STAT_PREFILL_NS]);
  double in_tok = (double)(f[SIM_STAT_INPUT_TOKENS] - w[SIM_STAT_INPUT_TOKENS]);
  s->prefill_throughput_tok_s = prefill_ns > 0 ? in_tok / (prefill_ns * 1e-9) : NAN;
  s->gpu_busy_s = (double)(f[SIM_STAT_GPU_BUSY_NS] - w[SIM_STAT_GPU_BUSY_NS]) * 1e-9;
  s->span_s = (double)(r->end_ns - r->warm_ns) * 1e-9;
  s->served_s = (double)(last_finish - r->warm_ns) * 1e-9;
  s->window_s = (double)(cool_ns - r->warm_ns) * 1e-9;
  double gpu_h = (double)p->n_gpus * p->gpu_price_per_hour;
  double sto_h = (double)p->cache.priced_bytes[SIM_TIER_DRAM] / SIM_GIB * p->dram_price_per_gib_hour +
                 (double)p->cache.priced_bytes[SIM_TIER_SSD] / SIM_GIB * p->ssd_price_per_gib_hour;
  s->usd_per_hour = gpu_h + sto_h;
  double hours = (p->time_base == SIM_TIME_BUSY ? s->gpu_busy_s : s->window_s) / 3600.0;
  s->cost_gpu_usd = gpu_h * hours;
  s->cost_storage_usd = sto_h * hours;
  s->cost_total_usd = s->cost_gpu_usd + s->cost_storage_usd;
  s->storage_share = s->usd_per_hour > 0 ? sto_h / s->usd_per_hour : 0;
  /* stationarity: TTFT of the last third of the measured arrivals against the middle third,
   * and every resource's utilisation over the window */
  if (n > 0 && last_arr > first_arr) {
    int64_t third = (last_arr - first_arr) / 3;
    s->ttft_mid_s = sim__ttft_between(r, first_arr + third, first_arr + 2 * third);
    s->ttft_last_s = sim__ttft_between(r, first_arr + 2 * third, last_arr + 1);
    s->ttft_drift = s->ttft_last_s / s->ttft_mid_s - 1;
  } else {
    s->ttft_mid_s = s->ttft_last_s = s->ttft_drift = NAN;
  }
  double win = s->window_s > 0 ? s->window_s : NAN;
  /* the GPU: the share of the window it ran while the queue head, ready to run, waited for
   * room (continuous batching keeps it busy whenever an answer decodes, so its busy share says
   * little) */
  s->util_gpu = (double)(f[SIM_STAT_GPU_SAT_NS] - w[SIM_STAT_GPU_SAT_NS]) * 1e-9 / win;
  s->gpu_busy_frac = s->gpu_busy_s / win;
  s->util_h2d = (double)(f[SIM_STAT_BYTES_H2D] - w[SIM_STAT_BYTES_H2D]) / (p->h2d_bw * win);
  s->util_d2h = (double)(f[SIM_STAT_BYTES_D2H] - w[SIM_STAT_BYTES_D2H]) / (p->d2h_bw * win);
  double rd = (double)(f[SIM_STAT_BYTES_SSD_READ] - w[SIM_STAT_BYTES_SSD_READ]);
  double wr = (double)(f[SIM_STAT_BYTES_SSD_WRITE] - w[SIM_STAT_BYTES_SSD_WRITE]);
  s->util_ssd_read = rd / (p->ssd_read_bw * win);
  s->util_ssd_write = wr / (p->ssd_write_bw * win);
  s->util_ssd = (rd + wr) / (p->ssd_mixed_bw * win);
  double u[] = {s->util_gpu, s->util_h2d, s->util_d2h, s->util_ssd_read, s->util_ssd_write,
                s->util_ssd};
  s->util_max = 0;
  for (size_t k = 0; k < sizeof u / sizeof u[0]; k++) {
    if (!(u[k] <= s->util_max)) s->util_max = u[k]; /* NaN propagates */
  }
  s->stationary = fabs(s->ttft_drift) <= 0.1 && s->util_max < 1.0;
  return 0;
}

/* ---- summary as (name, value) rows, shared by HDF5 and CSV -------------------------------- */

typedef struct {
  const char *name;
  double v;
} sim__kv;

#define SIM__MAX_ROWS 128

static int sim__summary_rows(const sim_summary *s, const sim_result *r, const sim_params *p,
                             sim__kv *out) {
  int n = 0;
#define ROW(nm, val) out[n++] = (sim__kv){nm, (double)(val)}
  ROW("turns", s->turns);
  ROW("turns_with_history", s->turns_with_history);
  ROW("hit_turns", s->hit_turns);
  ROW("hit_rate", s->hit_rate);
  ROW("hit_rate_hbm", s->hit_rate_hbm);
  ROW("hit_rate_dram", s->hit_rate_dram);
  ROW("hit_rate_ssd", s->hit_rate_ssd);
  ROW("token_hit_rate", s->token_hit_rate);
  ROW("token_hit_rate_hbm", s->token_hit_rate_hbm);
  ROW("token_hit_rate_dram", s->token_hit_rate_dram);
  ROW("token_hit_rate_ssd", s->token_hit_rate_ssd);
  ROW("hist_hit_rate", s->hist_hit_rate);
  ROW("truncated_frac", s->truncated_frac);
  ROW("ttft_mean_s", s->ttft_mean_s);
  ROW("ttft_p50_s", s->ttft_p50_s);
  ROW("ttft_p99_s", s->ttft_p99_s);
  ROW("tbt_mean_s", s->tbt_mean_s);
  ROW("e2e_mean_s", s->e2e_mean_s);
  ROW("queue_mean_s", s->queue_mean_s);
  ROW("ttft_noqueue_mean_s", s->ttft_noqueue_mean_s);
  ROW("ttft_hist_mean_s", s->ttft_hist_mean_s);
  ROW("prefill_latency_hist_mean_s", s->prefill_latency_hist_mean_s);
  ROW("prefill_throughput_tok_s", s->prefill_throughput_tok_s);
  ROW("gpu_busy_s", s->gpu_busy_s);
  ROW("span_s", s->span_s);
  ROW("served_s", s->served_s);
  ROW("window_s", s->window_s);
  ROW("usd_per_hour", s->usd_per_hour);
  ROW("cost_gpu_usd", s->cost_gpu_usd);
  ROW("cost_storage_usd", s->cost_storage_usd);
  ROW("cost_total_usd", s->cost_total_usd);
  ROW("storage_share", s->storage_share);
  ROW("ttft_mid_s", s->ttft_mid_s);
  ROW("ttft_last_s", s->ttft_last_s);
  ROW("ttft_drift", s->ttft_drift);
  ROW("util_gpu", s->util_gpu);
  ROW("gpu_busy_frac", s->gpu_busy_frac);
  ROW("util_h2d", s->util_h2d);
  ROW("util_d2h", s->util_d2h);
  ROW("util_ssd_read", s->util_ssd_read);
  ROW("util_ssd_write", s->util_ssd_write);
  ROW("util_ssd", s->util_ssd);
  ROW("util_max", s->util_max);
  ROW("stationary", s->stationary);
  ROW("warmup_end_ns", r->warm_ns);
  ROW("window_end_ns", r->cool_ns);
  ROW("end_ns", r->end_ns);
  ROW("events_scheduled", r->events_scheduled);
  ROW("events_fired", r->events_fired);
  ROW("events_cancelled", r->events_cancelled);
  ROW("kv_space_bytes", r->kv_space_bytes);
#undef ROW
  /* throughput, GPU memory and [attention] aggregates (sim_attn.h) */
  int64_t meas[SIM_STAT_COUNT];
  for (int i = 0; i < SIM_STAT_COUNT; i++) meas[i] = r->final.v[i] - r->warm.v[i];
  sim_attn_row ar[SIM__MAX_ROWS];
  int na = sim_attn_summary_rows(&p->attn.prm, &r->attn, meas, s->served_s, ar, SIM__MAX_ROWS - n);
  for (int i = 0; i < na; i++) out[n++] = (sim__kv){ar[i].name, ar[i].v};
  return n;
}

/* ---- HDF5 --------------------------------------------------------------------------------- */

static hid_t sim__h5_group(hid_t loc, const char *name) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, 0);
  hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  return g;
}

static hid_t sim__request_type(int packed) {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(sim_request));
#define F(name, type) H5Tinsert(t, #name, HOFFSET(sim_request, name), type)
  F(session_id, H5T_NATIVE_INT64);
  F(turn, H5T_NATIVE_INT32);
  F(warmup, H5T_NATIVE_INT32);
  F(arrival_ns, H5T_NATIVE_INT64);
  F(admit_ns, H5T_NATIVE_INT64);
  F(first_token_ns, H5T_NATIVE_INT64);
  F(finish_ns, H5T_NATIVE_INT64);
  F(input_tokens, H5T_NATIVE_INT64);
  F(new_tokens, H5T_NATIVE_INT64);
  F(output_tokens, H5T_NATIVE_INT64);
  F(hist_tokens, H5T_NATIVE_INT64);
  F(hit_tokens, H5T_NATIVE_INT64);
  F(prefill_tokens, H5T_NATIVE_INT64);
  F(src, H5T_NATIVE_INT32);
  F(truncated, H5T_NATIVE_INT32);
  F(tbt_mean_ns, H5T_NATIVE_INT64);
  F(tbt_max_ns, H5T_NATIVE_INT64);
  F(load_wait_ns, H5T_NATIVE_INT64);
#undef F
  if (packed) H5Tpack(t);
  return t;
}

static int sim__write_h5(const char *path, const sim_result *r, const sim_params *p,
                         const trace *t, const char *config_text, const sim_summary *s,
                         kv_error *err) {
  hid_t f = kv_h5_create(path, err);
  if (f < 0) return (int)f;
  int rc = 0;
  char buf[256];
  rc = rc ? rc : kv_h5_attr_write_str(f, "format", "kvlab-sim-results", path, err);
  rc = rc ? rc : kv_h5_attr_write_i64(f, "version", 1, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "kvlab_version", kv_version(), path, err);
  rc = rc ? rc : kv_h5_attr_write_i64(f, "seed", (int64_t)p->seed, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "config", config_text, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "trace_name", t->name, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "trace_source", t->source, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "model", p->model.name, path, err);
  rc = rc ? rc : kv_h5_attr_write_str(f, "hardware", p->hw.name, path, err);
  rc = rc ? rc : kv_h5_attr_write_i64(f, "n_gpus", p->n_gpus, path, err);
  char cost_label[1536];
  sim_cost_describe(&p->cost, cost_label, sizeof cost_label);
  rc = rc ? rc : kv_h5_attr_write_str(f, "cost_model", cost_label, path, err);
  snprintf(buf, sizeof buf, "%s", "none,miss,hbm,dram,ssd");
  rc = rc ? rc : kv_h5_attr_write_str(f, "src_names", buf, path, err);
  if (!rc) {
    hid_t mt = sim__request_type(0), ft = sim__request_type(1);
    hsize_t d[1] = {(hsize_t)r->n_req};
    rc = kv_h5_write(f, "requests", ft, mt, 1, d, r->req, path, err);
    H5Tclose(mt);
    H5Tclose(ft);
  }
  if (!rc) {
    hid_t g = sim__h5_group(f, "stats");
    if (g < 0) {
      rc = kv_error_set(err, KV_EIO, "%s: cannot create /stats", path);
    } else {
      int64_t meas[SIM_STAT_COUNT];
      for (int i = 0; i < SIM_STAT_COUNT; i++) meas[i] = r->final.v[i] - r->warm.v[i];
      hsize_t d[1] = {SIM_STAT_COUNT};
      char names[SIM_STAT_COUNT][32];
      memset(names, 0, sizeof names);
      for (int i = 0; i < SIM_STAT_COUNT; i++) snprintf(names[i], 32, "%s", sim_stat_names[i]);
      hid_t st = H5Tcopy(H5T_C_S1);
      H5Tset_size(st, 32);
      rc = kv_h5_write(g, "names", st, st, 1, d, names, path, err);
      H5Tclose(st);
      if (!rc) rc = kv_h5_write(g, "warmup", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, r->warm.v, path, err);
      if (!rc) rc = kv_h5_write(g, "final", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, r->final.v, path, err);
      if (!rc) rc = kv_h5_write(g, "measured", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, meas, path, err);
      H5Gclose(g);
    }
  }
  if (!rc) {
    hid_t g = sim__h5_group(f, "summary");
    if (g < 0) {
      rc = kv_error_set(err, KV_EIO, "%s: cannot create /summary", path);
    } else {
      sim__kv rows[SIM__MAX_ROWS];
      int n = sim__summary_rows(s, r, p, rows);
      for (int i = 0; i < n && !rc; i++) rc = kv_h5_attr_write_f64(g, rows[i].name, rows[i].v, path, err);
      hsize_t d[1] = {(hsize_t)s->n_by_turn};
      if (!rc) rc = kv_h5_write(g, "by_turn_with_history", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, s->by_turn_with_history, path, err);
      if (!rc) rc = kv_h5_write(g, "by_turn_hits", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, s->by_turn_hits, path, err);
      double lb[SIM_LINK_ROLE_COUNT];
      int64_t lbusy[SIM_LINK_ROLE_COUNT];
      for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) {
        lb[i] = r->links[i].bytes;
        lbusy[i] = r->links[i].busy_ns;
      }
      hsize_t dl[1] = {SIM_LINK_ROLE_COUNT};
      if (!rc) rc = kv_h5_write(g, "link_bytes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dl, lb, path, err);
      if (!rc) rc = kv_h5_write(g, "link_busy_ns", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dl, lbusy, path, err);
      hsize_t dt[1] = {SIM_TIER_COUNT};
      if (!rc) rc = kv_h5_write(g, "tier_peak_bytes", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dt, r->tier_peak, path, err);
      H5Gclose(g);
    }
  }
  if (H5Fclose(f) < 0 && !rc) rc = kv_error_set(err, KV_EIO, "%s: close failed", path);
  return rc;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static void sim__csv_header(FILE *f, const sim_params *p, const char *config_text) {
  fprintf(f, "# kvsim %s seed=%llu\n", kv_version(), (unsigned long long)p->seed);
  char cost_label[1536];
  sim_cost_describe(&p->cost, cost_label, sizeof cost_label);
  fprintf(f, "# cost_model: %s\n", cost_label);
  const char *c = config_text;
  while (*c) {
    const char *nl = strchr(c, '\n');
    size_t len = nl ? (size_t)(nl - c) : strlen(c);
    if (len > 0) fprintf(f, "# config: %.*s\n", (int)len, c);
    c += len + (nl ? 1 : 0);
  }
}

static int sim__write_csv(const char *dir, const char *name, const sim_result *r,
                          const sim_params *p, const char *config_text, const sim_summary *s,
                          kv_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  kv_atomic_file af;
  int rc = kv_atomic_open(&af, path, err);
  if (rc) return rc;
  FILE *f = af.f;
  sim__csv_header(f, p, config_text);
  if (strcmp(name, "requests.csv") == 0) {
    fprintf(f, "session_id,turn,warmup,arrival_ns,admit_ns,first_token_ns,finish_ns,"
               "input_tokens,new_tokens,output_tokens,hist_tokens,hit_tokens,prefill_tokens,"
               "src,truncated,ttft_ns,tbt_mean_ns,tbt_max_ns,load_wait_ns\n");
    for (int64_t i = 0; i < r->n_req; i++) {
      const sim_request *q = &r->req[i];
      fprintf(f, "%lld,%d,%d,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%d,%lld,%lld,"
                 "%lld,%lld\n",
              (long long)q->session_id, q->turn, q->warmup, (long long)q->arrival_ns,
              (long long)q->admit_ns, (long long)q->first_token_ns, (long long)q->finish_ns,
              (long long)q->input_tokens, (long long)q->new_tokens, (long long)q->output_tokens,
              (long long)q->hist_tokens, (long long)q->hit_tokens, (long long)q->prefill_tokens,
              sim_src_names[q->src], q->truncated, (long long)(q->first_token_ns - q->arrival_ns),
              (long long)q->tbt_mean_ns, (long long)q->tbt_max_ns, (long long)q->load_wait_ns);
    }
  } else if (strcmp(name, "summary.csv") == 0) {
    fprintf(f, "key,value\n");
    sim__kv rows[SIM__MAX_ROWS];
    int n = sim__summary_rows(s, r, p, rows);
    for (int i = 0; i < n; i++) fprintf(f, "%s,%.17g\n", rows[i].name, rows[i].v);
    for (int i = 0; i < SIM_STAT_COUNT; i++) {
      fprintf(f, "stat.%s,%lld\n", sim_stat_names[i],
              (long long)(r->final.v[i] - r->warm.v[i]));
    }
    for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) {
      fprintf(f, "link.%s.bytes,%.17g\nlink.%s.busy_ns,%lld\n", r->links[i].name, r->links[i].bytes,
              r->links[i].name, (long long)r->links[i].busy_ns);
    }
  } else { /* hit_by_turn.csv */
    fprintf(f, "turn_index,turns_with_history,hits,hit_rate\n");
    for (int b = 0; b < s->n_by_turn; b++) {
      if (s->by_turn_with_history[b] == 0) continue;
      fprintf(f, "%s%d,%lld,%lld,%.17g\n", b == s->n_by_turn - 1 ? ">=" : "", b,
              (long long)s->by_turn_with_history[b], (long long)s->by_turn_hits[b],
              (double)s->by_turn_hits[b] / (double)s->by_turn_with_history[b]);
    }
  }
  if (ferror(f)) {
    kv_atomic_abort(&af);
    return kv_error_set(err, KV_EIO, "%s: write failed", path);
  }
  return kv_atomic_commit(&af, err);
}

int sim_result_write(const sim_result *r, const sim_params *p, const trace *t,
                     const kv_config *cfg, const char *outdir, kv_error *err) {
  int rc = kv_mkdirs(outdir, err);
  if (rc) return rc;
  sim_summary s;
  if ((rc = sim_summarize(r, p, &s, err))) return rc;
  char *config_text = kv_config_to_string(cfg);
  if (!config_text) return kv_error_set(err, KV_ENOMEM, "out of memory");
  char path[4200];
  snprintf(path, sizeof path, "%s/results.h5", outdir);
  kv_atomic_file af;
  rc = kv_atomic_reserve(&af, path, err);
  if (!rc) rc = sim__write_h5(af.tmp, r, p, t, config_text, &s, err);
  if (!rc) rc = kv_atomic_commit(&af, err);
  else kv_atomic_abort(&af);
  if (!rc) rc = sim__write_csv(outdir, "summary.csv", r, p, config_text, &s, err);
  if (!rc) rc = sim__write_csv(outdir, "hit_by_turn.csv", r, p, config_text, &s, err);
  if (!rc && p->write_requests_csv) {
    rc = sim__write_csv(outdir, "requests.csv", r, p, config_text, &s, err);
  }
  free(config_text);
  return rc;
}
