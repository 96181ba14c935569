#include "sim_model.h"

#include <stdio.h>
#include <string.h>

int sim_model_from_config(const kv_config *cfg, const char *what, sim_model *m, kv_error *err) {
  memset(m, 0, sizeof *m);
  const char *s = NULL;
  int rc;
  if ((rc = kv_config_str(cfg, "model", "name", NULL, &s, err))) return rc;
  if (!s || !s[0]) return kv_error_set(err, KV_ENOENT, "%s: [model] name is required", what);
  snprintf(m->name, sizeof m->name, "%s", s);
  if ((rc = kv_config_str(cfg, "model", "source", "", &s, err))) return rc;
  snprintf(m->source, sizeof m->source, "%s", s);
  struct {
    const char *key;
    int64_t *dst, lo, hi;
  } ints[] = {
      {"layers", &m->layers, 1, 1024},         {"heads", &m->heads, 1, 4096},
      {"kv_heads", &m->kv_heads, 1, 4096},     {"head_dim", &m->head_dim, 1, 4096},
      {"hidden", &m->hidden, 1, 1 << 20},      {"ffn", &m->ffn, 1, 1 << 22},
      {"ffn_matrices", &m->ffn_matrices, 2, 3}, {"vocab", &m->vocab, 1, 1 << 24},
      {"bytes_per_elem", &m->bytes_per_elem, 1, 8},
      {"context_window", &m->context_window, 16, 1 << 26},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    rc = kv_config_int_req(cfg, "model", ints[i].key, ints[i].lo, ints[i].hi, ints[i].dst, err);
    if (rc) {
      if (rc == KV_ENOENT) kv_error_set(err, rc, "%s: [model] %s is required", what, ints[i].key);
      return rc;
    }
  }
  if ((rc = kv_config_bool(cfg, "model", "tied_embeddings", 0, &m->tied_embeddings, err))) return rc;
  if (m->heads % m->kv_heads != 0) {
    return kv_error_set(err, KV_EINVAL, "%s: heads %lld is not a multiple of kv_heads %lld", what,
                        (long long)m->heads, (long long)m->kv_heads);
  }
  if ((rc = kv_config_check_unused(cfg, err))) {
    kv_error_prefix(err, "%s: unknown key", what);
    return rc;
  }
  double h = (double)m->hidden, q = (double)(m->heads * m->head_dim);
  double kv = (double)(m->kv_heads * m->head_dim);
  m->layer_params = h * q + 2 * h * kv + q * h + (double)m->ffn_matrices * h * (double)m->ffn;
  m->embed_params = (m->tied_embeddings ? 1.0 : 2.0) * (double)m->vocab * h;
  m->params = m->layer_params * (double)m->layers + m->embed_params;
  m->kv_bytes_per_token_layer = 2.0 * kv * (double)m->bytes_per_elem;
  m->kv_bytes_per_token = m->kv_bytes_per_token_layer * (double)m->layers;
  return 0;
}

int sim_model_load(const char *path, sim_model *m, kv_error *err) {
  kv_config *cfg = NULL;
  int rc = kv_config_load(path, &cfg, err);
  if (rc) return rc;
  rc = sim_model_from_config(cfg, path, m, err);
  kv_config_free(cfg);
  return rc;
}
