/* qkv.c — Q/K/V HDF5 files: writer and validating reader (schema in qkv.h). */
#include "qkv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_h5.h"
#include "kv_half.h"

#define QKV_FORMAT_NAME "kvlab-qkv"
/* Refuse tensors above 2^34 elements (64 GiB of fp32): a damaged shape must not drive malloc. */
#define QKV_MAX_ELEMS ((int64_t)1 << 34)

int qkv_dtype_size(qkv_dtype t) { return t == QKV_DTYPE_F32 ? 4 : 2; }

const char *qkv_dtype_name(qkv_dtype t) {
  switch (t) {
    case QKV_DTYPE_F32: return "fp32";
    case QKV_DTYPE_F16: return "fp16";
    case QKV_DTYPE_BF16: return "bf16";
  }
  return "?";
}

int qkv_dtype_parse(const char *s, qkv_dtype *t) {
  if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) *t = QKV_DTYPE_F32;
  else if (!strcmp(s, "fp16") || !strcmp(s, "f16") || !strcmp(s, "float16")) *t = QKV_DTYPE_F16;
  else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *t = QKV_DTYPE_BF16;
  else return KV_EINVAL;
  return 0;
}

/* The file type of IEEE fp16, little-endian, as h5py writes numpy.float16. Caller closes. */
static hid_t qkv__f16_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

/* ---- reader -------------------------------------------------------------------------------- */

typedef struct qkv__seq {
  qkv_seq_info info;
  char group[32];
} qkv__seq;

struct qkv_file {
  char path[4096];
  hid_t fid;
  qkv_model model;
  qkv__seq *seqs;
  int n_seqs;
};

const qkv_model *qkv_file_model(const qkv_file *f) { return &f->model; }
const char *qkv_file_path(const qkv_file *f) { return f->path; }
int qkv_file_n_seqs(const qkv_file *f) { return f->n_seqs; }
const qkv_seq_info *qkv_file_seq(const qkv_file *f, int i) {
  return (i >= 0 && i < f->n_seqs) ? &f->seqs[i].info : NULL;
}

void qkv_close(qkv_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n_seqs; i++) free(f->seqs[i].info.layers);
  free(f->seqs);
  if (f->fid >= 0) H5Fclose(f->fid);
  free(f);
}

static int qkv__read_int_attr(hid_t loc, const char *name, int lo, int hi, int *out,
                              const char *what, kv_error *err) {
  int64_t v;
  int rc = kv_h5_attr_read_i64(loc, name, &v, what, err);
  if (rc) return rc;
  if (v < lo || v > hi) {
    return kv_error_set(err, KV_ERANGE, "%s: attribute %s = %lld is outside [%d, %d]", what, name,
                        (long long)v, lo, hi);
  }
  *out = (int)v;
  return 0;
}

/* Element type of a tensor dataset, checked against the three supported encodings. */
typedef enum { QKV__T_F32, QKV__T_F16_LE, QKV__T_F16_OTHER, QKV__T_BF16 } qkv__tclass;

static int qkv__classify(hid_t dset, qkv__tclass *tc, qkv_dtype *dt, const char *what,
                         kv_error *err) {
  hid_t t = H5Dget_type(dset);
  if (t < 0) return kv_error_set(err, KV_EFORMAT, "%s: cannot read its type", what);
  H5T_class_t c = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  int rc = 0;
  if (c == H5T_FLOAT && sz == 4) {
    *tc = QKV__T_F32;
    *dt = QKV_DTYPE_F32;
  } else if (c == H5T_FLOAT && sz == 2) {
    hid_t f16 = qkv__f16_type();
    *tc = H5Tequal(t, f16) > 0 ? QKV__T_F16_LE : QKV__T_F16_OTHER;
    *dt = QKV_DTYPE_F16;
    H5Tclose(f16);
  } else if (c == H5T_INTEGER && sz == 2 && H5Tget_sign(t) == H5T_SGN_NONE) {
    char tag[16] = "";
    kv_error tmp = {0};
    if (kv_h5_attr_read_str(dset, "dtype", tag, sizeof tag, what, &tmp) != 0 ||
        strcmp(tag, "bf16") != 0) {
      rc = kv_error_set(err, KV_EFORMAT,
                        "%s: uint16 data without the attribute dtype=\"bf16\" (unsupported type)",
                        what);
    } else {
      *tc = QKV__T_BF16;
      *dt = QKV_DTYPE_BF16;
    }
  } else {
    rc = kv_error_set(err, KV_ENOTSUP,
                      "%s: unsupported element type (%s of %zu bytes); expected fp16, bf16 "
                      "(uint16 + dtype attribute) or fp32",
                      what, c == H5T_FLOAT ? "float" : c == H5T_INTEGER ? "integer" : "non-numeric",
                      sz);
  }
  H5Tclose(t);
  return rc;
}

/* Opens `name` under group g, checks rank 3 and shape [d0, d1, d2] (d0 < 0: any, returned). */
static hid_t qkv__open_tensor(hid_t g, const char *gpath, const char *name, int64_t *d0,
                              int64_t d1, int64_t d2, qkv_dtype *dt, const char *fpath,
                              kv_error *err) {
  char what[4400];
  snprintf(what, sizeof what, "%s: %s", fpath, gpath);
  hsize_t dims[3];
  hid_t d = kv_h5_open_dataset(g, name, 3, dims, what, err);
  if (d < 0) return d;
  snprintf(what, sizeof what, "%s: %s/%s", fpath, gpath, name);
  if ((*d0 >= 0 && (int64_t)dims[0] != *d0) || (int64_t)dims[1] != d1 ||
      (int64_t)dims[2] != d2) {
    H5Dclose(d);
    char first[32] = "*";
    if (*d0 >= 0) snprintf(first, sizeof first, "%lld", (long long)*d0);
    return kv_error_set(err, KV_EFORMAT, "%s: shape [%llu, %llu, %llu], expected [%s, %lld, %lld]",
                        what, (unsigned long long)dims[0], (unsigned long long)dims[1],
                        (unsigned long long)dims[2], first, (long long)d1, (long long)d2);
  }
  if ((int64_t)dims[0] * d1 * d2 > QKV_MAX_ELEMS || dims[0] > (hsize_t)QKV_MAX_ELEMS) {
    H5Dclose(d);
    return kv_error_set(err, KV_ERANGE, "%s: too large (%llu x %lld x %lld elements)", what,
                        (unsigned long long)dims[0], (long long)d1, (long long)d2);
  }
  *d0 = (int64_t)dims[0];
  qkv__tclass tc;
  int rc = qkv__classify(d, &tc, dt, what, err);
  if (rc) {
    H5Dclose(d);
    return rc;
  }
  return d;
}

/* Checks the datasets of one layer group (no tensor values read). */
static int qkv__check_layer(qkv_file *f, hid_t g, const char *gpath, int64_t n_tokens,
                            kv_error *err) {
  const qkv_model *m = &f->model;
  int64_t nt = n_tokens, np = -1;
  qkv_dtype dt;
  const char *kv_names[3] = {"K", "V", "K_pre_rope"};
  for (int i = 0; i < 3; i++) {
    if (i == 2 && !kv_h5_exists(g, "K_pre_rope")) break;
    hid_t d = qkv__open_tensor(g, gpath, kv_names[i], &nt, m->n_kv_heads, m->head_dim, &dt,
                               f->path, err);
    if (d < 0) return (int)d;
    H5Dclose(d);
  }
  hid_t d = qkv__open_tensor(g, gpath, "Q", &np, m->n_heads, m->head_dim, &dt, f->path, err);
  if (d < 0) return (int)d;
  H5Dclose(d);
  char what[4400];
  snprintf(what, sizeof what, "%s: %s", f->path, gpath);
  hsize_t pd[1];
  d = kv_h5_open_dataset(g, "positions", 1, pd, what, err);
  if (d < 0) return (int)d;
  hid_t t = H5Dget_type(d);
  int is_int = H5Tget_class(t) == H5T_INTEGER;
  H5Tclose(t);
  H5Dclose(d);
  if (!is_int) {
    return kv_error_set(err, KV_EFORMAT, "%s/positions: not an integer dataset", what);
  }
  if ((int64_t)pd[0] != np) {
    return kv_error_set(err, KV_EFORMAT, "%s/positions: %llu entries but Q has %lld positions",
                        what, (unsigned long long)pd[0], (long long)np);
  }
  if (np < 1) return kv_error_set(err, KV_EFORMAT, "%s: no query positions", what);
  return 0;
}

typedef struct {
  int *layers;
  int n, cap;
  int bad;
  char bad_name[128];
} qkv__layer_list;

static herr_t qkv__collect_layers(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  (void)info;
  qkv__layer_list *l = data;
  if (strncmp(name, "layer_", 6) != 0) return 0;
  char *end;
  long v = strtol(name + 6, &end, 10);
  if (*end || end == name + 6 || v < 0 || v > 100000) {
    l->bad = 1;
    snprintf(l->bad_name, sizeof l->bad_name, "%s", name);
    return 1;
  }
  if (l->n == l->cap) {
    int nc = l->cap ? l->cap * 2 : 16;
    int *nl = realloc(l->layers, (size_t)nc * sizeof *nl);
    if (!nl) {
      l->bad = 2;
      return 1;
    }
    l->layers = nl;
    l->cap = nc;
  }
  l->layers[l->n++] = (int)v;
  return 0;
}

static int qkv__cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static int qkv__open_seq(qkv_file *f, int i, kv_error *err) {
  qkv__seq *s = &f->seqs[i];
  snprintf(s->group, sizeof s->group, "seq_%d", i);
  char what[4400];
  snprintf(what, sizeof what, "%s: /%s", f->path, s->group);
  hid_t g = H5Gopen2(f->fid, s->group, H5P_DEFAULT);
  if (g < 0) {
    kv_error_set(err, KV_EFORMAT, "%s: cannot open group", what);
    kv_h5_append_stack(err);
    return KV_EFORMAT;
  }
  int rc = kv_h5_attr_read_str(g, "name", s->info.name, sizeof s->info.name, what, err);
  if (!rc) rc = kv_h5_attr_read_str(g, "text_kind", s->info.text_kind,
                                    sizeof s->info.text_kind, what, err);
  if (!rc && H5Aexists(g, "source") > 0) {
    rc = kv_h5_attr_read_str(g, "source", s->info.source, sizeof s->info.source, what, err);
  }
  int64_t nt = 0, index = -1;
  if (!rc) rc = kv_h5_attr_read_i64(g, "index", &index, what, err);
  if (!rc && index != i) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: attribute index = %lld, the group is seq_%d", what,
                      (long long)index, i);
  }
  if (!rc) rc = kv_h5_attr_read_i64(g, "n_tokens", &nt, what, err);
  if (!rc && (nt < 1 || nt > QKV_MAX_ELEMS)) {
    rc = kv_error_set(err, KV_ERANGE, "%s: n_tokens = %lld is out of range", what, (long long)nt);
  }
  s->info.n_tokens = nt;
  if (!rc && kv_h5_exists(g, "tokens")) {
    hsize_t td[1];
    hid_t d = kv_h5_open_dataset(g, "tokens", 1, td, what, err);
    if (d < 0) {
      rc = (int)d;
    } else {
      if ((int64_t)td[0] != nt) {
        rc = kv_error_set(err, KV_EFORMAT, "%s/tokens: %llu entries, n_tokens is %lld", what,
                          (unsigned long long)td[0], (long long)nt);
      }
      H5Dclose(d);
      s->info.has_tokens = 1;
    }
  }
  qkv__layer_list ll = {0};
  if (!rc) {
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, qkv__collect_layers, &ll) < 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: cannot list its layers", what);
    } else if (ll.bad == 1) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: bad layer group name '%s'", what, ll.bad_name);
    } else if (ll.bad == 2) {
      rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
    } else if (ll.n == 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: no layer_<l> groups", what);
    }
  }
  if (!rc) {
    qsort(ll.layers, (size_t)ll.n, sizeof *ll.layers, qkv__cmp_int);
    for (int k = 0; k < ll.n && !rc; k++) {
      if (ll.layers[k] >= f->model.n_layers) {
        rc = kv_error_set(err, KV_ERANGE, "%s: layer_%d but the model has %d layers", what,
                          ll.layers[k], f->model.n_layers);
      } else if (k > 0 && ll.layers[k] == ll.layers[k - 1]) {
        rc = kv_error_set(err, KV_EFORMAT, "%s: layer %d recorded twice", what, ll.layers[k]);
      }
    }
  }
  s->info.layers = ll.layers;
  s->info.n_layers = ll.n;
  for (int k = 0; k < ll.n && !rc; k++) {
    char lname[32], gpath[64];
    snprintf(lname, sizeof lname, "layer_%02d", ll.layers[k]);
    if (!kv_h5_exists(g, lname)) snprintf(lname, sizeof lname, "layer_%d", ll.layers[k]);
    snprintf(gpath, sizeof gpath, "/%s/%s", s->group, lname);
    hid_t lg = H5Gopen2(g, lname, H5P_DEFAULT);
    if (lg < 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: %s: cannot open group", f->path, gpath);
      break;
    }
    int64_t lattr = -1;
    char lwhat[4600];
    snprintf(lwhat, sizeof lwhat, "%s: %s", f->path, gpath);
    rc = kv_h5_attr_read_i64(lg, "layer", &lattr, lwhat, err);
    if (!rc && lattr != ll.layers[k]) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: attribute layer = %lld, the group is layer %d", lwhat,
                        (long long)lattr, ll.layers[k]);
    }
    if (!rc) rc = qkv__check_layer(f, lg, gpath, nt, err);
    H5Gclose(lg);
  }
  H5Gclose(g);
  return rc;
}

int qkv_open(const char *path, qkv_file **out, kv_error *err) {
  *out = NULL;
  qkv_file *f = calloc(1, sizeof *f);
  if (!f) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  f->fid = -1;
  snprintf(f->path, sizeof f->path, "%s", path);
  hid_t fid = kv_h5_open_read(path, err);
  if (fid < 0) {
    free(f);
    return (int)fid;
  }
  f->fid = fid;
  char what[4200];
  snprintf(what, sizeof what, "%s: /", path);
  qkv_model *m = &f->model;
  char fmt[64] = "";
  int64_t ver = 0;
  int rc = kv_h5_attr_read_str(fid, "format", fmt, sizeof fmt, what, err);
  if (!rc && strcmp(fmt, QKV_FORMAT_NAME) != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format is '%s', expected '%s'", what, fmt,
                      QKV_FORMAT_NAME);
  }
  if (!rc) rc = kv_h5_attr_read_i64(fid, "schema_version", &ver, what, err);
  if (!rc && ver != QKV_SCHEMA_VERSION) {
    rc = kv_error_set(err, KV_ENOTSUP, "%s: schema_version %lld is not supported (this build "
                      "reads version %d)", what, (long long)ver, QKV_SCHEMA_VERSION);
  }
  if (!rc) rc = kv_h5_attr_read_str(fid, "model_name", m->name, sizeof m->name, what, err);
  if (!rc) rc = kv_h5_attr_read_str(fid, "creator", m->creator, sizeof m->creator, what, err);
  if (!rc && H5Aexists(fid, "tokenizer") > 0) {
    rc = kv_h5_attr_read_str(fid, "tokenizer", m->tokenizer, sizeof m->tokenizer, what, err);
  }
  if (!rc) rc = qkv__read_int_attr(fid, "n_layers", 1, 100000, &m->n_layers, what, err);
  if (!rc) rc = qkv__read_int_attr(fid, "n_heads", 1, 4096, &m->n_heads, what, err);
  if (!rc) rc = qkv__read_int_attr(fid, "n_kv_heads", 1, 4096, &m->n_kv_heads, what, err);
  if (!rc) rc = qkv__read_int_attr(fid, "head_dim", 1, 1024, &m->head_dim, what, err);
  if (!rc) rc = qkv__read_int_attr(fid, "k_post_rope", 0, 1, &m->k_post_rope, what, err);
  if (!rc) rc = kv_h5_attr_read_f64(fid, "rope_theta", &m->rope_theta, what, err);
  if (!rc && m->n_heads % m->n_kv_heads != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: inconsistent head counts: n_heads %d is not a "
                      "multiple of n_kv_heads %d", what, m->n_heads, m->n_kv_heads);
  }
  if (!rc && !(m->rope_theta >= 0 && isfinite(m->rope_theta))) {
    rc = kv_error_set(err, KV_ERANGE, "%s: rope_theta %g is not a finite non-negative number",
                      what, m->rope_theta);
  }
  /* Sequences seq_0 .. seq_{n-1}, contiguous. */
  int n = 0;
  while (!rc) {
    char name[32];
    snprintf(name, sizeof name, "seq_%d", n);
    if (!kv_h5_exists(fid, name)) break;
    n++;
    if (n > 1000000) rc = kv_error_set(err, KV_ERANGE, "%s: too many sequences", what);
  }
  if (!rc && n == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: no sequence groups (seq_0 ...)", what);
  if (!rc) {
    f->seqs = calloc((size_t)n, sizeof *f->seqs);
    if (!f->seqs) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  }
  for (int i = 0; i < n && !rc; i++) {
    f->n_seqs = i + 1;
    rc = qkv__open_seq(f, i, err);
  }
  if (rc) {
    qkv_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

void qkv_layer_free(qkv_layer *l) {
  if (!l) return;
  free(l->K);
  free(l->V);
  free(l->Q);
  free(l->positions);
  free(l->K_pre_rope);
  memset(l, 0, sizeof *l);
}

/* Reads a rank-3 tensor dataset into fp32, converting by its encoding, and checks finiteness. */
static int qkv__read_tensor(hid_t g, const char *gpath, const char *name, int64_t d0, int64_t d1,
                            int64_t d2, float **out, qkv_dtype *dt_out, const char *fpath,
                            kv_error *err) {
  char what[4400];
  snprintf(what, sizeof what, "%s: %s/%s", fpath, gpath, name);
  int64_t n0 = d0;
  qkv_dtype dt;
  hid_t d = qkv__open_tensor(g, gpath, name, &n0, d1, d2, &dt, fpath, err);
  if (d < 0) return (int)d;
  qkv__tclass tc;
  qkv__classify(d, &tc, &dt, what, err);
  size_t n = (size_t)(d0 * d1 * d2);
  float *buf = malloc((n ? n : 1) * sizeof *buf);
  uint16_t *raw = NULL;
  int rc = 0;
  if (!buf) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory (%zu elements)", what, n);
  if (!rc && (tc == QKV__T_F16_LE || tc == QKV__T_BF16)) {
    raw = malloc((n ? n : 1) * sizeof *raw);
    if (!raw) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
    hid_t mt = tc == QKV__T_BF16 ? H5Tcopy(H5T_NATIVE_UINT16) : qkv__f16_type();
    if (!rc) rc = kv_h5_read_all(d, mt, raw, n, what, err);
    H5Tclose(mt);
    if (!rc) {
      for (size_t i = 0; i < n; i++) {
        buf[i] = tc == QKV__T_BF16 ? kv_bf16_to_f32(raw[i]) : kv_f16_to_f32(raw[i]);
      }
    }
  } else if (!rc) {
    rc = kv_h5_read_all(d, H5T_NATIVE_FLOAT, buf, n, what, err);
  }
  free(raw);
  H5Dclose(d);
  for (size_t i = 0; !rc && i < n; i++) {
    if (!isfinite(buf[i])) {
      size_t a = i / (size_t)(d1 * d2), b = (i / (size_t)d2) % (size_t)d1, c = i % (size_t)d2;
      rc = kv_error_set(err, KV_EFORMAT, "%s: non-finite value %g at [%zu, %zu, %zu]", what,
                        (double)buf[i], a, b, c);
    }
  }
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  if (dt_out) *dt_out = dt;
  return 0;
}

static int qkv__find_layer(const qkv_file *f, int seq, int layer, char *gpath, size_t cap,
                           kv_error *err) {
  if (seq < 0 || seq >= f->n_seqs) {
    return kv_error_set(err, KV_ENOENT, "%s: no sequence %d (file has %d)", f->path, seq,
                        f->n_seqs);
  }
  const qkv__seq *s = &f->seqs[seq];
  for (int k = 0; k < s->info.n_layers; k++) {
    if (s->info.layers[k] == layer) {
      snprintf(gpath, cap, "/%s/layer_%02d", s->group, layer);
      if (!kv_h5_exists(f->fid, gpath + 1)) snprintf(gpath, cap, "/%s/layer_%d", s->group, layer);
      return 0;
    }
  }
  return kv_error_set(err, KV_ENOENT, "%s: /%s has no recorded layer %d", f->path, s->group,
                      layer);
}

int qkv_read_layer(qkv_file *f, int seq, int layer, int want_pre_rope, qkv_layer *out,
                   kv_error *err) {
  memset(out, 0, sizeof *out);
  char gpath[96];
  int rc = qkv__find_layer(f, seq, layer, gpath, sizeof gpath, err);
  if (rc) return rc;
  const qkv_model *m = &f->model;
  qkv_layer l = {0};
  l.layer = layer;
  l.n_tokens = f->seqs[seq].info.n_tokens;
  l.n_heads = m->n_heads;
  l.n_kv_heads = m->n_kv_heads;
  l.head_dim = m->head_dim;
  hid_t g = H5Gopen2(f->fid, gpath + 1, H5P_DEFAULT);
  if (g < 0) return kv_error_set(err, KV_EFORMAT, "%s: %s: cannot open group", f->path, gpath);
  char what[4400];
  snprintf(what, sizeof what, "%s: %s", f->path, gpath);
  hsize_t pd[1];
  rc = qkv__read_tensor(g, gpath, "K", l.n_tokens, m->n_kv_heads, m->head_dim, &l.K, &l.dtype,
                        f->path, err);
  if (!rc) rc = qkv__read_tensor(g, gpath, "V", l.n_tokens, m->n_kv_heads, m->head_dim, &l.V,
                                 NULL, f->path, err);
  hid_t pdset = -1;
  if (!rc) {
    pdset = kv_h5_open_dataset(g, "positions", 1, pd, what, err);
    if (pdset < 0) rc = (int)pdset;
  }
  if (!rc) {
    l.n_positions = (int64_t)pd[0];
    l.positions = malloc((size_t)(l.n_positions ? l.n_positions : 1) * sizeof *l.positions);
    if (!l.positions) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
    char pw[4500];
    snprintf(pw, sizeof pw, "%s/positions", what);
    if (!rc) rc = kv_h5_read_all(pdset, H5T_NATIVE_INT64, l.positions, pd[0], pw, err);
    for (int64_t i = 0; !rc && i < l.n_positions; i++) {
      if (l.positions[i] < 0 || l.positions[i] >= l.n_tokens) {
        rc = kv_error_set(err, KV_ERANGE, "%s: position[%lld] = %lld is outside [0, %lld)", pw,
                          (long long)i, (long long)l.positions[i], (long long)l.n_tokens);
      } else if (i > 0 && l.positions[i] <= l.positions[i - 1]) {
        rc = kv_error_set(err, KV_EFORMAT,
                          "%s: positions not strictly increasing at [%lld] (%lld after %lld)",
                          pw, (long long)i, (long long)l.positions[i],
                          (long long)l.positions[i - 1]);
      }
    }
  }
  if (pdset >= 0) H5Dclose(pdset);
  if (!rc) rc = qkv__read_tensor(g, gpath, "Q", l.n_positions, m->n_heads, m->head_dim, &l.Q,
                                 NULL, f->path, err);
  if (!rc && want_pre_rope) {
    if (!kv_h5_exists(g, "K_pre_rope")) {
      rc = kv_error_set(err, KV_ENOENT, "%s/K_pre_rope: missing dataset (recorded without "
                        "pre-RoPE keys)", what);
    } else {
      rc = qkv__read_tensor(g, gpath, "K_pre_rope", l.n_tokens, m->n_kv_heads, m->head_dim,
                            &l.K_pre_rope, NULL, f->path, err);
    }
  }
  H5Gclose(g);
  if (rc) {
    qkv_layer_free(&l);
    return rc;
  }
  *out = l;
  return 0;
}

int qkv_read_tokens(qkv_file *f, int seq, int32_t **tokens, int64_t *n_out, kv_error *err) {
  if (seq < 0 || seq >= f->n_seqs) {
    return kv_error_set(err, KV_ENOENT, "%s: no sequence %d", f->path, seq);
  }
  const qkv__seq *s = &f->seqs[seq];
  char what[4200];
  snprintf(what, sizeof what, "%s: /%s", f->path, s->group);
  if (!s->info.has_tokens) return kv_error_set(err, KV_ENOENT, "%s/tokens: missing dataset", what);
  hid_t g = H5Gopen2(f->fid, s->group, H5P_DEFAULT);
  hsize_t td[1];
  hid_t d = kv_h5_open_dataset(g, "tokens", 1, td, what, err);
  if (d < 0) {
    H5Gclose(g);
    return (int)d;
  }
  int32_t *buf = malloc((size_t)(td[0] ? td[0] : 1) * sizeof *buf);
  int rc = buf ? kv_h5_read_all(d, H5T_NATIVE_INT32, buf, td[0], what, err)
               : kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
  H5Dclose(d);
  H5Gclose(g);
  if (rc) {
    free(buf);
    return rc;
  }
  *tokens = buf;
  *n_out = (int64_t)td[0];
  return 0;
}

int qkv_validate(const char *path, kv_error *err) {
  qkv_file *f;
  int rc = qkv_open(path, &f, err);
  if (rc) return rc;
  for (int s = 0; s < f->n_seqs && !rc; s++) {
    const qkv_seq_info *si = &f->seqs[s].info;
    for (int k = 0; k < si->n_layers && !rc; k++) {
      qkv_layer l;
      rc = qkv_read_layer(f, s, si->layers[k], 0, &l, err);
      if (!rc) qkv_layer_free(&l);
    }
    if (!rc && si->has_tokens) {
      int32_t *tok;
      int64_t nt;
      rc = qkv_read_tokens(f, s, &tok, &nt, err);
      if (!rc) free(tok);
    }
  }
  qkv_close(f);
  return rc;
}

/* ---- writer -------------------------------------------------------------------------------- */

struct qkv_writer {
  char path[4096];
  hid_t fid;
  qkv_model model;
  int n_seqs, cap_seqs;
  int64_t *seq_tokens;
  int rc; /* first error */
};

int qkv_writer_open(const char *path, const qkv_model *model, qkv_writer **out, kv_error *err) {
  *out = NULL;
  if (model->n_heads < 1 || model->n_kv_heads < 1 || model->head_dim < 1 ||
      model->n_heads % model->n_kv_heads || model->n_layers < 1 || model->head_dim > 1024) {
    return kv_error_set(err, KV_EINVAL, "%s: inconsistent model shape (layers %d, heads %d, kv "
                        "heads %d, head_dim %d)", path, model->n_layers, model->n_heads,
                        model->n_kv_heads, model->head_dim);
  }
  qkv_writer *w = calloc(1, sizeof *w);
  if (!w) return kv_error_set(err, KV_ENOMEM, "out of memory");
  snprintf(w->path, sizeof w->path, "%s", path);
  w->model = *model;
  w->fid = kv_h5_create(path, err);
  if (w->fid < 0) {
    int rc = (int)w->fid;
    free(w);
    return rc;
  }
  char what[4200];
  snprintf(what, sizeof what, "%s: /", path);
  hid_t f = w->fid;
  int rc = kv_h5_attr_write_str(f, "format", QKV_FORMAT_NAME, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "schema_version", QKV_SCHEMA_VERSION, what, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "model_name", model->name, what, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "creator", model->creator[0] ? model->creator : "kvlab",
                                     what, err);
  if (!rc && model->tokenizer[0]) {
    rc = kv_h5_attr_write_str(f, "tokenizer", model->tokenizer, what, err);
  }
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_layers", model->n_layers, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_heads", model->n_heads, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_kv_heads", model->n_kv_heads, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "head_dim", model->head_dim, what, err);
  if (!rc) rc = kv_h5_attr_write_f64(f, "rope_theta", model->rope_theta, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "k_post_rope", model->k_post_rope ? 1 : 0, what, err);
  if (rc) {
    H5Fclose(w->fid);
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

int qkv_writer_add_seq(qkv_writer *w, const char *name, const char *text_kind, const char *source,
                       int64_t n_tokens, const int32_t *tokens, kv_error *err) {
  if (w->rc) return kv_error_set(err, w->rc, "%s: writer is in an error state", w->path);
  if (n_tokens < 1 || n_tokens > QKV_MAX_ELEMS) {
    return kv_error_set(err, KV_ERANGE, "%s: sequence '%s': n_tokens %lld out of range", w->path,
                        name, (long long)n_tokens);
  }
  if (w->n_seqs == w->cap_seqs) {
    int nc = w->cap_seqs ? 2 * w->cap_seqs : 8;
    int64_t *nt = realloc(w->seq_tokens, (size_t)nc * sizeof *nt);
    if (!nt) return kv_error_set(err, KV_ENOMEM, "out of memory");
    w->seq_tokens = nt;
    w->cap_seqs = nc;
  }
  char gname[32], what[4200];
  snprintf(gname, sizeof gname, "seq_%d", w->n_seqs);
  snprintf(what, sizeof what, "%s: /%s", w->path, gname);
  hid_t g = H5Gcreate2(w->fid, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return w->rc = kv_error_set(err, KV_EIO, "%s: cannot create group", what);
  int rc = kv_h5_attr_write_str(g, "name", name, what, err);
  if (!rc) rc = kv_h5_attr_write_str(g, "text_kind", text_kind, what, err);
  if (!rc && source && source[0]) rc = kv_h5_attr_write_str(g, "source", source, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(g, "n_tokens", n_tokens, what, err);
  if (!rc) rc = kv_h5_attr_write_i64(g, "index", w->n_seqs, what, err);
  if (!rc && tokens) {
    hsize_t d[1] = {(hsize_t)n_tokens};
    rc = kv_h5_write(g, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d, tokens, what, err);
  }
  H5Gclose(g);
  if (rc) return w->rc = rc;
  w->seq_tokens[w->n_seqs] = n_tokens;
  return w->n_seqs++;
}

/* Checks that every value of x [n] is finite and representable in dtype. */
static int qkv__check_values(const char *name, qkv_dtype dt, size_t n, const float *x,
                             const char *what, kv_error *err) {
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) {
      return kv_error_set(err, KV_EFORMAT, "%s/%s: non-finite value at element %zu", what, name,
                          i);
    }
    if (dt == QKV_DTYPE_F16 && fabsf(x[i]) >= 65520.0f) {
      return kv_error_set(err, KV_ERANGE, "%s/%s: value %g at element %zu overflows fp16", what,
                          name, (double)x[i], i);
    }
  }
  return 0;
}

/* Writes one fp32 tensor as dtype (values already checked), tagging it with a dtype
 * attribute. */
static int qkv__write_tensor(hid_t g, const char *name, qkv_dtype dt, int64_t d0, int64_t d1,
                             int64_t d2, const float *x, const char *what, kv_error *err) {
  size_t n = (size_t)(d0 * d1 * d2);
  hsize_t dims[3] = {(hsize_t)d0, (hsize_t)d1, (hsize_t)d2};
  int rc;
  if (dt == QKV_DTYPE_F32) {
    rc = kv_h5_write(g, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dims, x, what, err);
  } else {
    uint16_t *raw = malloc((n ? n : 1) * sizeof *raw);
    if (!raw) return kv_error_set(err, KV_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
      raw[i] = dt == QKV_DTYPE_BF16 ? kv_f32_to_bf16(x[i]) : kv_f32_to_f16(x[i]);
    }
    if (dt == QKV_DTYPE_F16) {
      hid_t t = qkv__f16_type();
      rc = kv_h5_write(g, name, t, t, 3, dims, raw, what, err);
      H5Tclose(t);
    } else {
      rc = kv_h5_write(g, name, H5T_STD_U16LE, H5T_NATIVE_UINT16, 3, dims, raw, what, err);
    }
    free(raw);
  }
  if (!rc) {
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    char dw[4400];
    snprintf(dw, sizeof dw, "%s/%s", what, name);
    rc = kv_h5_attr_write_str(d, "dtype", qkv_dtype_name(dt), dw, err);
    H5Dclose(d);
  }
  return rc;
}

int qkv_writer_add_layer(qkv_writer *w, int seq, int layer, qkv_dtype dtype, const float *K,
                         const float *V, const float *Q, const int64_t *positions,
                         int64_t n_positions, const float *K_pre_rope, kv_error *err) {
  if (w->rc) return kv_error_set(err, w->rc, "%s: writer is in an error state", w->path);
  if (seq < 0 || seq >= w->n_seqs) {
    return kv_error_set(err, KV_ENOENT, "%s: no sequence %d", w->path, seq);
  }
  if (layer < 0 || layer >= w->model.n_layers) {
    return kv_error_set(err, KV_ERANGE, "%s: layer %d outside [0, %d)", w->path, layer,
                        w->model.n_layers);
  }
  int64_t nt = w->seq_tokens[seq];
  if (n_positions < 1) return kv_error_set(err, KV_EINVAL, "%s: no query positions", w->path);
  for (int64_t i = 0; i < n_positions; i++) {
    if (positions[i] < 0 || positions[i] >= nt || (i && positions[i] <= positions[i - 1])) {
      return kv_error_set(err, KV_EINVAL, "%s: seq %d layer %d: position[%lld] = %lld must be "
                          "increasing and within [0, %lld)", w->path, seq, layer, (long long)i,
                          (long long)positions[i], (long long)nt);
    }
  }
  char gname[64], what[4300];
  snprintf(gname, sizeof gname, "seq_%d/layer_%02d", seq, layer);
  snprintf(what, sizeof what, "%s: /%s", w->path, gname);
  if (kv_h5_exists(w->fid, gname)) {
    return kv_error_set(err, KV_EINVAL, "%s: layer written twice", what);
  }
  const qkv_model *m = &w->model;
  size_t n_kv = (size_t)nt * (size_t)m->n_kv_heads * (size_t)m->head_dim;
  size_t n_q = (size_t)n_positions * (size_t)m->n_heads * (size_t)m->head_dim;
  int rc = qkv__check_values("K", dtype, n_kv, K, what, err);
  if (!rc) rc = qkv__check_values("V", dtype, n_kv, V, what, err);
  if (!rc) rc = qkv__check_values("Q", dtype, n_q, Q, what, err);
  if (!rc && K_pre_rope) rc = qkv__check_values("K_pre_rope", dtype, n_kv, K_pre_rope, what, err);
  if (rc) return rc; /* nothing written: the file stays valid */
  hid_t g = H5Gcreate2(w->fid, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return w->rc = kv_error_set(err, KV_EIO, "%s: cannot create group", what);
  rc = kv_h5_attr_write_i64(g, "layer", layer, what, err);
  if (!rc) rc = qkv__write_tensor(g, "K", dtype, nt, m->n_kv_heads, m->head_dim, K, what, err);
  if (!rc) rc = qkv__write_tensor(g, "V", dtype, nt, m->n_kv_heads, m->head_dim, V, what, err);
  if (!rc) rc = qkv__write_tensor(g, "Q", dtype, n_positions, m->n_heads, m->head_dim, Q, what,
                                  err);
  if (!rc && K_pre_rope) {
    rc = qkv__write_tensor(g, "K_pre_rope", dtype, nt, m->n_kv_heads, m->head_dim, K_pre_rope,
                           what, err);
  }
  if (!rc) {
    hsize_t d[1] = {(hsize_t)n_positions};
    rc = kv_h5_write(g, "positions", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, positions, what, err);
  }
  H5Gclose(g);
  if (rc) w->rc = rc; /* an I/O error mid-layer leaves the file incomplete: sticky */
  return rc;
}

int qkv_writer_close(qkv_writer *w, kv_error *err) {
  if (!w) return 0;
  int rc = w->rc;
  if (H5Fclose(w->fid) < 0 && !rc) {
    rc = kv_error_set(err, KV_EIO, "%s: closing the file failed", w->path);
  } else if (rc) {
    kv_error_set(err, rc, "%s: an earlier write failed", w->path);
  }
  free(w->seq_tokens);
  free(w);
  return rc;
}
