/* sim_model.h — a transformer model as data (sim/data/models/<name>.ini) and the sizes derived
 * from it: parameters per layer, KV bytes per token, FLOPs per token.
 *
 * File format (INI, every key required unless noted; unknown keys are an error):
 *   [model]
 *   name            display name
 *   layers          transformer blocks
 *   heads           query heads
 *   kv_heads        key/value heads (== heads for MHA; fewer for GQA)
 *   head_dim        per-head dimension
 *   hidden          model width (d_model)
 *   ffn             FFN inner width
 *   ffn_matrices    3 for gated FFNs (SwiGLU: gate, up, down), 2 for plain (up, down)
 *   vocab           vocabulary size
 *   tied_embeddings optional bool (default false): input and output embeddings shared
 *   bytes_per_elem  bytes per weight and per KV element (2 for fp16/bf16)
 *   context_window  maximum context in tokens
 *   source          optional: where the numbers come from
 *
 * KV bytes per token = 2 (K and V) * layers * kv_heads * head_dim * bytes_per_elem.
 */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stdint.h>

#include "kv_config.h"
#include "kv_err.h"

typedef struct sim_model {
  char name[64];
  char source[256];
  int64_t layers, heads, kv_heads, head_dim, hidden, ffn, ffn_matrices, vocab;
  int64_t bytes_per_elem, context_window;
  int tied_embeddings;
  /* derived */
  double layer_params;      /* weights of one block (attention projections + FFN) */
  double embed_params;      /* input embedding + LM head (once when tied) */
  double params;            /* total */
  double kv_bytes_per_token;            /* all layers */
  double kv_bytes_per_token_layer;      /* one layer */
} sim_model;

/* Loads and checks a model file; errors name path:line and the key. */
int sim_model_load(const char *path, sim_model *m, kv_error *err);
/* Reads the [model] section of an already parsed config (`what` names it in messages) and
 * checks that no other key is present. */
int sim_model_from_config(const kv_config *cfg, const char *what, sim_model *m, kv_error *err);

#endif /* SIM_MODEL_H */
