/* kvbench_sparse.c — kvbench's top-k, PSA and recorded-sample sections (kvbench.c's opening
 * comment says what they time and how). */
#include "kvbench.h"

/* Metadata bytes a sparse op scans (every block of every pair, the vectors it reads). */
static double meta_bytes(const setup *S, const attn_method *m) {
  int vecs = 0, set = kvc_method_meta(m);
  for (int i = 0; i < 4; i++) vecs += (set >> i) & 1;
  double nb = 0;
  for (int r = 0; r < S->b.n_req; r++) nb += (double)kvc_n_blocks(S->h_len[r], 16);
  return nb * S->s.n_kv_heads * vecs * S->s.head_dim * 2;
}

static int sparse_data(const bench *B) { return B->have_rec ? DATA_TILED : DATA_SYNTH; }
static const char *sparse_data_name(const bench *B) {
  return B->have_rec ? "recorded (tiled)" : "synthetic (no recording given)";
}

/* A "tune" row: op under one execution variant (key = value; the default restored after),
 * first run once under the current settings for the reference output, then under the variant,
 * compared (|a - b| <= 1e-4 + 1e-3 |b|), and timed only when every output agrees; `what` opens
 * the note. A failed or differing variant gets a FAILED row (not timed). Rows at L 32K (the
 * sections that call it). Returns 0 when timed. */
static int tune_row(bench *B, setup *S, int op, const attn_method *m, kvc_tune_key key, int value,
                    const char *name, const char *what, double bytes, double sd) {
  const size_t n_out = (size_t)S->b.n_req * S->s.n_heads * S->s.head_dim;
  const int dflt = kvc_tune_get(B->c, key);
  float *ref_out = malloc(n_out * 4), *var_out = malloc(n_out * 4);
  if (!ref_out || !var_out) DIE("out of memory");
  kv_error ev = {0};
  int rc = run_op(B, S, op, m, NULL, &ev);
  if (!rc) rc = kvc_sync(B->c, &ev);
  if (!rc) rc = kvc_d2h(B->c, ref_out, S->d_out, n_out * 4, &ev);
  if (!rc) rc = kvc_tune_set(B->c, key, value, &ev);
  if (!rc) rc = kvc_memset(B->c, S->d_out, 0xff, n_out * 4, &ev);
  if (!rc) rc = run_op(B, S, op, m, NULL, &ev);
  if (!rc) rc = kvc_sync(B->c, &ev);
  if (!rc) rc = kvc_d2h(B->c, var_out, S->d_out, n_out * 4, &ev);
  size_t nbad = 0;
  for (size_t i = 0; !rc && i < n_out; i++) {
    nbad += !(fabs((double)var_out[i] - ref_out[i]) <= 1e-4 + 1e-3 * fabs((double)ref_out[i]));
  }
  char note[256];
  if (rc || nbad) {
    if (rc) snprintf(note, sizeof note, "FAILED (not timed): %s", ev.msg);
    else snprintf(note, sizeof note, "FAILED (not timed): %zu of %zu outputs differ from the "
                  "default run's", nbad, n_out);
    for (char *c = note; *c; c++) {
      if (*c == '"') *c = '\'';
    }
    fprintf(stderr, "kvbench: %s B%d: %s\n", name, S->b.n_req, note);
    row(B, "tune", "bf16", S->b.n_req, 32768, name, NAN, bytes, NAN, note);
  } else {
    timing t = time_op(B, S, op, m);
    snprintf(note, sizeof note, "%s, whole op, %s; select %.1f us, attend %.1f us", what,
             t.graphed ? "graph" : "plain launches", t.sel_ms * 1e3, t.att_ms * 1e3);
    row(B, "tune", "bf16", S->b.n_req, 32768, name, t.ms * 1e3, bytes, sd, note);
  }
  kv_error e0 = {0};
  kvc_tune_set(B->c, key, dflt, &e0);
  free(ref_out), free(var_out);
  return rc || nbad;
}

/* The block-score variants, as tune rows named `<base> heads` and `<base> v2score`: v8's
 * KVC_TUNE_SCORE_HEADS = 1 (every KV head of a request in one CTA) and the v2-v8 kernel that v9
 * replaced as the default (KVC_TUNE_SCORE_LOOP = 0). */
static void score_rows(bench *B, setup *S, int op, const attn_method *m, const char *base,
                       double bytes, double sd) {
  char name[64];
  snprintf(name, sizeof name, "%s heads", base);
  (void)tune_row(B, S, op, m, KVC_TUNE_SCORE_HEADS, 1, name,
                 "variant: block scores with all KV heads of a request per CTA "
                 "(KVC_TUNE_SCORE_HEADS 1)", bytes, sd);
  snprintf(name, sizeof name, "%s v2score", base);
  (void)tune_row(B, S, op, m, KVC_TUNE_SCORE_LOOP, 0, name,
                 "variant: the v2-v8 block-score kernel, one batch per CTA, metadata chosen at run "
                 "time (KVC_TUNE_SCORE_LOOP 0)", bytes, sd);
}

void bench_topk(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[3] = {1, 8, 32}, budgets[4] = {512, 1024, 2048, 4096};
  const int len = 32768;
  printf("\n== top-k (bf16, L 32K, %s; bytes: selected K+V + min/max metadata of every block) ==\n",
         sparse_data_name(B));
  for (int bi = 0; bi < 3; bi++) {
    int *ls = malloc((size_t)batches[bi] * sizeof *ls);
    for (int i = 0; i < batches[bi]; i++) ls[i] = len;
    setup S;
    if (setup_make(B, &S, s, KVC_DTYPE_BF16, batches[bi], ls, sparse_data(B), 2000 + (uint64_t)bi)) {
      free(ls);
      continue;
    }
    const int pairs = batches[bi] * 8;
    for (int k = 0; k < 4; k++) {
      if (B->quick && (budgets[k] == 1024 || budgets[k] == 4096)) continue;
      attn_method m;
      attn_method_defaults(&m, ATTN_TOPK);
      m.token_budget = budgets[k];
      timing t = time_op(B, &S, OP_TOPK, &m);
      const double kvb = t.blocks_read * 16 * 128 * 2 * 2 * pairs;
      const double sd_k = sdpa_lookup(B, batches[bi], budgets[k], 1);
      char name[64], note[160];
      snprintf(name, sizeof name, "topk-%d", budgets[k]);
      snprintf(note, sizeof note, "whole op, %s; %s; SDPA column: dense SDPA at L=%d",
               t.graphed ? "graph" : "plain launches", sparse_data_name(B), budgets[k]);
      row(B, "topk", "bf16", batches[bi], len, name, t.ms * 1e3, kvb + meta_bytes(&S, &m), sd_k, note);
      snprintf(name, sizeof name, "topk-%d attend", budgets[k]);
      row(B, "topk", "bf16", batches[bi], len, name, t.att_ms * 1e3, kvb, NAN,
          "attention phase (plain launches)");
      snprintf(name, sizeof name, "topk-%d select", budgets[k]);
      row(B, "phase", "bf16", batches[bi], len, name, t.sel_ms * 1e3, meta_bytes(&S, &m), NAN,
          "scores over the metadata + radix select (plain launches); bytes: metadata");
      if (!B->no_mma) { /* tune row: the attention on tensor cores, checked before it is timed */
        snprintf(name, sizeof name, "topk-%d mma", budgets[k]);
        if (tune_row(B, &S, OP_TOPK, &m, KVC_TUNE_TOPK_CORE, 1, name,
                     "variant: attention on tensor cores (KVC_TUNE_TOPK_CORE 1)",
                     kvb + meta_bytes(&S, &m), sd_k)) {
          B->no_mma = 1;
        }
      }
      snprintf(name, sizeof name, "topk-%d", budgets[k]);
      score_rows(B, &S, OP_TOPK, &m, name, kvb + meta_bytes(&S, &m), sd_k);
      if (!isnan(sd_k)) {
        char what[160];
        const double want = 1.3 * sd_k + 15.0;
        snprintf(what, sizeof what, "topk-%d B%d whole op <= 1.3 x SDPA(L=k) + 15 (us)", budgets[k], batches[bi]);
        target(B, t.ms * 1e3 <= want, what, t.ms * 1e3, want);
      }
    }
    setup_free(B, &S);
    free(ls);
  }
}

/* Times PSA pipelined and host-synchronised at eps; returns the bytes the op needs (K + V of
 * the blocks read, plus metadata), the byte count of its rows. */
static double bench_psa_one(bench *B, setup *S, const char *dt, int len, double eps,
                            const char *data, int check) {
  attn_method m;
  attn_method_defaults(&m, ATTN_PSA);
  m.epsilon = eps;
  timing tp = time_op(B, S, OP_PSA_PIPE, &m);
  timing th = time_op(B, S, OP_PSA_HOST, &m);
  const int pairs = S->b.n_req * S->s.n_kv_heads;
  const double blk = 16.0 * S->s.head_dim * 2 * 2;
  const double nb = (double)kvc_n_blocks(len, 16);
  const double read = tp.blocks_read * blk * pairs + meta_bytes(S, &m); /* needed */
  const double fetched = tp.blocks_fetched * blk * pairs;
  const double frac = tp.blocks_read / nb;
  char name[96], note[256];
  snprintf(name, sizeof name, "psa-%.2f pipelined", eps);
  snprintf(note, sizeof note, "%s; blocks/pair read %.1f (%.3f of KV) fetched %.1f; plain launches; "
           "select %.1f us", data, tp.blocks_read, frac, tp.blocks_fetched, tp.sel_ms * 1e3);
  const double sd = sdpa_lookup(B, S->b.n_req, len, 1);
  row(B, "psa", dt, S->b.n_req, len, name, tp.ms * 1e3, read, sd, note);
  snprintf(name, sizeof name, "psa-%.2f pipe attend", eps);
  row(B, "psa", dt, S->b.n_req, len, name, tp.att_ms * 1e3, fetched, NAN,
      "attention rounds + combine over bytes fetched (speculation included)");
  snprintf(name, sizeof name, "psa-%.2f select", eps);
  row(B, "phase", dt, S->b.n_req, len, name, tp.sel_ms * 1e3, meta_bytes(S, &m), NAN,
      "scores + rank (keys, sort, suffix sums, speculation; plain launches); bytes: metadata");
  snprintf(name, sizeof name, "psa-%.2f hostsync", eps);
  snprintf(note, sizeof note, "%s; plain launches; %.2fx the pipelined time", data, th.ms / tp.ms);
  row(B, "psa", dt, S->b.n_req, len, name, th.ms * 1e3, read, sd, note);
  if (!check) return read;
  char what[160];
  if (frac <= 0.25 && !isnan(sd)) {
    snprintf(what, sizeof what, "psa-%.2f B%d L%d (reads %.2f of KV) faster than SDPA dense (us)",
             eps, S->b.n_req, len, frac);
    target(B, tp.ms * 1e3 < sd, what, tp.ms * 1e3, sd);
  }
  if (S->b.n_req >= 8 && len == 32768) {
    const double want = 1.5 * read / (B->read_gbps * 1e9) * 1e6 + 20.0;
    snprintf(what, sizeof what, "psa-%.2f B%d step <= 1.5 x bytes read / read BW + 20 (us)", eps,
             S->b.n_req);
    target(B, tp.ms * 1e3 <= want, what, tp.ms * 1e3, want);
  }
  return read;
}

/* PSA pipelined under other execution options (kvc_psa_opts): items of 1-8 iterations, less or
 * more speculation, one round. "tune" rows; the psa rows above use the defaults. */
static void bench_psa_variants(bench *B, setup *S, double eps) {
  /* window, spec_iters, spec_scale x 100, rounds, grow_pct */
  const int var[7][5] = {{1, 2, 100, 4, 50}, {2, 2, 100, 4, 50}, {8, 2, 100, 4, 50},
                         {4, 2, 60, 4, 50},  {4, 2, 80, 6, 30},  {4, 8, 125, 4, 50},
                         {4, 0, 100, 1, 50}};
  attn_method m;
  attn_method_defaults(&m, ATTN_PSA);
  m.epsilon = eps;
  const int pairs = S->b.n_req * S->s.n_kv_heads;
  const double blk = 16.0 * S->s.head_dim * 2 * 2;
  for (int v = 0; v < (B->quick ? 3 : 7); v++) {
    kvc_psa_opts_defaults(&g_psa_opts);
    g_psa_opts.window = var[v][0];
    g_psa_opts.spec_iters = var[v][1];
    g_psa_opts.spec_scale = (float)var[v][2] / 100.0f;
    g_psa_opts.rounds = var[v][3];
    g_psa_opts.grow_pct = var[v][4];
    g_psa_opts_set = 1;
    timing t = time_op(B, S, OP_PSA_PIPE, &m);
    g_psa_opts_set = 0;
    char name[96], note[256];
    snprintf(name, sizeof name, "psa-%.2f w%d s%d+%.2fx r%d g%d", eps, var[v][0], var[v][1],
             var[v][2] / 100.0, var[v][3], var[v][4]);
    snprintf(note, sizeof note, "variant (window, spec_iters + spec_scale x estimate, rounds, "
             "grow %%); blocks/pair read %.1f fetched %.1f (%.2fx); attend %.1f us, select %.1f us",
             t.blocks_read, t.blocks_fetched, t.blocks_fetched / (t.blocks_read > 0 ? t.blocks_read : 1),
             t.att_ms * 1e3, t.sel_ms * 1e3);
    row(B, "tune", "bf16", S->b.n_req, 32768, name, t.ms * 1e3,
        t.blocks_read * blk * pairs + meta_bytes(S, &m), sdpa_lookup(B, S->b.n_req, 32768, 1), note);
  }
}

void bench_psa(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[3] = {1, 8, 32};
  const double eps[3] = {0.9, 0.95, 0.99};
  printf("\n== PSA (bf16, L 32K, %s; bytes: K+V of the blocks read + metadata) ==\n",
         sparse_data_name(B));
  for (int bi = 0; bi < 3; bi++) {
    if (B->psa_batch && batches[bi] != B->psa_batch) continue; /* --psa-batch (diag_select.sh) */
    int *ls = malloc((size_t)batches[bi] * sizeof *ls);
    for (int i = 0; i < batches[bi]; i++) ls[i] = 32768;
    setup S;
    if (setup_make(B, &S, s, KVC_DTYPE_BF16, batches[bi], ls, sparse_data(B), 3000 + (uint64_t)bi)) {
      free(ls);
      continue;
    }
    double needed[3] = {NAN, NAN, NAN}; /* bytes each eps needs, for the variant rows */
    for (int e = 0; e < 3; e++) {
      if (B->quick && e == 2) continue;
      needed[e] = bench_psa_one(B, &S, "bf16", 32768, eps[e], sparse_data_name(B), 1);
    }
    bench_psa_variants(B, &S, 0.95);
    { /* the block-score variants (v8, v2) at eps 0.95 (the psa row's default options) */
      attn_method m;
      attn_method_defaults(&m, ATTN_PSA);
      m.epsilon = 0.95;
      score_rows(B, &S, OP_PSA_PIPE, &m, "psa-0.95", needed[1],
                 sdpa_lookup(B, batches[bi], 32768, 1));
    }
    for (int e = 0; e < 3; e++) { /* PSA's items on CUDA cores (KVC_TUNE_PSA_CORE 0; the default
                                     * is tensor cores since v11) */
      if (B->quick && e == 2) continue;
      attn_method m;
      attn_method_defaults(&m, ATTN_PSA);
      m.epsilon = eps[e];
      const double bytes = needed[e]; /* the blocks read are the same for either core */
      char name[64];
      snprintf(name, sizeof name, "psa-%.2f fma", eps[e]);
      (void)tune_row(B, &S, OP_PSA_PIPE, &m, KVC_TUNE_PSA_CORE, 0, name,
                     "variant: PSA's items on CUDA cores (KVC_TUNE_PSA_CORE 0, v2-v10)", bytes,
                     sdpa_lookup(B, batches[bi], 32768, 1));
      if (e != 1) continue;
      /* one round, no speculation limit: every block fetched in one launch (the attend
       * kernel's speed per byte on CUDA cores, against the default's `psa-0.95 w4 s0+1.00x r1
       * g50`) */
      kvc_psa_opts_defaults(&g_psa_opts);
      g_psa_opts.spec_iters = 0, g_psa_opts.rounds = 1;
      g_psa_opts_set = 1;
      (void)tune_row(B, &S, OP_PSA_PIPE, &m, KVC_TUNE_PSA_CORE, 0, "psa-0.95 fma w4 s0+1.00x r1",
                     "variant: PSA's items on CUDA cores, one round (every block fetched)", bytes,
                     sdpa_lookup(B, batches[bi], 32768, 1));
      g_psa_opts_set = 0;
    }
    { /* v12: the rank kernel compiled for two CTAs per SM (64 registers; at B32 its 256 CTAs
       * then fit one wave) */
      attn_method m;
      attn_method_defaults(&m, ATTN_PSA);
      m.epsilon = 0.95;
      (void)tune_row(B, &S, OP_PSA_PIPE, &m, KVC_TUNE_PSA_RANK_CTAS, 2, "psa-0.95 rank2",
                     "variant: PSA's rank kernel at two CTAs per SM (KVC_TUNE_PSA_RANK_CTAS 2)",
                     needed[1], sdpa_lookup(B, batches[bi], 32768, 1));
    }
    setup_free(B, &S);
    free(ls);
  }
}

/* PSA at the recording's own shape: every recorded position of layer l is one request. */
void bench_recorded(bench *B) {
  const recording *R = &B->rec;
  const attn_shape s = R->s;
  if ((s.head_dim != 64 && s.head_dim != 128) || s.n_heads / s.n_kv_heads > 8) {
    printf("\n(recorded shape not supported by the kernels: section skipped)\n");
    return;
  }
  printf("\n== PSA on the recording at its own shape (Hq %d / Hkv %d / D %d, bf16) ==\n",
         s.n_heads, s.n_kv_heads, s.head_dim);
  for (int l = 0; l < R->n_layers; l++) {
    if (B->quick && l > 0) break;
    const int n_req = (int)R->n_pos[l];
    int *ls = malloc((size_t)n_req * sizeof *ls);
    for (int i = 0; i < n_req; i++) ls[i] = (int)R->pos[l][i] + 1;
    setup S;
    if (setup_make(B, &S, s, KVC_DTYPE_BF16, n_req, ls, DATA_RANDOM, 4000 + (uint64_t)l) == 0) {
      kv_error e_ = {0};
      for (int i = 0; i < n_req; i++) {
        CK(kvc_kv_upload(B->c, &S.kv, S.h_bt + (size_t)i * S.b.max_blocks, R->Kh[l], R->Vh[l], ls[i], &e_));
      }
      CK(kvc_h2d(B->c, S.d_q, R->Qh[l], (size_t)n_req * s.n_heads * s.head_dim * 4, &e_));
      CK(kvc_meta_build(B->c, &S.kv, &S.b, &e_));
      char data[64];
      snprintf(data, sizeof data, "recorded layer %d, own shape", l);
      const double eps[2] = {0.9, 0.95};
      for (int e = 0; e < 2; e++) bench_psa_one(B, &S, "bf16", ls[n_req - 1], eps[e], data, 0);
      setup_free(B, &S);
    }
    free(ls);
  }
}
