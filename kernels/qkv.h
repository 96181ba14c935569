/* qkv.h — recorded attention tensors (Q, K, V) in HDF5: the schema, a writer and a validating
 * reader. The schema is documented in docs/qkv-format.md; this header is its C contract.
 *
 * File layout (schema_version 1):
 *   /                      attrs: format="kvlab-qkv", schema_version=1, model_name, n_layers,
 *                                 n_heads, n_kv_heads, head_dim, rope_theta, k_post_rope (0/1),
 *                                 creator, [tokenizer]
 *   /seq_<i>               one group per sequence, i = 0..n-1 (groups are listed in order by
 *                          their attribute `index`): attrs name, text_kind ("prose", "code",
 *                          "synthetic", ...), n_tokens, [source]
 *   /seq_<i>/tokens        int32 [n_tokens]                         (optional)
 *   /seq_<i>/layer_<l>     one group per recorded layer l (zero-based model layer index);
 *                          attr layer = l
 *       K                  [n_tokens, n_kv_heads, head_dim]  fp16, bf16 or fp32
 *       V                  [n_tokens, n_kv_heads, head_dim]
 *       Q                  [n_positions, n_heads, head_dim]  queries at `positions`
 *       positions          int64 [n_positions], strictly increasing, each in [0, n_tokens)
 *       K_pre_rope         [n_tokens, n_kv_heads, head_dim]  (optional)
 *   fp16 is HDF5's 16-bit IEEE float (what h5py writes for numpy.float16); bf16 is stored as
 *   uint16 (the upper half of the fp32 bit pattern) with the dataset attribute dtype="bf16";
 *   fp32 is IEEE little-endian 32-bit.
 *
 * The query at position p attends to keys 0..p inclusive (its own key included), as in causal
 * decoding where the current token's K/V are appended before attention.
 */
#ifndef QKV_H
#define QKV_H

#include <stdint.h>

#include "kv_err.h"

#define QKV_SCHEMA_VERSION 1
#define QKV_NAME_MAX 256

typedef enum qkv_dtype {
  QKV_DTYPE_F32 = 0,
  QKV_DTYPE_F16 = 1,
  QKV_DTYPE_BF16 = 2
} qkv_dtype;

/* Bytes per element of a dtype (4 or 2). */
int qkv_dtype_size(qkv_dtype t);
/* "fp32", "fp16", "bf16". */
const char *qkv_dtype_name(qkv_dtype t);
/* Parses a dtype name; returns 0 and sets *t, or KV_EINVAL. */
int qkv_dtype_parse(const char *s, qkv_dtype *t);

typedef struct qkv_model {
  char name[QKV_NAME_MAX];
  char creator[QKV_NAME_MAX];
  char tokenizer[QKV_NAME_MAX]; /* may be empty */
  int n_layers;                 /* layers of the model (recorded layers may be fewer) */
  int n_heads;                  /* query heads */
  int n_kv_heads;               /* key/value heads; n_heads % n_kv_heads == 0 (GQA group) */
  int head_dim;
  double rope_theta;
  int k_post_rope;              /* 1: K is stored after RoPE, as attention uses it */
} qkv_model;

typedef struct qkv_seq_info {
  char name[QKV_NAME_MAX];
  char text_kind[QKV_NAME_MAX]; /* longer attributes are an error naming the file */
  char source[QKV_NAME_MAX];    /* may be empty */
  int64_t n_tokens;
  int n_layers;                 /* recorded layers in this sequence */
  int *layers;                  /* [n_layers], ascending model layer indices; owned by the file */
  int has_tokens;
} qkv_seq_info;

/* One recorded layer of one sequence, converted to fp32 in memory (row-major as in the file).
 * Owned by the caller after qkv_read_layer; release with qkv_layer_free. */
typedef struct qkv_layer {
  int layer;
  int64_t n_tokens, n_positions;
  int n_heads, n_kv_heads, head_dim;
  qkv_dtype dtype;       /* type stored in the file (K's) */
  float *K;              /* [n_tokens, n_kv_heads, head_dim] */
  float *V;              /* [n_tokens, n_kv_heads, head_dim] */
  float *Q;              /* [n_positions, n_heads, head_dim] */
  int64_t *positions;    /* [n_positions] */
  float *K_pre_rope;     /* [n_tokens, n_kv_heads, head_dim] or NULL */
} qkv_layer;

typedef struct qkv_file qkv_file;

/* Opens and validates the file's structure: root attributes, every sequence group, every layer
 * group's datasets (presence, rank, shape, type) and head counts. Tensor values are checked
 * (NaN/Inf, positions) when a layer is read. Errors name the file and the dataset.
 * On success *out is owned by the caller (qkv_close). */
int qkv_open(const char *path, qkv_file **out, kv_error *err);
void qkv_close(qkv_file *f);

const qkv_model *qkv_file_model(const qkv_file *f);
const char *qkv_file_path(const qkv_file *f);
int qkv_file_n_seqs(const qkv_file *f);
/* Info of sequence i (0-based); the pointer stays valid until qkv_close. NULL if out of range. */
const qkv_seq_info *qkv_file_seq(const qkv_file *f, int i);

/* Reads sequence `seq`, model layer `layer` into *out (converted to fp32). Validates: every value
 * finite; positions strictly increasing and within [0, n_tokens). `want_pre_rope` also reads
 * K_pre_rope (KV_ENOENT if absent). On error *out is left empty (nothing to free). */
int qkv_read_layer(qkv_file *f, int seq, int layer, int want_pre_rope, qkv_layer *out,
                   kv_error *err);
/* Reads the tokens of sequence `seq` into a malloc'ed array (*n_out entries; caller frees). */
int qkv_read_tokens(qkv_file *f, int seq, int32_t **tokens, int64_t *n_out, kv_error *err);
void qkv_layer_free(qkv_layer *l);

/* Full validation of every tensor in the file (qkv_open + every layer read); for tools/tests. */
int qkv_validate(const char *path, kv_error *err);

/* ---- writer ---------------------------------------------------------------------------- */
typedef struct qkv_writer qkv_writer;

/* Creates `path` (truncating) and writes the root attributes from *model. */
int qkv_writer_open(const char *path, const qkv_model *model, qkv_writer **out, kv_error *err);
/* Starts sequence number qkv_writer_n_seqs(w); tokens may be NULL. Returns the sequence index
 * (>= 0) or a negative status. */
int qkv_writer_add_seq(qkv_writer *w, const char *name, const char *text_kind, const char *source,
                       int64_t n_tokens, const int32_t *tokens, kv_error *err);
/* Writes one layer of sequence `seq` from fp32 arrays (shapes as in qkv_layer; n_tokens is the
 * sequence's), stored as `dtype`. K_pre_rope may be NULL. Rejects NaN/Inf and bad positions. */
int qkv_writer_add_layer(qkv_writer *w, int seq, int layer, qkv_dtype dtype, const float *K,
                         const float *V, const float *Q, const int64_t *positions,
                         int64_t n_positions, const float *K_pre_rope, kv_error *err);
/* Flushes and closes; returns the first error of the file's life, if any. Frees w. */
int qkv_writer_close(qkv_writer *w, kv_error *err);

/* ---- synthetic data for tests ------------------------------------------------------------ */
typedef struct qkv_synth_params {
  uint64_t seed;
  int n_seqs;
  int64_t n_tokens;        /* per sequence */
  int n_layers;            /* recorded layers (model layers 0..n_layers-1) */
  int n_heads, n_kv_heads, head_dim;
  int n_positions;         /* queries per layer, spread over the second half of the sequence */
  qkv_dtype dtype;
} qkv_synth_params;

/* Fills defaults: 1 sequence of 2048 tokens, 2 layers, 8 / 2 heads of 64, 16 positions, fp16. */
void qkv_synth_defaults(qkv_synth_params *p);

/* Writes a seeded synthetic file whose attention is heavy-tailed: an attention sink at token 0,
 * a recency window, and a few "heavy hitter" tokens per head whose keys align with the query;
 * heads differ in temperature so some are peaked and some are flat, which makes the budget PSA
 * needs vary per head and layer. Same seed, same bytes of tensor data. */
int qkv_synth_write(const char *path, const qkv_synth_params *p, kv_error *err);

#endif /* QKV_H */
