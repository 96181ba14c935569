/* attn_cuda.h — decode attention on NVIDIA GPUs (CUDA), C API.
 *
 * The same semantics as the CPU reference (kernels/attn.h), which is their oracle: dense decode,
 * fixed top-k (Quest-style) and Progressive Sparse Attention (PSA), GQA-aware (one KV read serves
 * the whole query group; sparse methods choose one block set per KV head), over a paged KV cache
 * in fp16 or bf16 with fp32 accumulation. Status of verification: see docs/kernels.md.
 *
 * Layout (one layer; "page" = physical block of block_size tokens):
 *   K, V    [n_pages, n_kv_heads, block_size, head_dim]  dtype   (HND: a page of one KV head is
 *                                                                  block_size*head_dim contiguous)
 *   kmin, kmax, kmean, kvar  [n_pages, n_kv_heads, head_dim]  dtype   block metadata (attn.h's
 *                            min/max/mean/population variance of the page's keys, per channel)
 *   block_table [n_req, max_blocks] int32: physical page of each logical block of a request
 *   seq_len     [n_req] int32: tokens the request's query attends to (its own key included)
 *   q           [n_req, n_heads, head_dim] fp32; out [n_req, n_heads, head_dim] fp32
 * Query head h uses KV head h / (n_heads / n_kv_heads); scores are q.k / sqrt(head_dim).
 *
 * Supported: head_dim 64 or 128; group size n_heads / n_kv_heads <= 8; block_size a multiple of
 * 16, at most 256; fp16 and bf16. Other shapes return KV_ENOTSUP. The oracle method (needs the
 * dense probabilities) is CPU-only.
 *
 * Conventions: every function returns 0 or a negative kv_status and fills *err; device failures
 * are KV_EDEVICE with the failing CUDA/cuBLAS call, file and line in the message. Pointers named
 * "device" are device memory owned by the caller unless said otherwise. Calls are asynchronous on
 * the context's stream unless they copy results to the host.
 */
#ifndef ATTN_CUDA_H
#define ATTN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "kv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvc_dtype {
  KVC_DTYPE_F16 = 1,   /* the same values as qkv_dtype */
  KVC_DTYPE_BF16 = 2
} kvc_dtype;

/* Bytes per element (2) and name ("fp16", "bf16"). */
int kvc_dtype_size(kvc_dtype t);
const char *kvc_dtype_name(kvc_dtype t);

/* ---- context -------------------------------------------------------------------------------- */

typedef struct kvc_ctx kvc_ctx;

typedef struct kvc_device_info {
  char name[256];
  int cc_major, cc_minor;
  int n_sm;
  int64_t l2_bytes;
  int64_t mem_bytes;
  int driver_version, runtime_version;
} kvc_device_info;

/* Number of CUDA devices (0 when there is none or the driver is missing; never fails). */
int kvc_device_count(void);

/* Creates a context on `device`: a stream, a cuBLAS handle, events and a scratch arena.
 * *out is owned by the caller (kvc_ctx_free). */
int kvc_ctx_init(kvc_ctx **out, int device, kv_error *err);
void kvc_ctx_free(kvc_ctx *c);
void kvc_ctx_info(const kvc_ctx *c, kvc_device_info *info);

/* Device memory and copies (synchronous copies: the call returns after the data arrived). */
int kvc_malloc(kvc_ctx *c, void **p, size_t bytes, kv_error *err);
void kvc_free(kvc_ctx *c, void *p);
int kvc_h2d(kvc_ctx *c, void *dst, const void *src, size_t bytes, kv_error *err);
int kvc_d2h(kvc_ctx *c, void *dst, const void *src, size_t bytes, kv_error *err);
/* Fills bytes with `byte` (asynchronous). Tests poison outputs with 0xFF (NaN in fp32). */
int kvc_memset(kvc_ctx *c, void *p, int byte, size_t bytes, kv_error *err);
/* Waits for all work on the context's stream and reports a pending kernel error. */
int kvc_sync(kvc_ctx *c, kv_error *err);

/* ---- timing --------------------------------------------------------------------------------- */

/* Events around stream work: kvc_time_begin, work, kvc_time_end (waits, returns milliseconds). */
int kvc_time_begin(kvc_ctx *c, kv_error *err);
int kvc_time_end(kvc_ctx *c, double *ms, kv_error *err);
/* Reads (never writes) a buffer of max(4 x L2, 256 MB), so that the next timed run starts with
 * none of its data in L2 and no dirty lines to write back. Asynchronous. */
int kvc_l2_flush(kvc_ctx *c, kv_error *err);
/* Device-to-device copy of `bytes` bytes, median of `reps` timed copies after a warm-up;
 * *gbps = 2 * bytes / time (bytes read + written), in GB/s (1e9). */
int kvc_copy_bandwidth(kvc_ctx *c, size_t bytes, int reps, double *gbps, kv_error *err);
/* Read-only streaming bandwidth over `bytes` (16-byte loads, nothing written), median of reps:
 * *gbps = bytes / time, in GB/s (1e9). The ceiling of a decode kernel, which only reads K/V. */
int kvc_read_bandwidth(kvc_ctx *c, size_t bytes, int reps, double *gbps, kv_error *err);

/* Phase times of the last top-k or PSA call (select = scoring, ordering and loop preparation;
 * attend = the attention over the chosen blocks, including PSA's loop), from events the ops record
 * when not capturing a graph. Waits for them. KV_ESTATE when the last op recorded none. */
int kvc_phase_times(kvc_ctx *c, double *select_ms, double *attend_ms, kv_error *err);

/* CUDA graphs: capture the context stream's work between begin and end, then replay it. Ops must
 * have run once with the same shapes before capture (their scratch must not grow during it).
 * Dense and top-k upload nothing and are capturable at any batch; PSA pipelined is capturable when
 * every request has at most 4096 blocks (longer contexts sort with CUB, whose segmented sort may
 * read back to the host), PSA host-synchronised never is. kvc_graph_end ends the capture even when
 * an op failed during it, and leaves the context usable for plain launches. */
typedef struct kvc_graph kvc_graph;
int kvc_graph_begin(kvc_ctx *c, kv_error *err);
int kvc_graph_end(kvc_ctx *c, kvc_graph **out, kv_error *err);
int kvc_graph_launch(kvc_ctx *c, kvc_graph *g, kv_error *err);
void kvc_graph_free(kvc_graph *g);

/* Execution variants that do not change results (beyond fp32 rounding), for measuring which is
 * faster on a device (kvbench times them). Values are checked; KV_EINVAL otherwise. */
typedef enum kvc_tune_key {
  KVC_TUNE_DENSE_STAGES = 0,   /* cp.async ring depth of the split-K attention: 3, 4 (default), 6 */
  KVC_TUNE_DENSE_FUSED_COMBINE,/* 1 (default): the last CTA of a pair merges the splits (no
                                  combine launch); 0: a separate combine kernel */
  KVC_TUNE_DENSE_CORE,         /* attend core of kvc_dense: 0 (default) CUDA cores (fp32 FMA);
                                  1 tensor cores (mma.sync m16n8k16, fp32 accumulation, Q and P
                                  split into three 16-bit parts: fp32-level accuracy) for groups
                                  of at most 4 heads (larger groups run the CUDA-core path);
                                  ring of 3 stages under KVC_TUNE_DENSE_STAGES 3, else 4;
                                  2 (v5, sm_90 only, else KV_ENOTSUP) the tensor-core core with
                                  its K/V tiles staged by 1-D bulk copies (cp.async.bulk, one per
                                  token row into padded rows, mbarrier completion), same stages;
                                  3 (v6) the tensor-core core with its K/V tiles staged through
                                  registers (per-thread 16-byte loads of the next step in flight
                                  during the current one, then stores into the swizzled tiles),
                                  always 2 slots (KVC_TUNE_DENSE_STAGES does not apply);
                                  4 (v7) as 3 with the L2::256B prefetch-size hint on its
                                  loads. */
  KVC_TUNE_TOPK_CORE,          /* the same choice for top-k's split-K attention over the selected
                                  blocks: 0 (default) CUDA cores, 1 tensor cores (G <= 4) */
  KVC_TUNE_SCORE_HEADS,        /* block scores of top-k and PSA (v8): 0 (default) one CTA per
                                  (request, KV head) pair; 1 one CTA per request for all its KV
                                  heads, so a page's metadata rows of every head are read
                                  together (used where 128 / (head_dim / 8) is a multiple of the
                                  KV heads, else 0 runs); the same scores either way */
  KVC_TUNE_SCORE_LOOP,         /* block scores (v9): 1 (default) the kernel instantiated for the
                                  method's metadata (Quest min/max, or the mean; other
                                  estimates run 0) with several batches of blocks per CTA
                                  (kvc_score_iters; where that gives one, the v2 kernel); 0 the
                                  v2-v8 kernel (metadata chosen at run time, one batch per CTA);
                                  2 (for tests) the loop kernel always, 3 batches per CTA, so
                                  small cases exercise its pipeline. KVC_TUNE_SCORE_HEADS = 1
                                  runs the v8 shape whatever this is. Same scores either way */
  KVC_TUNE_PSA_CORE,           /* PSA's attention items (v11): 1 (default since v11 was
                                  measured 8-13% faster, 2026-12-03) tensor cores
                                  (kvc_attend_mma's step, a 3-deep cp.async ring per warp) for
                                  groups of at most 4 heads and block sizes that are multiples
                                  of 16, else 0 runs; 0 CUDA cores (fp32 FMA, one warp per
                                  item, v2-v10) */
  KVC_TUNE_PSA_RANK_CTAS,      /* PSA's rank kernel (one CTA of 512 threads per pair; contexts of
                                  up to 4,096 blocks): resident CTAs per SM it is compiled for.
                                  1 (default) no register cap (84 registers at 4 items per
                                  thread: one CTA per SM, so B32's 256 pairs take two waves);
                                  2 (v12) at most 64 registers, two CTAs per SM; 0 the 2-build
                                  when the pairs outnumber the SMs, else the 1-build (measured
                                  on the H200: -3.2% for B32's whole PSA step, +1% at B1 and B8
                                  with 2). The same code and order either way */
  KVC_TUNE_N
} kvc_tune_key;
int kvc_tune_set(kvc_ctx *c, kvc_tune_key key, int value, kv_error *err);
int kvc_tune_get(const kvc_ctx *c, kvc_tune_key key);

/* ---- paged KV cache of one layer ------------------------------------------------------------ */

enum {
  KVC_META_MIN = 1,
  KVC_META_MAX = 2,
  KVC_META_MEAN = 4,
  KVC_META_VAR = 8,
  KVC_META_ALL = 15
};

typedef struct kvc_kv {
  kvc_dtype dtype;
  int n_kv_heads, head_dim, block_size;
  int64_t n_pages;
  int meta_mask;                    /* KVC_META_* kept */
  void *k, *v;                      /* device [n_pages, n_kv_heads, block_size, head_dim] */
  void *kmin, *kmax, *kmean, *kvar; /* device [n_pages, n_kv_heads, head_dim] or NULL */
} kvc_kv;

/* Allocates a pool (contents undefined) with the metadata arrays named by meta_mask. */
int kvc_kv_alloc(kvc_ctx *c, kvc_kv *kv, kvc_dtype dtype, int n_kv_heads, int head_dim,
                 int block_size, int64_t n_pages, int meta_mask, kv_error *err);
void kvc_kv_free(kvc_ctx *c, kvc_kv *kv);

/* Metadata vectors a method reads (KVC_META_* mask; 0 for dense). */
int kvc_method_meta(const attn_method *m);

/* Writes tokens [0, n_tokens) of one request from host fp32 K, V [n_tokens, n_kv_heads, head_dim]
 * into its pages (pages [ceil(n_tokens / block_size)], host), converting to the pool's dtype
 * (round to nearest even, as kv_half.h). Synchronous. */
int kvc_kv_upload(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages, const float *K,
                  const float *V, int64_t n_tokens, kv_error *err);
/* Writes host metadata (fp32, attn_blockmeta layout [n_blocks, n_kv_heads, head_dim], converted
 * to the pool's dtype) of one request into its pages: the arrays kept by the pool. Synchronous. */
int kvc_kv_upload_meta(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages,
                       const attn_blockmeta *m, kv_error *err);
/* Reads metadata of n_blocks pages back to host fp32 arrays [n_blocks, n_kv_heads, head_dim]
 * (NULL to skip one). Synchronous. */
int kvc_kv_download_meta(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages, int64_t n_blocks,
                         float *kmin, float *kmax, float *kmean, float *kvar, kv_error *err);

/* The requests of one decode step. Device arrays except h_seq_len (host copy of seq_len, used to
 * plan launches: the serving scheduler knows every request's length). */
typedef struct kvc_batch {
  int n_req;
  int max_blocks;                /* row stride of block_table */
  const int32_t *block_table;    /* device [n_req, max_blocks] */
  const int32_t *seq_len;        /* device [n_req], each >= 1 */
  const int32_t *h_seq_len;      /* host [n_req], equal to seq_len */
  const float *q;                /* device [n_req, n_heads, head_dim] */
} kvc_batch;

/* ---- ops ------------------------------------------------------------------------------------ */

/* Dense decode, split-K over each request's blocks (flash-decoding), combine of the splits.
 * out device [n_req, n_heads, head_dim]; lse device [n_req, n_heads] natural-log sum of exp
 * scores (may be NULL). */
int kvc_dense(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b, float *out,
              float *lse, kv_error *err);

/* Rebuilds the metadata (the arrays the pool keeps) of every block of every request. */
int kvc_meta_build(kvc_ctx *c, const kvc_kv *kv, const kvc_batch *b, kv_error *err);
/* Decode-time append: for every request r, writes the new token's k_new[r], v_new[r] (device
 * fp32 [n_req, n_kv_heads, head_dim]) at position seq_len[r] - 1 (seq_len already counts it; its
 * page must be mapped) and recomputes the metadata of that token's block from its keys (equal to a
 * rebuild; see docs/kernels.md). */
int kvc_meta_append(kvc_ctx *c, const kvc_kv *kv, const kvc_batch *b, const float *k_new,
                    const float *v_new, kv_error *err);

/* What a sparse op read, per (request, KV head) unless noted. Device arrays, each may be NULL. */
typedef struct kvc_sparse_out {
  int32_t *blocks_read;    /* [n_req, n_kv_heads] blocks whose K/V entered the output */
  int32_t *iterations;     /* [n_req, n_kv_heads] PSA iterations (forced blocks = one); top-k 1 */
  int32_t *blocks_fetched; /* [n_req, n_kv_heads] blocks loaded, speculative PSA loads included */
  float *est_mass;         /* [n_req, n_heads] PSA's final P_acc (top-k: NaN) */
  int32_t *order;          /* [n_req, n_kv_heads, max_blocks] visit order (top-k: selection
                              first); entries past the request's block count are undefined */
} kvc_sparse_out;

/* Fixed top-k: block scores (Quest bound or q.mean, combined over the group by max or sum), the
 * selection on the GPU (stable descending sort, ties to the lower block, forced blocks first),
 * then split-K attention over the selected blocks. */
int kvc_topk(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
             const kvc_batch *b, float *out, kvc_sparse_out *so, kv_error *err);

typedef enum kvc_psa_mode {
  KVC_PSA_PIPELINED = 0, /* speculative rounds (a fixed number of launches), stop test on the device */
  KVC_PSA_HOSTSYNC       /* one launch per iteration, the host reads the count of running pairs
                            after each (the naive loop of the paper) */
} kvc_psa_mode;

/* Execution of PSA's attention (kvc_psa.cu has the design). The visit order and the stop rule do
 * not depend on any of these: every setting gives the same blocks, iterations and P_acc (up to
 * fp32 rounding of the per-iteration states), only the work fetched and the time differ. */
typedef struct kvc_psa_opts {
  kvc_psa_mode mode;
  int ctas_per_pair;   /* persistent CTAs = ctas_per_pair x pairs; 0 = the CTAs the GPU holds at
                          once (default) */
  int window;          /* iterations per work item (one warp computes them in order, writing the
                          state after each); >= 1, default 4; capped so that an item's blocks fit
                          KVC_MAX_SPLIT_BLOCKS. Host-synchronised mode: 1 */
  int spec_iters;      /* pipelined: iterations fetched in the first round beyond
                          spec_scale x the metadata's estimate of the stop; >= 0, default 2 */
  float spec_scale;    /* pipelined: > 0, default 1.0 (see spec_iters) */
  int rounds;          /* pipelined: launches of the attention (1..16, default 4); the first
                          covers the speculation above, each later one grow_pct percent more of
                          the pairs still running, the last everything left */
  int grow_pct;        /* pipelined: 1..1000, default 50 */
} kvc_psa_opts;

void kvc_psa_opts_defaults(kvc_psa_opts *o);

typedef struct kvc_psa_stats {
  int host_syncs;      /* host round trips in the loop (0 when pipelined) */
  int launches;        /* kernel launches of the attention rounds */
} kvc_psa_stats;

/* PSA: ranking (per-head estimated probabilities, summed over the group), visit order, the
 * progressive loop (forced blocks, then groups of group_blocks; online-softmax merge; stop when
 * every head of the group reaches epsilon, as kernels/attn_sparse.c), outputs and counts.
 * st may be NULL. */
int kvc_psa(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
            const kvc_batch *b, const kvc_psa_opts *o, float *out, kvc_sparse_out *so,
            kvc_psa_stats *st, kv_error *err);

/* ---- cuBLAS --------------------------------------------------------------------------------- */

/* Scores of many queries against one sequence's contiguous keys, for every query head:
 *   S[h, i, t] = scale * Q[i, h, :] . K[t, h / G, :]
 * Q device [n_q, n_heads, head_dim], K device [n_tok, n_kv_heads, head_dim] (dtype), S device
 * fp32 [n_heads, n_q, n_tok]. One batched GEMM (cublasGemmBatchedEx), fp32 accumulation. */
int kvc_group_scores(kvc_ctx *c, const attn_shape *s, kvc_dtype dtype, const void *Q, int n_q,
                     const void *K, int64_t n_tok, float *S, kv_error *err);

/* Times C[m, n] = A[m, k] B[k, n] (dtype inputs, fp32 accumulation, dtype output) through
 * cublasGemmEx: median of reps after a warm-up, on random inputs. */
int kvc_gemm_time(kvc_ctx *c, kvc_dtype dtype, int m, int n, int k, int reps, double *ms,
                  kv_error *err);

/* ---- data for tests and benchmarks ---------------------------------------------------------- */

/* Fills n elements of dtype (or fp32 when dtype is 0) with seeded pseudo-random normals times
 * `scale` (a counter-based hash: the same seed gives the same values). */
int kvc_fill_normal(kvc_ctx *c, void *p, int dtype, int64_t n, uint64_t seed, float scale,
                    kv_error *err);
/* Heavy-tailed synthetic attention on the device, as traces/qkv_synth.c in spirit: per request
 * and KV head a unit "topic" direction u; keys are N(0,1) noise plus, for about 2% of tokens, a
 * Pareto multiple of u, and token 0 (the sink) a large multiple; queries are a multiple of u plus
 * noise. Fills the pages of every request (block_table, seq_len) and q. */
int kvc_fill_synth(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                   float *q, uint64_t seed, kv_error *err);

/* Recorded attention at a benchmark shape: every request's pages and query from one recorded layer
 * (device fp32 rec_k, rec_v [n_rec_tokens, rec_kv_heads, rec_dim], rec_q [n_req, rec_heads,
 * rec_dim]: request r's recorded query, at recorded position rec_pos[r] (host [n_req], each in
 * [1, n_rec_tokens))). Token t of request r holds recorded token kvc_tile_token(t, seq_len,
 * rec_pos) (kvc_math.h); KV head h holds recorded KV head h % rec_kv_heads; dimension d holds
 * recorded dimension d % rec_dim; query head h * G + g holds recorded query head
 * (h % rec_kv_heads) * rec_G + g % rec_G, tiled the same way and scaled by sqrt(rec_dim /
 * head_dim), so every
 * score q.k / sqrt(head_dim) equals the recorded one: the per-head attention distributions, and
 * so PSA's and top-k's budgets as fractions of the context, follow the recording (checked on the
 * CPU by tests/gpu/test_bench_tiling.c). head_dim must be a multiple of rec_dim. */
int kvc_fill_tiled(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                   float *q, const float *rec_k, const float *rec_v, const float *rec_q,
                   const attn_shape *rec, const int32_t *rec_pos, kv_error *err);

/* Read-bandwidth probes (v5; kvbench's `bandwidth` rows; no op uses them). mode 0: per-thread
 * 16-byte loads (8 in flight per thread); mode 2 (v7): the same with the L2::256B prefetch-size
 * hint; mode 1: 1-D bulk asynchronous copies (cp.async.bulk,
 * sm_90+, else KV_ENOTSUP) of stage_bytes per ring slot, issued as stage_bytes / piece_bytes
 * (<= 32) copies, each piece at a pitch of piece_bytes (+16 when pad: the layout a padded,
 * ldmatrix-conflict-free tile would need), `stages` slots (<= 16) per CTA of 128 threads,
 * ctas_per_sm CTAs per SM (fewer when shared memory does not fit). */
typedef struct kvc_probe_cfg {
  int mode;
  int stage_bytes, piece_bytes, pad;
  int stages, ctas_per_sm;
} kvc_probe_cfg;
/* Reads `bytes` (a hashed pattern written first) reps times: median *gbps = bytes / time; *xsum =
 * XOR of every 32-bit word read (equal across probes of the same bytes when they read them all
 * exactly once). */
int kvc_probe_read(kvc_ctx *c, const kvc_probe_cfg *cfg, size_t bytes, int reps, double *gbps,
                   uint32_t *xsum, kv_error *err);
/* Reads the K and V pages (whole pages, block_size x head_dim of one KV head each) of every
 * block of every request of b, page-scattered as the dense op reads them; mode 0 / 1 as above
 * (1: one bulk copy per page and KV head, `stages` slots; 2: per-thread loads with the L2::256B
 * hint); mode 3 (v10) reads instead the kmin and kmax rows (head_dim elements of one KV head,
 * 256 B at D 128 bf16) of every block as the block-score kernel does (one (request, KV head) per
 * CTA, 32 blocks per CTA, per-thread loads): what the top-k select phase must read, with no
 * arithmetic (KV_EINVAL without kmin and kmax); mode 4 (v10) the same bytes in the pattern of an
 * interleaved [page][Hkv][min|max][D] layout (one 2 x head_dim-element piece per block and KV
 * head, taken from the K array as a stand-in: a bandwidth pattern, not the metadata's values);
 * mode 5 the metadata rows with 256 blocks per CTA, 6 the same with 16 loads per thread in
 * flight, 7 a page's rows of every KV head as one piece (v8's pattern), 8 mode 0 over 1/16 of
 * the requests (the metadata's byte count in K and V pages), 9 the K and V pages of every 16th
 * block of every request with mode 3's grid and bytes per CTA (CTA x reads blocks 32x and
 * 32x + 1: four 4 KB pieces, the 16 KB that mode 3's CTA reads in 256 B rows). *bytes = bytes
 * read, *gbps = *bytes /
 * median time, *xsum = XOR of the words read. */
int kvc_probe_read_pool(kvc_ctx *c, int mode, int stages, const kvc_kv *kv, const kvc_batch *b,
                        int reps, double *gbps, double *bytes, uint32_t *xsum, kv_error *err);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_CUDA_H */
