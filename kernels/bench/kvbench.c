/* kvbench — decode-attention kernels on the GPU against the memory-bandwidth limit and SDPA.
 *
 * Prints per shape: time, bytes the op needs (each input it must read, once), achieved bandwidth,
 * its ratio to the device-to-device copy bandwidth measured in the same run (read + write), and
 * PyTorch SDPA's time on the same shape (the CSV sdpa_bench.py wrote earlier in the same device
 * run, --sdpa). Sections (--sections, default all):
 *   dense  bf16 (fp16 on a subset), Hq 32 / Hkv 8 / D 128, batch 1-64, context 4K-128K, random
 *          normal K/V (never zeros), the whole op captured in a CUDA graph when capture works
 *          (the note says "graph" or "plain launches");
 *   topk   budgets 512-4096 tokens at 32K: the whole op (graph) and the attention phase alone;
 *   psa    epsilon 0.9-0.99 at 32K, pipelined and host-synchronised, both as plain launches (the
 *          host-synchronised loop cannot be captured; graphing only one mode would favour it);
 *   rec    PSA on the recording at its own shape (B = recorded positions, up to 48);
 *   gemm   cuBLAS GEMM timings for the simulator's cost model (--gemm-csv);
 *   bw     (only when named in --sections) v5 read-bandwidth probes, `bandwidth` rows beside
 *          copy/read: per-thread loads vs 1-D bulk copies (cp.async.bulk) over 2 GiB and over the
 *          page-scattered pool of dense bf16 B16 L32K, each checked by a checksum of the words read.
 * Besides the sections' own rows: "tune" rows time execution variants that do not change results
 * (dense: ring depth 3/4/6 and fused or separate combine on CUDA cores, the tensor-core core with
 * 3 or 4 stages, fused or (3 stages) separate combine, with bulk-copy staging (v5, "mma bulk")
 * or register staging (v6, "dense s2 fused/comb mma regs") (KVC_TUNE_DENSE_CORE; --no-mma leaves
 * them out), each checked against the default variant's output before it is timed, the dense row being
 * the fastest, named in its note; top-k: its attention on tensor cores, KVC_TUNE_TOPK_CORE, as
 * "topk-K mma" rows; v8: the block scores with every KV head of a request per CTA,
 * KVC_TUNE_SCORE_HEADS, as "topk-K heads" and "psa-0.95 heads" rows; the v2-v8 block-score
 * kernel that v9 replaced (KVC_TUNE_SCORE_LOOP 0) as "topk-K v2score" and "psa-0.95 v2score"
 * rows; PSA at eps 0.95: item
 * size, speculation, rounds), "phase" rows the select phase of top-k and PSA (scores, selection/ranking), "layout" rows (v7, bf16, not --quick) the dense row's
 * variant on other page layouts (16-token pages in order, 64- and 256-token pages shuffled; the
 * targets stay on 16-token shuffled pages). The simulator's profile fit reads only the dense,
 * topk and psa sections (and skips "attend" rows).
 * Data of topk and psa: the recorded Q/K/V (--raw DIR, kernels/bench/qkv_to_raw.py's export of
 * traces/data/qkv_sample.h5) tiled to the benchmark shape by kvc_fill_tiled (scores preserved:
 * per-head budgets as fractions of the context follow the recording; tests/gpu/
 * test_bench_tiling.c checks that on the CPU). Without --raw the heavy-tailed synthetic generator
 * is used and every row says so ("synthetic": its budgets are not the recording's).
 * Every timed run starts after a read-based L2 flush (kvc_l2_flush); the median of --reps runs
 * after a warm-up is reported. Targets of issue 12 are checked and printed at the end.
 *
 * Usage: kvbench [--quick] [--reps N] [--no-graphs] [--no-mma] [--sdpa FILE] [--csv FILE]
 *                [--gemm-csv FILE] [--raw DIR] [--sections LIST] [--psa-batch 1|8|32]
 * --psa-batch: the PSA section at one of its batches only (diag_select.sh profiles each alone).
 * The CSV files go through the output helper (common/kv_fs.h): written beside the target and
 * renamed over it at the end, so a run that dies or is killed leaves no partial CSV (the printed
 * rows stay in the log).
 * Sources: this file (the harness, the dense and GEMM sections, main), kvbench_sparse.c (top-k,
 * PSA, recorded), kvbench_bw.c (probes); what they share is declared in kvbench.h.
 */
#include "kvbench.h"

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double sdpa_lookup(const bench *B, int batch, int len, int dtype_bf16) {
  for (int i = 0; i < B->n_sdpa; i++) {
    if (B->sdpa_key[i][0] == batch && B->sdpa_key[i][1] == len && B->sdpa_key[i][2] == dtype_bf16) return B->sdpa_us[i];
  }
  return NAN;
}

static void load_sdpa(bench *B, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "kvbench: no SDPA timings (%s): the SDPA column stays empty\n", path);
    return;
  }
  char line[512];
  while (fgets(line, sizeof line, f) && B->n_sdpa < MAX_SDPA) {
    int b, l, hq, hkv, d;
    char dt[16];
    double us;
    if (sscanf(line, "%d,%d,%d,%d,%d,%15[^,],%lf", &b, &l, &hq, &hkv, &d, dt, &us) == 7 &&
        hq == 32 && hkv == 8 && d == 128) {
      B->sdpa_key[B->n_sdpa][0] = b;
      B->sdpa_key[B->n_sdpa][1] = l;
      B->sdpa_key[B->n_sdpa][2] = strcmp(dt, "bf16") == 0;
      B->sdpa_us[B->n_sdpa++] = us;
    }
  }
  fclose(f);
}

/* ---- recorded data (raw export of qkv_to_raw.py) ---------------------------------------------- */
static int load_recording(bench *B, const char *dir) {
  recording *R = &B->rec;
  char p[4096];
  snprintf(p, sizeof p, "%s/meta.txt", dir);
  FILE *f = fopen(p, "r");
  int nl;
  if (!f || fscanf(f, "%d %d %d %d", &nl, &R->s.n_heads, &R->s.n_kv_heads, &R->s.head_dim) != 4) {
    fprintf(stderr, "kvbench: %s: no recorded data\n", p);
    if (f) fclose(f);
    return -1;
  }
  fclose(f);
  kv_error e_ = {0};
  R->n_layers = 0;
  for (int l = 0; l < nl && R->n_layers < MAX_LAYERS; l++) {
    const int i = R->n_layers;
    snprintf(p, sizeof p, "%s/layer%d.txt", dir, l);
    f = fopen(p, "r");
    if (!f || fscanf(f, "%lld %lld", (long long *)&R->n_tokens[i], (long long *)&R->n_pos[i]) != 2) {
      if (f) fclose(f);
      continue;
    }
    R->pos[i] = malloc((size_t)R->n_pos[i] * sizeof(int64_t));
    int ok = R->pos[i] != NULL;
    for (int64_t j = 0; ok && j < R->n_pos[i]; j++) ok = fscanf(f, "%lld", (long long *)&R->pos[i][j]) == 1;
    fclose(f);
    const size_t nk = (size_t)R->n_tokens[i] * R->s.n_kv_heads * R->s.head_dim;
    const size_t nq = (size_t)R->n_pos[i] * R->s.n_heads * R->s.head_dim;
    R->Kh[i] = malloc(nk * 4), R->Vh[i] = malloc(nk * 4), R->Qh[i] = malloc(nq * 4);
    const char *nm[3] = {"K", "V", "Q"};
    float *arr[3] = {R->Kh[i], R->Vh[i], R->Qh[i]};
    const size_t cnt[3] = {nk, nk, nq};
    for (int a = 0; a < 3 && ok; a++) {
      snprintf(p, sizeof p, "%s/%s%d.f32", dir, nm[a], l);
      FILE *g = fopen(p, "rb");
      ok = g && arr[a] && fread(arr[a], 4, cnt[a], g) == cnt[a];
      if (g) fclose(g);
    }
    if (!ok) {
      fprintf(stderr, "kvbench: %s: layer %d unreadable, skipped\n", dir, l);
      free(R->pos[i]), free(R->Kh[i]), free(R->Vh[i]), free(R->Qh[i]);
      continue;
    }
    CK(kvc_malloc(B->c, &R->Kd[i], nk * 4, &e_));
    CK(kvc_malloc(B->c, &R->Vd[i], nk * 4, &e_));
    CK(kvc_h2d(B->c, R->Kd[i], R->Kh[i], nk * 4, &e_));
    CK(kvc_h2d(B->c, R->Vd[i], R->Vh[i], nk * 4, &e_));
    R->n_layers++;
  }
  if (R->n_layers == 0) return -1;
  printf("recording: %s, %d layers, Hq %d / Hkv %d / D %d, %lld tokens, %lld query positions\n",
         dir, R->n_layers, R->s.n_heads, R->s.n_kv_heads, R->s.head_dim,
         (long long)R->n_tokens[0], (long long)R->n_pos[0]);
  return 0;
}

static void free_recording(bench *B) {
  recording *R = &B->rec;
  for (int i = 0; i < R->n_layers; i++) {
    free(R->pos[i]), free(R->Kh[i]), free(R->Vh[i]), free(R->Qh[i]);
    kvc_free(B->c, R->Kd[i]), kvc_free(B->c, R->Vd[i]);
  }
  memset(R, 0, sizeof *R);
}

void setup_free(bench *B, setup *S) {
  kvc_kv_free(B->c, &S->kv);
  kvc_free(B->c, S->d_len), kvc_free(B->c, S->d_bt), kvc_free(B->c, S->d_q), kvc_free(B->c, S->d_out);
  free(S->h_len), free(S->h_bt);
  memset(S, 0, sizeof *S);
}

/* n_req requests of lens[] tokens with shuffled pages; contents by `data`. For DATA_TILED,
 * request r takes recorded layer r % layers and query position (r / layers) % positions. */
int setup_make(bench *B, setup *S, attn_shape s, kvc_dtype dt, int n_req, const int *lens,
               int data, uint64_t seed) {
  return setup_make_paged(B, S, s, dt, n_req, lens, data, seed, 16, 1);
}

/* The same with bs-token pages, shuffled (shuffle = 1) or in allocation order (0): the dense
 * section's "layout" rows. */
int setup_make_paged(bench *B, setup *S, attn_shape s, kvc_dtype dt, int n_req, const int *lens,
                     int data, uint64_t seed, int bs, int shuffle) {
  kv_error e_ = {0};
  memset(S, 0, sizeof *S);
  S->s = s;
  int mb = 0;
  int64_t pages = 0;
  for (int r = 0; r < n_req; r++) {
    int nb = (int)kvc_n_blocks(lens[r], bs);
    mb = nb > mb ? nb : mb;
    pages += nb;
    S->kv_bytes += (int64_t)lens[r] * s.n_kv_heads * s.head_dim * 2 * 2;
  }
  S->h_len = malloc((size_t)n_req * 4);
  S->h_bt = malloc((size_t)n_req * mb * 4);
  int32_t *perm = malloc((size_t)pages * 4);
  if (!S->h_len || !S->h_bt || !perm) DIE("out of memory");
  kv_rng rg;
  kv_rng_seed(&rg, seed);
  for (int64_t i = 0; i < pages; i++) perm[i] = (int32_t)i;
  for (int64_t i = shuffle ? pages - 1 : 0; i > 0; i--) {
    int64_t j = (int64_t)kv_rng_below(&rg, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  int64_t next = 0;
  for (int r = 0; r < n_req; r++) {
    int nb = (int)kvc_n_blocks(lens[r], bs);
    S->h_len[r] = lens[r];
    for (int i = 0; i < mb; i++) S->h_bt[(size_t)r * mb + i] = i < nb ? perm[next + i] : 0;
    next += nb;
  }
  free(perm);
  if (kvc_kv_alloc(B->c, &S->kv, dt, s.n_kv_heads, s.head_dim, bs, pages, KVC_META_ALL, &e_) ||
      kvc_malloc(B->c, &S->d_len, (size_t)n_req * 4, &e_) ||
      kvc_malloc(B->c, &S->d_bt, (size_t)n_req * mb * 4, &e_) ||
      kvc_malloc(B->c, &S->d_q, (size_t)n_req * s.n_heads * s.head_dim * 4, &e_) ||
      kvc_malloc(B->c, &S->d_out, (size_t)n_req * s.n_heads * s.head_dim * 4, &e_) ||
      kvc_h2d(B->c, S->d_len, S->h_len, (size_t)n_req * 4, &e_) ||
      kvc_h2d(B->c, S->d_bt, S->h_bt, (size_t)n_req * mb * 4, &e_)) {
    fprintf(stderr, "kvbench: setup (batch %d, len %d): %s\n", n_req, lens[0], e_.msg);
    setup_free(B, S);
    return -1;
  }
  S->b.n_req = n_req;
  S->b.max_blocks = mb;
  S->b.block_table = S->d_bt;
  S->b.seq_len = S->d_len;
  S->b.h_seq_len = S->h_len;
  S->b.q = S->d_q;
  const int64_t el = pages * s.n_kv_heads * bs * s.head_dim;
  if (data == DATA_SYNTH) {
    CK(kvc_fill_synth(B->c, &S->s, &S->kv, &S->b, S->d_q, seed, &e_));
  } else if (data == DATA_TILED) {
    const recording *R = &B->rec;
    const int HqR = R->s.n_heads, DR = R->s.head_dim;
    void *rq;
    CK(kvc_malloc(B->c, &rq, (size_t)HqR * DR * 4, &e_));
    for (int r = 0; r < n_req; r++) {
      const int l = r % R->n_layers;
      const int64_t qi = (r / R->n_layers) % R->n_pos[l];
      /* a one-request view of the batch */
      kvc_batch one = S->b;
      one.n_req = 1;
      one.block_table = S->h_bt ? (const int32_t *)S->d_bt + (size_t)r * mb : NULL;
      one.seq_len = (const int32_t *)S->d_len + r;
      one.h_seq_len = S->h_len + r;
      one.q = (const float *)S->d_q + (size_t)r * s.n_heads * s.head_dim;
      const int32_t pos = (int32_t)R->pos[l][qi];
      CK(kvc_h2d(B->c, rq, R->Qh[l] + (size_t)qi * HqR * DR, (size_t)HqR * DR * 4, &e_));
      CK(kvc_fill_tiled(B->c, &S->s, &S->kv, &one, (float *)S->d_q + (size_t)r * s.n_heads * s.head_dim,
                        R->Kd[l], R->Vd[l], rq, &R->s, &pos, &e_));
    }
    kvc_free(B->c, rq);
  } else {
    CK(kvc_fill_normal(B->c, S->kv.k, dt, el, seed, 1.0f, &e_));
    CK(kvc_fill_normal(B->c, S->kv.v, dt, el, seed + 1, 1.0f, &e_));
    CK(kvc_fill_normal(B->c, S->d_q, 0, (int64_t)n_req * s.n_heads * s.head_dim, seed + 2, 1.0f, &e_));
  }
  CK(kvc_meta_build(B->c, &S->kv, &S->b, &e_));
  CK(kvc_sync(B->c, &e_));
  return 0;
}

/* ---- timing ------------------------------------------------------------------------------------ */
/* PSA execution options of the next timed runs (kvbench varies them in the "tune" rows). */
kvc_psa_opts g_psa_opts;
int g_psa_opts_set;

int run_op(bench *B, setup *S, int op, const attn_method *m, kvc_sparse_out *so, kv_error *err) {
  if (op == OP_DENSE) return kvc_dense(B->c, &S->s, &S->kv, &S->b, S->d_out, NULL, err);
  if (op == OP_TOPK) return kvc_topk(B->c, &S->s, m, &S->kv, &S->b, S->d_out, so, err);
  kvc_psa_opts o;
  if (g_psa_opts_set) o = g_psa_opts;
  else kvc_psa_opts_defaults(&o);
  o.mode = op == OP_PSA_HOST ? KVC_PSA_HOSTSYNC : KVC_PSA_PIPELINED;
  return kvc_psa(B->c, &S->s, m, &S->kv, &S->b, &o, S->d_out, so, NULL, err);
}

timing time_op(bench *B, setup *S, int op, const attn_method *m) {
  kv_error e_ = {0};
  timing t = {0};
  const int pairs = S->b.n_req * S->s.n_kv_heads;
  void *d_br = NULL, *d_fe = NULL;
  kvc_sparse_out so = {0};
  kvc_sparse_out *sop = NULL;
  if (op != OP_DENSE) {
    CK(kvc_malloc(B->c, &d_br, (size_t)pairs * 4, &e_));
    CK(kvc_malloc(B->c, &d_fe, (size_t)pairs * 4, &e_));
    so.blocks_read = d_br;
    so.blocks_fetched = d_fe;
    sop = &so;
  }
  CK(run_op(B, S, op, m, sop, &e_)); /* warm-up: scratch, module load, function attributes */
  CK(kvc_sync(B->c, &e_));
  kvc_graph *g = NULL;
  /* PSA is never graphed: the host-synchronised mode cannot be, and both modes are timed alike. */
  if (B->graphs && (op == OP_DENSE || op == OP_TOPK)) {
    int rc = kvc_graph_begin(B->c, &e_);
    if (!rc) {
      kv_error e1 = {0}, e2 = {0};
      const int rc1 = run_op(B, S, op, m, sop, &e1);
      const int rc2 = kvc_graph_end(B->c, &g, &e2); /* always ends the capture */
      rc = rc1 ? rc1 : rc2;
      e_ = rc1 ? e1 : e2;
    }
    if (rc) {
      fprintf(stderr, "kvbench: graph capture failed (%s): timing plain launches\n", e_.msg);
      kvc_graph_free(g);
      g = NULL;
      CK(kvc_sync(B->c, &e_)); /* the context must still be usable */
    }
  }
  t.graphed = g != NULL;
  double *ts = malloc((size_t)B->reps * sizeof *ts), *ss = malloc((size_t)B->reps * sizeof *ss);
  double *as = malloc((size_t)B->reps * sizeof *as);
  if (!ts || !ss || !as) DIE("out of memory");
  for (int i = 0; i < B->reps; i++) {
    CK(kvc_l2_flush(B->c, &e_));
    CK(kvc_time_begin(B->c, &e_));
    if (g) CK(kvc_graph_launch(B->c, g, &e_));
    else CK(run_op(B, S, op, m, sop, &e_));
    CK(kvc_time_end(B->c, &ts[i], &e_));
  }
  int have_phase = 0;
  if (op != OP_DENSE) { /* phases from plain runs (events are not recorded into graphs) */
    for (int i = 0; i < B->reps; i++) {
      CK(kvc_l2_flush(B->c, &e_));
      CK(run_op(B, S, op, m, sop, &e_));
      have_phase = kvc_phase_times(B->c, &ss[i], &as[i], &e_) == 0;
      if (!have_phase) break;
    }
  }
  qsort(ts, (size_t)B->reps, sizeof *ts, cmp_d);
  t.ms = ts[B->reps / 2];
  t.sel_ms = t.att_ms = NAN;
  if (have_phase) {
    qsort(ss, (size_t)B->reps, sizeof *ss, cmp_d);
    qsort(as, (size_t)B->reps, sizeof *as, cmp_d);
    t.sel_ms = ss[B->reps / 2];
    t.att_ms = as[B->reps / 2];
  }
  if (op != OP_DENSE) {
    int32_t *br = malloc((size_t)pairs * 4), *fe = malloc((size_t)pairs * 4);
    if (!br || !fe) DIE("out of memory");
    CK(kvc_d2h(B->c, br, d_br, (size_t)pairs * 4, &e_));
    CK(kvc_d2h(B->c, fe, d_fe, (size_t)pairs * 4, &e_));
    for (int i = 0; i < pairs; i++) t.blocks_read += br[i], t.blocks_fetched += fe[i];
    t.blocks_read /= pairs;
    t.blocks_fetched /= pairs;
    free(br), free(fe);
  }
  kvc_graph_free(g);
  kvc_free(B->c, d_br), kvc_free(B->c, d_fe);
  free(ts), free(ss), free(as);
  return t;
}

void row(bench *B, const char *sec, const char *dt, int batch, int len, const char *method,
         double us, double bytes, double sdpa_us, const char *note) {
  const double gbps = bytes / (us * 1e-6) / 1e9;
  printf("%-6s %-4s %4d %7d %-24s %10.1f %10.2f %8.0f %6.2f %9.1f  %s\n", sec, dt, batch, len,
         method, us, bytes / 1e6, gbps, gbps / B->copy_gbps, sdpa_us, note);
  if (B->csv) {
    fprintf(B->csv, "%s,%s,%d,%d,%s,%.3f,%.0f,%.1f,%.4f,%.3f,\"%s\"\n", sec, dt, batch, len,
            method, us, bytes, gbps, gbps / B->copy_gbps, sdpa_us, note);
    fflush(B->csv);
  }
}

/* Records a target: ok, what, have vs want (units in the text). */
void target(bench *B, int ok, const char *what, double have, double want) {
  B->targets_checked++;
  if (!ok) {
    if (B->targets_missed < 64) {
      snprintf(B->missed[B->targets_missed], sizeof B->missed[0], "%s: %.4g vs %.4g (%.2fx)",
               what, have, want, have / want);
    }
    B->targets_missed++;
  }
  printf("  target %-64s %s (%.4g vs %.4g)\n", what, ok ? "met" : "MISSED", have, want);
}

/* ---- sections ---------------------------------------------------------------------------------- */
/* v7 "layout" rows (information; the dense targets stay on 16-token shuffled pages): the
 * fastest variant (var: stages, fused, core) again on 16-token pages in allocation order and on
 * shuffled 64- and 256-token pages, so that the share of the gap to SDPA (which reads one
 * contiguous tensor) owed to page scatter is measured, not guessed. us16: the dense row. */
static void dense_layouts(bench *B, attn_shape s, int batch, const int *ls, const int var[3],
                          double sd, double us16) {
  static const int lay[3][2] = {{16, 0}, {64, 1}, {256, 1}};
  for (int i = 0; i < 3; i++) {
    setup S;
    if (setup_make_paged(B, &S, s, KVC_DTYPE_BF16, batch, ls, DATA_RANDOM, 7000 + (uint64_t)i,
                         lay[i][0], lay[i][1]))
      continue;
    kv_error e_ = {0};
    CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_STAGES, var[0], &e_));
    CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_FUSED_COMBINE, var[1], &e_));
    if (!kvc_tune_set(B->c, KVC_TUNE_DENSE_CORE, var[2], &e_)) {
      timing t = time_op(B, &S, OP_DENSE, NULL);
      char nm[64], nt[200];
      snprintf(nm, sizeof nm, "dense p%d%s", lay[i][0], lay[i][1] ? "" : " in-order");
      snprintf(nt, sizeof nt, "layout: %d-token pages %s, the dense row's variant; %.3f x the "
               "16-token shuffled time; SDPA us / this %.3f; %s", lay[i][0],
               lay[i][1] ? "shuffled" : "in allocation order", t.ms * 1e3 / us16, sd / (t.ms * 1e3),
               t.graphed ? "graph" : "plain launches");
      row(B, "layout", "bf16", batch, ls[0], nm, t.ms * 1e3, (double)S.kv_bytes, sd, nt);
    }
    CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_STAGES, 4, &e_));
    CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_FUSED_COMBINE, 1, &e_));
    CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_CORE, 0, &e_));
    setup_free(B, &S);
  }
}

void bench_dense(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[5] = {1, 8, 16, 32, 64}, lens[4] = {4096, 16384, 32768, 131072};
  printf("\n== dense decode (Hq 32 / Hkv 8 / D 128, random normal K/V; bytes = K+V read) ==\n");
  for (int bi = 0; bi < 5; bi++) {
    for (int li = 0; li < 4; li++) {
      const int batch = batches[bi], len = lens[li];
      if ((double)batch * len * 8 * 128 * 4 > 36e9) continue; /* memory */
      if (B->quick && (len == 16384 || batch == 16 || (len == 131072 && batch != 64))) continue;
      for (int dt = 2; dt >= 1; dt--) {
        if (dt == 1 && !(len == 32768 && (batch == 1 || batch == 8))) continue;
        int *ls = malloc((size_t)batch * sizeof *ls);
        for (int i = 0; i < batch; i++) ls[i] = len;
        setup S;
        if (setup_make(B, &S, s, (kvc_dtype)dt, batch, ls, DATA_RANDOM, 1000 + (uint64_t)bi * 10 + li)) {
          free(ls);
          continue;
        }
        /* Execution variants (kvc_tune_set), each timed; the "dense" row is the fastest, the
         * others are "tune" rows (the simulator's profile fit ignores that section). The first
         * (the library's default) is the reference: a later variant whose warm-up run fails or
         * whose output differs from it (|a - b| > 1e-4 + 1e-3 |b|, or NaN) gets a "FAILED" tune
         * row, is not timed and never becomes the dense row; a failing tensor-core variant also
         * turns the tensor-core variants off for the rest of the run (a fault that leaves the
         * context unusable ends the process: device_run.sh then re-runs the section with
         * --no-mma). */
        static const int variants[11][3] = {/* stages, fused combine, core (1 = tensor cores,
                                              2 = tensor cores + bulk-copy staging, v5, 3 = tensor
                                              cores + register staging, 2 slots, v6: its stage
                                              count is not used) */
                                           {4, 1, 0}, {3, 1, 0}, {6, 1, 0}, {4, 0, 0},
                                           {3, 1, 1}, {4, 1, 1}, {3, 0, 1}, {3, 1, 2},
                                           {4, 1, 3}, {4, 0, 3}, {4, 0, 4}};
        int vlist[11], nvar = 0;
        if (dt == 2 && !B->quick) {
          for (int v = 0; v < 11; v++) vlist[nvar++] = v;
        } else {
          vlist[nvar++] = 0;
          vlist[nvar++] = 4; /* fp16 and --quick: the default, the tensor-core s3, its bulk and */
          vlist[nvar++] = 7; /* its register-staged (v6) variant */
          vlist[nvar++] = 8;
          vlist[nvar++] = 10;
        }
        const size_t n_out = (size_t)batch * s.n_heads * s.head_dim;
        float *ref_out = malloc(n_out * sizeof *ref_out), *var_out = malloc(n_out * sizeof *var_out);
        if (!ref_out || !var_out) DIE("out of memory");
        timing best = {0};
        int bv = 0, ntimed = 0;
        for (int vi = 0; vi < nvar; vi++) {
          const int v = vlist[vi];
          kv_error e_ = {0};
          const char *vdt = dt == 2 ? "bf16" : "fp16";
          char nm[64], nt[160];
          if (variants[v][2] >= 3) /* v6 (v7: + L2::256B hint): always 2 slots */
            snprintf(nm, sizeof nm, "dense s2 %s mma regs%s", variants[v][1] ? "fused" : "comb",
                     variants[v][2] == 4 ? " pf" : "");
          else
            snprintf(nm, sizeof nm, "dense s%d %s%s", variants[v][0], variants[v][1] ? "fused" : "comb",
                     variants[v][2] == 2 ? " mma bulk" : variants[v][2] ? " mma" : "");
          if (variants[v][2] && B->no_mma) continue;
          CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_STAGES, variants[v][0], &e_));
          CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_FUSED_COMBINE, variants[v][1], &e_));
          if (kvc_tune_set(B->c, KVC_TUNE_DENSE_CORE, variants[v][2], &e_)) { /* 2 below sm_90 */
            fprintf(stderr, "kvbench: variant %s: %s\n", nm, e_.msg);
            continue;
          }
          if (vi > 0) { /* checked against the default's output before it is timed */
            kv_error ev = {0};
            int rc = kvc_memset(B->c, S.d_out, 0xff, n_out * 4, &ev);
            if (!rc) rc = run_op(B, &S, OP_DENSE, NULL, NULL, &ev);
            if (!rc) rc = kvc_sync(B->c, &ev);
            if (!rc) rc = kvc_d2h(B->c, var_out, S.d_out, n_out * 4, &ev);
            size_t nbad = 0, first = 0;
            for (size_t i = 0; !rc && i < n_out; i++) {
              if (!(fabs((double)var_out[i] - ref_out[i]) <= 1e-4 + 1e-3 * fabs((double)ref_out[i]))) {
                if (nbad++ == 0) first = i;
              }
            }
            if (rc || nbad) {
              if (rc) snprintf(nt, sizeof nt, "FAILED (not timed): %s", ev.msg);
              else snprintf(nt, sizeof nt, "FAILED (not timed): %zu of %zu outputs differ from the "
                            "default variant's (first [%zu]: %g vs %g)", nbad, n_out, first,
                            (double)var_out[first], (double)ref_out[first]);
              for (char *c = nt; *c; c++) {
                if (*c == '"') *c = '\''; /* the note is a quoted CSV field */
              }
              fprintf(stderr, "kvbench: variant %s B%d L%d %s: %s\n", nm, batch, len, vdt, nt);
              row(B, "tune", vdt, batch, len, nm, NAN, (double)S.kv_bytes, NAN, nt);
              if (variants[v][2]) B->no_mma = 1;
              continue;
            }
          }
          timing tv = time_op(B, &S, OP_DENSE, NULL);
          if (vi == 0) CK(kvc_d2h(B->c, ref_out, S.d_out, n_out * 4, &e_));
          snprintf(nt, sizeof nt, "variant: %s cores, ring %d stages, %s combine; %s",
                   variants[v][2] == 4   ? "tensor (register staging, L2::256B hint)"
                   : variants[v][2] == 3 ? "tensor (register staging)"
                   : variants[v][2] == 2 ? "tensor (bulk-copy staging)"
                   : variants[v][2]      ? "tensor"
                                         : "CUDA",
                   variants[v][2] >= 3 ? 2 : variants[v][0],
                   variants[v][1] ? "fused" : "separate", tv.graphed ? "graph" : "plain launches");
          row(B, "tune", vdt, batch, len, nm, tv.ms * 1e3, (double)S.kv_bytes,
              sdpa_lookup(B, batch, len, dt == 2), nt);
          if (ntimed++ == 0 || tv.ms < best.ms) best = tv, bv = v;
        }
        free(ref_out), free(var_out);
        {
          kv_error e_ = {0};
          CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_STAGES, 4, &e_));
          CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_FUSED_COMBINE, 1, &e_));
          CK(kvc_tune_set(B->c, KVC_TUNE_DENSE_CORE, 0, &e_));
        }
        timing t = best;
        const double us = t.ms * 1e3, sd = sdpa_lookup(B, batch, len, dt == 2);
        char dnote[160];
        snprintf(dnote, sizeof dnote, "%s; fastest of %d variants: %s cores, ring %d stages, %s combine",
                 t.graphed ? "graph" : "plain launches", ntimed,
                 variants[bv][2] == 4   ? "tensor (regs, pf)"
                 : variants[bv][2] == 3 ? "tensor (regs)"
                 : variants[bv][2] == 2 ? "tensor (bulk)"
                 : variants[bv][2]      ? "tensor"
                                        : "CUDA",
                 variants[bv][2] >= 3 ? 2 : variants[bv][0], variants[bv][1] ? "fused" : "separate");
        row(B, "dense", dt == 2 ? "bf16" : "fp16", batch, len, "dense", us, (double)S.kv_bytes, sd,
            dnote);
        if (!isnan(sd)) {
          char what[160];
          const double need = batch >= 8 && len >= 16384 ? 1.0 : 0.9;
          snprintf(what, sizeof what, "dense B%d L%d %s speed >= %.1f x SDPA (SDPA us / ours)", batch,
                   len, dt == 2 ? "bf16" : "fp16", need);
          target(B, sd / us >= need, what, sd / us, need);
        }
        setup_free(B, &S);
        if (dt == 2 && !B->quick) dense_layouts(B, s, batch, ls, variants[bv], sd, us);
        free(ls);
      }
    }
  }
}

void bench_gemm(bench *B, const char *path) {
  kv_atomic_file out;
  FILE *f = NULL;
  if (path) {
    kv_error e_ = {0};
    CK(kv_atomic_open(&out, path, &e_));
    f = out.f;
  }
  if (f) fprintf(f, "m,n,k,dtype,ms,tflops\n");
  const int ms[6] = {1, 16, 64, 256, 1024, 4096};
  const int nk[4][2] = {{4096, 4096}, {6144, 4096}, {28672, 4096}, {4096, 14336}};
  printf("\n== cuBLAS GEMM (bf16 in/out, fp32 accumulate) for the cost model ==\n");
  printf("%6s %6s %6s %10s %8s\n", "m", "n", "k", "ms", "TFLOP/s");
  for (int i = 0; i < 6; i++) {
    for (int j = 0; j < 4; j++) {
      kv_error e_ = {0};
      double t;
      CK(kvc_gemm_time(B->c, KVC_DTYPE_BF16, ms[i], nk[j][0], nk[j][1], B->reps, &t, &e_));
      const double tf = 2.0 * ms[i] * nk[j][0] * nk[j][1] / (t * 1e-3) / 1e12;
      printf("%6d %6d %6d %10.4f %8.1f\n", ms[i], nk[j][0], nk[j][1], t, tf);
      if (f) fprintf(f, "%d,%d,%d,bf16,%.6f,%.3f\n", ms[i], nk[j][0], nk[j][1], t, tf);
    }
  }
  if (f) {
    kv_error e_ = {0};
    CK(kv_atomic_commit(&out, &e_));
  }
}

static int has_section(const char *list, const char *name) {
  if (!list) return 1;
  const size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  bench B;
  memset(&B, 0, sizeof B);
  B.reps = 20;
  B.graphs = 1;
  const char *sdpa = NULL, *csv = NULL, *gemm = NULL, *raw = NULL, *sections = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) B.quick = 1;
    else if (!strcmp(argv[i], "--no-graphs")) B.graphs = 0;
    else if (!strcmp(argv[i], "--no-mma")) B.no_mma = 1;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) B.reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sdpa") && i + 1 < argc) sdpa = argv[++i];
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--gemm-csv") && i + 1 < argc) gemm = argv[++i];
    else if (!strcmp(argv[i], "--raw") && i + 1 < argc) raw = argv[++i];
    else if (!strcmp(argv[i], "--sections") && i + 1 < argc) sections = argv[++i];
    else if (!strcmp(argv[i], "--psa-batch") && i + 1 < argc) B.psa_batch = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: kvbench [--quick] [--reps N] [--no-graphs] [--no-mma] [--sdpa FILE] [--csv FILE] "
                      "[--gemm-csv FILE] [--raw DIR] [--sections dense,topk,psa,rec,gemm,bw] "
                      "[--psa-batch 1|8|32]\n");
      return 2;
    }
  }
  if (B.psa_batch != 0 && B.psa_batch != 1 && B.psa_batch != 8 && B.psa_batch != 32) {
    fprintf(stderr, "kvbench: --psa-batch %d: the PSA section runs batch 1, 8 or 32\n", B.psa_batch);
    return 2;
  }
  if (B.reps < 3) B.reps = 3;
  if (kvc_device_count() < 1) {
    fprintf(stderr, "kvbench: no CUDA device present\n");
    return 77;
  }
  kv_error e_ = {0};
  CK(kvc_ctx_init(&B.c, 0, &e_));
  kvc_device_info di;
  kvc_ctx_info(B.c, &di);
  printf("device: %s, sm_%d%d, %d SMs, L2 %lld MB, %.1f GB; driver %d runtime %d\n", di.name,
         di.cc_major, di.cc_minor, di.n_sm, (long long)di.l2_bytes >> 20, di.mem_bytes / 1e9,
         di.driver_version, di.runtime_version);
  CK(kvc_copy_bandwidth(B.c, (size_t)1 << 30, B.reps, &B.copy_gbps, &e_));
  CK(kvc_read_bandwidth(B.c, (size_t)2 << 30, B.reps, &B.read_gbps, &e_));
  printf("device-to-device copy (1 GiB, read + written): %.0f GB/s; read-only stream (2 GiB): %.0f GB/s\n",
         B.copy_gbps, B.read_gbps);
  if (sdpa) load_sdpa(&B, sdpa);
  if (raw) B.have_rec = load_recording(&B, raw) == 0;
  if (csv) {
    CK(kv_atomic_open(&B.csv_out, csv, &e_)); /* the file appears whole at the end, or not */
    B.csv = B.csv_out.f;
    fprintf(B.csv, "section,dtype,batch,len,method,us,bytes,gbps,ratio_copy,sdpa_us,note\n");
    fprintf(B.csv, "bandwidth,-,0,0,copy,0,0,%.1f,1.0000,nan,\"device-to-device copy, read + written\"\n",
            B.copy_gbps);
    fprintf(B.csv, "bandwidth,-,0,0,read,0,0,%.1f,%.4f,nan,\"read-only stream\"\n", B.read_gbps,
            B.read_gbps / B.copy_gbps);
  }
  printf("%-6s %-4s %4s %7s %-24s %10s %10s %8s %6s %9s  %s\n", "sect", "type", "B", "L",
         "method", "us", "MB read", "GB/s", "x copy", "SDPA us", "note");
  if (sections && has_section(sections, "bw")) bench_bw(&B); /* only when named */
  if (has_section(sections, "dense")) bench_dense(&B);
  if (has_section(sections, "topk")) bench_topk(&B);
  if (has_section(sections, "psa")) bench_psa(&B);
  if (B.have_rec && has_section(sections, "rec")) bench_recorded(&B);
  if (has_section(sections, "gemm")) bench_gemm(&B, gemm);
  printf("\ntargets: %d checked, %d missed (copy %.0f GB/s, read %.0f GB/s)\n", B.targets_checked,
         B.targets_missed, B.copy_gbps, B.read_gbps);
  for (int i = 0; i < B.targets_missed && i < 64; i++) printf("  MISSED %s\n", B.missed[i]);
  if (B.csv) CK(kv_atomic_commit(&B.csv_out, &e_));
  free_recording(&B);
  kvc_ctx_free(B.c);
  return 0;
}
