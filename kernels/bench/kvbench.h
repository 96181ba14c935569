/* kvbench.h — what the sections of the kvbench tool share (kvbench.c: the harness, dense and GEMM
 * sections, main; kvbench_sparse.c: top-k, PSA and the recording; kvbench_bw.c: the read-bandwidth
 * probes). Private to the tool: nothing outside kernels/bench includes it. The tool's contract
 * (rows, sections, targets) is in kvbench.c's opening comment. */
#ifndef KVBENCH_H
#define KVBENCH_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_cuda.h"
#include "kv_fs.h"
#include "kv_rng.h"
#include "kvc_math.h"

#define MAX_SDPA 1024
#define MAX_LAYERS 16

typedef struct {
  int n_layers;
  attn_shape s;
  int64_t n_tokens[MAX_LAYERS], n_pos[MAX_LAYERS];
  int64_t *pos[MAX_LAYERS];
  float *Kh[MAX_LAYERS], *Vh[MAX_LAYERS], *Qh[MAX_LAYERS]; /* host */
  void *Kd[MAX_LAYERS], *Vd[MAX_LAYERS];                   /* device copies of K, V */
} recording;

typedef struct {
  kvc_ctx *c;
  int reps, quick, graphs;
  double copy_gbps, read_gbps;
  FILE *csv;              /* csv_out.f with --csv: written through the output helper */
  kv_atomic_file csv_out;
  int n_sdpa;
  int sdpa_key[MAX_SDPA][3];
  double sdpa_us[MAX_SDPA];
  int targets_checked, targets_missed;
  char missed[64][200];
  recording rec;
  int have_rec;
  int no_mma;             /* --no-mma, or a tensor-core variant failed: time only CUDA-core ones */
  int psa_batch;          /* --psa-batch N: the PSA section at that batch only (0: 1, 8, 32) */
} bench;

#define DIE(...)                      \
  do {                                \
    fprintf(stderr, "kvbench: ");     \
    fprintf(stderr, __VA_ARGS__);     \
    fprintf(stderr, "\n");            \
    exit(1);                          \
  } while (0)
/* Dies with the message of the kv_error named e_ (declared by the calling function). */
#define CK(call)                                         \
  do {                                                   \
    if ((call) != 0) DIE("%s: %s", #call, e_.msg);       \
  } while (0)

/* ---- a batch of requests on the device --------------------------------------------------------- */
typedef struct {
  attn_shape s;
  kvc_kv kv;
  kvc_batch b;
  int32_t *h_len, *h_bt;
  void *d_len, *d_bt, *d_q, *d_out;
  int64_t kv_bytes;
} setup;

enum { DATA_RANDOM, DATA_SYNTH, DATA_TILED };

/* ---- timing ------------------------------------------------------------------------------------ */
enum { OP_DENSE, OP_TOPK, OP_PSA_PIPE, OP_PSA_HOST };

typedef struct {
  double ms, sel_ms, att_ms;          /* medians */
  double blocks_read, blocks_fetched; /* mean per pair */
  int graphed;
} timing;

/* PSA execution options of the next timed runs (kvbench varies them in the "tune" rows;
 * kvbench.c). */
extern kvc_psa_opts g_psa_opts;
extern int g_psa_opts_set;

/* kvbench.c */
double sdpa_lookup(const bench *B, int batch, int len, int dtype_bf16);
void setup_free(bench *B, setup *S);
/* n_req requests of lens[] tokens, 16-token pages shuffled (setup_make) or bs-token pages,
 * shuffled or in allocation order (setup_make_paged); contents by `data` (DATA_*). */
int setup_make(bench *B, setup *S, attn_shape s, kvc_dtype dt, int n_req, const int *lens, int data,
               uint64_t seed);
int setup_make_paged(bench *B, setup *S, attn_shape s, kvc_dtype dt, int n_req, const int *lens,
                     int data, uint64_t seed, int bs, int shuffle);
int run_op(bench *B, setup *S, int op, const attn_method *m, kvc_sparse_out *so, kv_error *err);
timing time_op(bench *B, setup *S, int op, const attn_method *m);
/* One result row: printed, and appended to the CSV with --csv. */
void row(bench *B, const char *sec, const char *dt, int batch, int len, const char *method,
         double us, double bytes, double sdpa_us, const char *note);
/* Records a target: ok, what, have vs want (units in the text). */
void target(bench *B, int ok, const char *what, double have, double want);
void bench_dense(bench *B);
void bench_gemm(bench *B, const char *path);
/* kvbench_sparse.c */
void bench_topk(bench *B);
void bench_psa(bench *B);
void bench_recorded(bench *B);
/* kvbench_bw.c */
void bench_bw(bench *B);

#endif /* KVBENCH_H */
