/* kvbench_bw.c — kvbench's read-bandwidth probes (section "bw"; kvbench.c's opening comment). */
#include "kvbench.h"

/* ---- v5: read-bandwidth probes (section "bw", only when named: --sections bw) ---------------- */
static void bw_row(bench *B, const char *method, double gbps, const char *note) {
  printf("bandwidth %-22s %8.0f GB/s  %5.2f x read  %s\n", method, gbps, gbps / B->read_gbps, note);
  if (B->csv) {
    fprintf(B->csv, "bandwidth,-,0,0,%s,0,0,%.1f,%.4f,nan,\"%s\"\n", method, gbps,
            gbps / B->copy_gbps, note);
    fflush(B->csv);
  }
}

/* Every probe is checked by its checksum (XOR of the words read) against the per-thread-load
 * probe of the same bytes; a probe that fails or mismatches gets a FAILED row (gbps nan) and the
 * rest go on (a fault that leaves the context unusable fails the rest: this section runs in its
 * own process in device_run.sh, before the others). */
void bench_bw(bench *B) {
  printf("\n== read-bandwidth probes (v5): per-thread loads vs 1-D bulk copies (cp.async.bulk) ==\n");
  static const struct {
    const char *name;
    kvc_probe_cfg cfg;
    const char *what;
  } P[] = {
      {"read-ldg8", {0, 0, 0, 0, 0, 0}, "2 GiB, per-thread 16-byte ld.global.cg, 8 in flight per thread"},
      {"read-ldg8-pf256", {2, 0, 0, 0, 0, 0},
       "2 GiB, per-thread 16-byte ld.global.cg.L2::256B (prefetch hint), 8 in flight per thread"},
      {"read-bulk-4k-s8", {1, 4096, 4096, 0, 8, 4}, "2 GiB, cp.async.bulk 4 KB per slot, 8 slots, 4 CTAs/SM"},
      {"read-bulk-4k-s4", {1, 4096, 4096, 0, 4, 4}, "2 GiB, cp.async.bulk 4 KB per slot, 4 slots, 4 CTAs/SM"},
      {"read-bulk-4k-s4x2", {1, 4096, 4096, 0, 4, 2}, "2 GiB, cp.async.bulk 4 KB per slot, 4 slots, 2 CTAs/SM"},
      {"read-bulk-16k-s4", {1, 16384, 16384, 0, 4, 2}, "2 GiB, cp.async.bulk 16 KB per slot, 4 slots, 2 CTAs/SM"},
      {"read-bulk-256pad-s8", {1, 4096, 256, 1, 8, 4},
       "2 GiB, 4 KB slots as 16 cp.async.bulk of 256 B at a 272 B pitch (padded rows), 8 slots, 4 CTAs/SM"},
  };
  const size_t bytes = (size_t)2 << 30;
  uint32_t ref = 0;
  int have_ref = 0, dead = 0; /* dead: a device error (the context may be unusable) */
  for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
    kv_error e = {0};
    double g = NAN;
    uint32_t x = 0;
    char note[256];
    int rc = kvc_probe_read(B->c, &P[i].cfg, bytes, B->reps, &g, &x, &e);
    if (rc == KV_EDEVICE) dead = 1;
    if (!rc && i == 0) ref = x, have_ref = 1;
    if (rc) snprintf(note, sizeof note, "FAILED: %s", e.msg);
    else if (i > 0 && (!have_ref || x != ref))
      snprintf(note, sizeof note, "FAILED: checksum %08x vs per-thread loads' %08x", x, ref);
    else snprintf(note, sizeof note, "%s; checksum %08x", P[i].what, x);
    for (char *c = note; *c; c++) {
      if (*c == '"') *c = '\'';
    }
    if (rc || (i > 0 && x != ref)) {
      fprintf(stderr, "kvbench: probe %s: %s\n", P[i].name, note);
      g = NAN;
    }
    bw_row(B, P[i].name, g, note);
    if (dead) break;
  }
  if (dead) { /* keep the rows so far: no further device work (setup would end the process) */
    fprintf(stderr, "kvbench: bw section stopped after a device error\n");
    return;
  }
  /* The page-scattered pool of a dense shape (bf16, Hkv 8, D 128, 16-token pages shuffled as in
   * the dense section): B16 L32K = 2.15 GB of K+V, about the size of the contiguous probe. */
  const attn_shape s = {32, 8, 128};
  const int batch = 16, len = 32768;
  int ls[16];
  for (int i = 0; i < batch; i++) ls[i] = len;
  setup S;
  if (setup_make(B, &S, s, KVC_DTYPE_BF16, batch, ls, DATA_RANDOM, 5000)) return;
  static const struct {
    const char *name;
    int mode, stages;
    const char *what;
  } Q[] = {
      {"pool-ldg8", 0, 0, "per-thread 16-byte loads"},
      {"pool-ldg8-pf256", 2, 0, "per-thread 16-byte loads with the L2::256B prefetch hint"},
      {"pool-bulk-4k-s8", 1, 8, "one cp.async.bulk per page and KV head (4 KB), 8 slots"},
      {"pool-bulk-4k-s4", 1, 4, "one cp.async.bulk per page and KV head (4 KB), 4 slots"},
  };
  /* v6: the pool rows' reference is pool-ldg8's checksum only. v5 kept the contiguous probe's
   * `ref` when pool-ldg8 failed and compared the bulk pool rows with it (the H200's "checksum
   * 43fd3cb1 vs per-thread loads' 59d59d00": 59d59d00 is read-ldg8's checksum of the 2 GiB buffer,
   * a different byte range; both bulk pool rows agreed with each other). */
  ref = 0, have_ref = 0;
  for (size_t i = 0; i < sizeof Q / sizeof Q[0]; i++) {
    kv_error e = {0};
    double g = NAN, nb = 0;
    uint32_t x = 0;
    char note[256];
    int rc = kvc_probe_read_pool(B->c, Q[i].mode, Q[i].stages, &S.kv, &S.b, B->reps, &g, &nb, &x, &e);
    if (rc == KV_EDEVICE) dead = 1;
    if (!rc && i == 0) ref = x, have_ref = 1;
    if (rc) snprintf(note, sizeof note, "FAILED: %s", e.msg);
    else if (i > 0 && !have_ref)
      snprintf(note, sizeof note, "FAILED: checksum %08x, no reference (pool-ldg8 failed)", x);
    else if (i > 0 && x != ref)
      snprintf(note, sizeof note, "FAILED: checksum %08x vs pool-ldg8's %08x", x, ref);
    else snprintf(note, sizeof note, "paged pool bf16 B%d L%d (%.2f GB K+V, pages shuffled), %s; checksum %08x",
                  batch, len, nb / 1e9, Q[i].what, x);
    for (char *c = note; *c; c++) {
      if (*c == '"') *c = '\'';
    }
    if (rc || (i > 0 && (!have_ref || x != ref))) {
      fprintf(stderr, "kvbench: probe %s: %s\n", Q[i].name, note);
      g = NAN;
    }
    bw_row(B, Q[i].name, g, note);
    if (dead) break;
  }
  /* v10: the block metadata as the score kernel reads it (two 256 B rows per block and head, in
   * kmin and kmax), and the same bytes as one 512 B piece per block and head (the pattern of an
   * interleaved [page][Hkv][min|max][D] layout), then the probes that split the metadata read's
 * cost (results/h200/meta-probes/): their own bytes, no checksum reference */
  static const struct {
    const char *name;
    int mode;
    const char *what, *cta; /* what is read; blocks per CTA (kvc_probe.cu's mode table) */
  } M[] = {
      {"pool-meta-ldg8", 3, "kmin + kmax rows of every block and KV head (256 B each, two arrays)",
       "32 blocks per CTA as the v2 score kernel"},
      {"pool-meta512-ldg8", 4, "one 512 B piece per block and KV head (an interleaved min|max "
                               "layout's pattern; K's bytes stand in)",
       "32 blocks per CTA as the v2 score kernel"},
      {"pool-meta-b256-ldg8", 5, "kmin + kmax rows as pool-meta-ldg8, 256 blocks per CTA "
                                 "(8 steps of 64 rows)", "256 blocks per CTA"},
      {"pool-meta-b256-ldg16", 6, "kmin + kmax rows as pool-meta-ldg8, 256 blocks per CTA "
                                  "(4 steps of 128 rows: 16 loads per thread in flight)",
       "256 blocks per CTA"},
      {"pool-meta-heads-ldg8", 7, "kmin + kmax rows of all KV heads of a block as one piece each "
                                  "(2 KB at Hkv 8, D 128: v8's pattern), 8 pieces per step",
       "32 blocks per CTA"},
      {"pool-small-ldg8", 8, "K and V pages (4 KB pieces) of 1/16 of the requests, as pool-ldg8: "
                             "the metadata's byte count", "64 blocks per CTA"},
      {"pool-stride-ldg8", 9, "K and V pages (4 KB pieces) of every 16th block of every request: "
                              "the metadata's byte count, CTA count and bytes per CTA",
       "2 blocks per CTA at a 32-block stride (as pool-meta-ldg8's grid)"},
  };
  for (size_t i = 0; !dead && i < sizeof M / sizeof M[0]; i++) {
    kv_error e = {0};
    double g = NAN, nb = 0;
    uint32_t x = 0;
    char note[320];
    const int rc = kvc_probe_read_pool(B->c, M[i].mode, 0, &S.kv, &S.b, B->reps, &g, &nb, &x, &e);
    if (rc == KV_EDEVICE) dead = 1;
    if (rc) {
      snprintf(note, sizeof note, "FAILED: %s", e.msg);
      fprintf(stderr, "kvbench: probe %s: %s\n", M[i].name, note);
      g = NAN;
    } else {
      snprintf(note, sizeof note, "paged pool bf16 B%d L%d: %s, %.0f MB, pages shuffled, "
               "per-thread loads, %s; checksum %08x", batch, len, M[i].what, nb / 1e6, M[i].cta,
               x);
    }
    bw_row(B, M[i].name, g, note);
  }
  setup_free(B, &S);
}
