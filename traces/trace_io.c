#include "trace_io.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_fs.h"
#include "kv_h5.h"
#include "trace_text.h"

#define TRACE_IO_FORMAT_NAME "kvlab-trace"
#define TRACE_IO_CSV_MAGIC "# kvlab-trace-csv"
#define TRACE_IO_CSV_HEADER                                                                  \
  "session_id,session_arrival_ns,turn,arrival_ns,think_ns,input_tokens,new_tokens,"         \
  "output_tokens,hashes"

/* ==== HDF5 ===================================================================================== */

/* Column buffers for the structure-of-arrays layout. */
typedef struct trace__cols {
  int64_t *s_id, *s_arr, *s_first;
  int32_t *s_nt;
  int64_t *u_arr, *u_think, *u_hoff;
  int32_t *u_in, *u_new, *u_out, *u_sess, *u_idx, *u_nh;
} trace__cols;

static void trace__cols_free(trace__cols *c) {
  free(c->s_id);
  free(c->s_arr);
  free(c->s_first);
  free(c->s_nt);
  free(c->u_arr);
  free(c->u_think);
  free(c->u_hoff);
  free(c->u_in);
  free(c->u_new);
  free(c->u_out);
  free(c->u_sess);
  free(c->u_idx);
  free(c->u_nh);
  memset(c, 0, sizeof *c);
}

static int trace__cols_alloc(trace__cols *c, int64_t ns, int64_t nt) {
  size_t s = (size_t)(ns ? ns : 1), u = (size_t)(nt ? nt : 1);
  memset(c, 0, sizeof *c);
  c->s_id = malloc(s * 8);
  c->s_arr = malloc(s * 8);
  c->s_first = malloc(s * 8);
  c->s_nt = malloc(s * 4);
  c->u_arr = malloc(u * 8);
  c->u_think = malloc(u * 8);
  c->u_hoff = malloc(u * 8);
  c->u_in = malloc(u * 4);
  c->u_new = malloc(u * 4);
  c->u_out = malloc(u * 4);
  c->u_sess = malloc(u * 4);
  c->u_idx = malloc(u * 4);
  c->u_nh = malloc(u * 4);
  if (!c->s_id || !c->s_arr || !c->s_first || !c->s_nt || !c->u_arr || !c->u_think ||
      !c->u_hoff || !c->u_in || !c->u_new || !c->u_out || !c->u_sess || !c->u_idx || !c->u_nh) {
    trace__cols_free(c);
    return KV_ENOMEM;
  }
  return 0;
}

static int trace__write_h5_file(hid_t f, const char *path, const trace *t, kv_error *err) {
  trace__cols c;
  if (trace__cols_alloc(&c, t->n_sessions, t->n_turns)) {
    return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  }
  for (int64_t i = 0; i < t->n_sessions; i++) {
    c.s_id[i] = t->sessions[i].id;
    c.s_arr[i] = t->sessions[i].arrival_ns;
    c.s_first[i] = t->sessions[i].first_turn;
    c.s_nt[i] = t->sessions[i].n_turns;
  }
  for (int64_t i = 0; i < t->n_turns; i++) {
    const trace_turn *u = &t->turns[i];
    c.u_arr[i] = u->arrival_ns;
    c.u_think[i] = u->think_ns;
    c.u_hoff[i] = u->hash_off;
    c.u_in[i] = u->input_tokens;
    c.u_new[i] = u->new_tokens;
    c.u_out[i] = u->output_tokens;
    c.u_sess[i] = u->session;
    c.u_idx[i] = u->index;
    c.u_nh[i] = u->n_hashes;
  }
  int rc = 0;
  hid_t gs = -1, gt = -1;
  const char *w = path;
  rc = kv_h5_attr_write_str(f, "format", TRACE_IO_FORMAT_NAME, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "format_version", TRACE_FORMAT_VERSION, w, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "name", t->name, w, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "source", t->source, w, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "tokenizer", t->tokenizer, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "flags", t->flags, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "block_tokens", t->block_tokens, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_sessions", t->n_sessions, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_turns", t->n_turns, w, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_hashes", t->n_hashes, w, err);
  if (!rc) {
    gs = H5Gcreate2(f, "sessions", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    gt = H5Gcreate2(f, "turns", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gs < 0 || gt < 0) rc = kv_error_set(err, KV_EIO, "%s: cannot create groups", path);
  }
  hsize_t ds = (hsize_t)t->n_sessions, dt = (hsize_t)t->n_turns, dh = (hsize_t)t->n_hashes;
  char what[600];
  snprintf(what, sizeof what, "%s: /sessions", path);
#define TRACE__W(loc, nm, ft, mt, dim, buf) \
  if (!rc) rc = kv_h5_write(loc, nm, ft, mt, 1, &(dim), buf, what, err)
  TRACE__W(gs, "id", H5T_STD_I64LE, H5T_NATIVE_INT64, ds, c.s_id);
  TRACE__W(gs, "arrival_ns", H5T_STD_I64LE, H5T_NATIVE_INT64, ds, c.s_arr);
  TRACE__W(gs, "first_turn", H5T_STD_I64LE, H5T_NATIVE_INT64, ds, c.s_first);
  TRACE__W(gs, "n_turns", H5T_STD_I32LE, H5T_NATIVE_INT32, ds, c.s_nt);
  snprintf(what, sizeof what, "%s: /turns", path);
  TRACE__W(gt, "arrival_ns", H5T_STD_I64LE, H5T_NATIVE_INT64, dt, c.u_arr);
  TRACE__W(gt, "think_ns", H5T_STD_I64LE, H5T_NATIVE_INT64, dt, c.u_think);
  TRACE__W(gt, "input_tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_in);
  TRACE__W(gt, "new_tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_new);
  TRACE__W(gt, "output_tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_out);
  TRACE__W(gt, "session", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_sess);
  TRACE__W(gt, "index", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_idx);
  TRACE__W(gt, "n_hashes", H5T_STD_I32LE, H5T_NATIVE_INT32, dt, c.u_nh);
  TRACE__W(gt, "hash_off", H5T_STD_I64LE, H5T_NATIVE_INT64, dt, c.u_hoff);
  snprintf(what, sizeof what, "%s", path);
  TRACE__W(f, "hashes", H5T_STD_U64LE, H5T_NATIVE_UINT64, dh, t->hashes);
#undef TRACE__W
  if (gs >= 0) H5Gclose(gs);
  if (gt >= 0) H5Gclose(gt);
  trace__cols_free(&c);
  return rc;
}

int trace_write(const char *path, const trace *t, kv_error *err) {
  int rc = trace_check(t, err);
  if (rc) {
    kv_error_prefix(err, "%s: refusing to write an invalid trace", path);
    return rc;
  }
  if (t->n_sessions > INT32_MAX) {
    return kv_error_set(err, KV_ERANGE, "%s: more than 2^31-1 sessions", path);
  }
  kv_atomic_file af;
  if ((rc = kv_atomic_reserve(&af, path, err))) return rc;
  hid_t f = kv_h5_create(af.tmp, err);
  if (f < 0) {
    kv_atomic_abort(&af);
    return (int)f;
  }
  rc = trace__write_h5_file(f, path, t, err);
  if (H5Fclose(f) < 0 && !rc) {
    rc = kv_error_set(err, KV_EIO, "%s: cannot close (disk full?)", path);
  }
  if (rc) {
    kv_atomic_abort(&af);
    return rc;
  }
  return kv_atomic_commit(&af, err);
}

/* Opens a 1-D dataset of exactly n elements and reads it as mtype into buf. */
static int trace__read_col(hid_t loc, const char *name, hid_t mtype, void *buf, int64_t n,
                           const char *what, kv_error *err) {
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(loc, name, 1, dims, what, err);
  if (d < 0) return (int)d;
  char w[700];
  snprintf(w, sizeof w, "%s/%s", what, name);
  int rc = kv_h5_read_all(d, mtype, buf, (hsize_t)n, w, err);
  H5Dclose(d);
  return rc;
}

static int trace__read_h5_file(hid_t f, const char *path, trace *t, kv_error *err) {
  char fmt[64];
  int rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, path, err);
  if (rc) return rc;
  if (strcmp(fmt, TRACE_IO_FORMAT_NAME) != 0) {
    return kv_error_set(err, KV_EFORMAT, "%s: not a kvlab trace (format attribute is '%s')", path,
                        fmt);
  }
  int64_t ver, flags, block, ns, nt, nh;
  if ((rc = kv_h5_attr_read_i64(f, "format_version", &ver, path, err))) return rc;
  if (ver < 1 || ver > TRACE_FORMAT_VERSION) {
    return kv_error_set(err, KV_ENOTSUP,
                        "%s: trace format version %lld; this build reads versions 1..%d", path,
                        (long long)ver, TRACE_FORMAT_VERSION);
  }
  if ((rc = kv_h5_attr_read_str(f, "name", t->name, sizeof t->name, path, err)) ||
      (rc = kv_h5_attr_read_str(f, "source", t->source, sizeof t->source, path, err)) ||
      (rc = kv_h5_attr_read_str(f, "tokenizer", t->tokenizer, sizeof t->tokenizer, path, err)) ||
      (rc = kv_h5_attr_read_i64(f, "flags", &flags, path, err)) ||
      (rc = kv_h5_attr_read_i64(f, "block_tokens", &block, path, err)) ||
      (rc = kv_h5_attr_read_i64(f, "n_sessions", &ns, path, err)) ||
      (rc = kv_h5_attr_read_i64(f, "n_turns", &nt, path, err)) ||
      (rc = kv_h5_attr_read_i64(f, "n_hashes", &nh, path, err))) {
    return rc;
  }
  if (flags < 0 || flags > UINT32_MAX || block < 0 || block > INT32_MAX || ns < 0 ||
      ns > INT32_MAX || nt < 0 || nh < 0 || nt > ((int64_t)1 << 40) || nh > ((int64_t)1 << 40)) {
    return kv_error_set(err, KV_EFORMAT,
                        "%s: header out of range (flags %lld, block_tokens %lld, n_sessions "
                        "%lld, n_turns %lld, n_hashes %lld)", path, (long long)flags,
                        (long long)block, (long long)ns, (long long)nt, (long long)nh);
  }
  t->flags = (uint32_t)flags;
  t->block_tokens = (int32_t)block;
  trace__cols c;
  if (trace__cols_alloc(&c, ns, nt)) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  uint64_t *hashes = malloc((size_t)(nh ? nh : 1) * sizeof *hashes);
  if (!hashes) {
    trace__cols_free(&c);
    return kv_error_set(err, KV_ENOMEM, "%s: out of memory (%lld hashes)", path, (long long)nh);
  }
  char what[600];
  hid_t gs = -1, gt = -1;
  if (!kv_h5_exists(f, "sessions") || !kv_h5_exists(f, "turns")) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: missing group /sessions or /turns", path);
  } else {
    gs = H5Gopen2(f, "sessions", H5P_DEFAULT);
    gt = H5Gopen2(f, "turns", H5P_DEFAULT);
    if (gs < 0 || gt < 0) rc = kv_error_set(err, KV_EFORMAT, "%s: cannot open groups", path);
  }
  snprintf(what, sizeof what, "%s: /sessions", path);
#define TRACE__R(loc, nm, mt, buf, n) \
  if (!rc) rc = trace__read_col(loc, nm, mt, buf, n, what, err)
  TRACE__R(gs, "id", H5T_NATIVE_INT64, c.s_id, ns);
  TRACE__R(gs, "arrival_ns", H5T_NATIVE_INT64, c.s_arr, ns);
  TRACE__R(gs, "first_turn", H5T_NATIVE_INT64, c.s_first, ns);
  TRACE__R(gs, "n_turns", H5T_NATIVE_INT32, c.s_nt, ns);
  snprintf(what, sizeof what, "%s: /turns", path);
  TRACE__R(gt, "arrival_ns", H5T_NATIVE_INT64, c.u_arr, nt);
  TRACE__R(gt, "think_ns", H5T_NATIVE_INT64, c.u_think, nt);
  TRACE__R(gt, "input_tokens", H5T_NATIVE_INT32, c.u_in, nt);
  TRACE__R(gt, "new_tokens", H5T_NATIVE_INT32, c.u_new, nt);
  TRACE__R(gt, "output_tokens", H5T_NATIVE_INT32, c.u_out, nt);
  TRACE__R(gt, "session", H5T_NATIVE_INT32, c.u_sess, nt);
  TRACE__R(gt, "index", H5T_NATIVE_INT32, c.u_idx, nt);
  TRACE__R(gt, "n_hashes", H5T_NATIVE_INT32, c.u_nh, nt);
  TRACE__R(gt, "hash_off", H5T_NATIVE_INT64, c.u_hoff, nt);
  snprintf(what, sizeof what, "%s: ", path);
  TRACE__R(f, "hashes", H5T_NATIVE_UINT64, hashes, nh);
#undef TRACE__R
  if (gs >= 0) H5Gclose(gs);
  if (gt >= 0) H5Gclose(gt);
  if (!rc) {
    t->sessions = malloc((size_t)(ns ? ns : 1) * sizeof *t->sessions);
    t->turns = malloc((size_t)(nt ? nt : 1) * sizeof *t->turns);
    if (!t->sessions || !t->turns) {
      rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
    } else {
      t->cap_sessions = t->n_sessions = ns;
      t->cap_turns = t->n_turns = nt;
      for (int64_t i = 0; i < ns; i++) {
        t->sessions[i] = (trace_session){.id = c.s_id[i], .arrival_ns = c.s_arr[i],
                                         .first_turn = c.s_first[i], .n_turns = c.s_nt[i]};
      }
      for (int64_t i = 0; i < nt; i++) {
        t->turns[i] = (trace_turn){.arrival_ns = c.u_arr[i], .think_ns = c.u_think[i],
                                   .input_tokens = c.u_in[i], .new_tokens = c.u_new[i],
                                   .output_tokens = c.u_out[i], .session = c.u_sess[i],
                                   .index = c.u_idx[i], .n_hashes = c.u_nh[i],
                                   .hash_off = c.u_hoff[i]};
      }
      t->hashes = hashes;
      t->cap_hashes = t->n_hashes = nh;
      hashes = NULL;
    }
  }
  free(hashes);
  trace__cols_free(&c);
  if (!rc) {
    rc = trace_check(t, err);
    if (rc) kv_error_prefix(err, "%s", path);
  }
  return rc;
}

int trace_read_h5(const char *path, trace *t, kv_error *err) {
  trace_init(t);
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  int rc = trace__read_h5_file(f, path, t, err);
  H5Fclose(f);
  if (rc) trace_free(t);
  return rc;
}

/* ==== CSV ====================================================================================== */

/* Writes a metadata value with '%', '\n' and '\r' percent-escaped, so that it stays on one line. */
static void trace__csv_meta(FILE *f, const char *key, const char *v) {
  fprintf(f, "# %s: ", key);
  for (const char *p = v; *p; p++) {
    if (*p == '%' || *p == '\n' || *p == '\r') fprintf(f, "%%%02X", (unsigned char)*p);
    else fputc(*p, f);
  }
  fputc('\n', f);
}

int trace_write_csv_stream(FILE *f, const trace *t, kv_error *err) {
  int rc = trace_check(t, err);
  if (rc) return rc;
  fprintf(f, "%s %d\n", TRACE_IO_CSV_MAGIC, TRACE_FORMAT_VERSION);
  trace__csv_meta(f, "name", t->name);
  trace__csv_meta(f, "source", t->source);
  trace__csv_meta(f, "tokenizer", t->tokenizer);
  fprintf(f, "# flags: %u\n# block_tokens: %d\n", (unsigned)t->flags, (int)t->block_tokens);
  /* the counts let a reader tell a file cut at a row boundary from a complete one */
  fprintf(f, "# sessions: %lld\n# turns: %lld\n", (long long)t->n_sessions, (long long)t->n_turns);
  fprintf(f, "%s\n", TRACE_IO_CSV_HEADER);
  for (int64_t i = 0; i < t->n_sessions; i++) {
    const trace_session *s = &t->sessions[i];
    if (s->n_turns == 0) {
      fprintf(f, "%" PRId64 ",%" PRId64 ",,,,,,,\n", s->id, s->arrival_ns);
      continue;
    }
    for (int32_t k = 0; k < s->n_turns; k++) {
      const trace_turn *u = &t->turns[s->first_turn + k];
      fprintf(f, "%" PRId64 ",%" PRId64 ",%d,%" PRId64 ",%" PRId64 ",%d,%d,%d,", s->id,
              s->arrival_ns, (int)u->index, u->arrival_ns, u->think_ns, (int)u->input_tokens,
              (int)u->new_tokens, (int)u->output_tokens);
      const uint64_t *h = trace_turn_hashes(t, u);
      for (int32_t j = 0; j < u->n_hashes; j++) {
        fprintf(f, j ? " %" PRIu64 : "%" PRIu64, h[j]);
      }
      fputc('\n', f);
    }
  }
  if (ferror(f)) return kv_error_set(err, KV_EIO, "write error");
  return 0;
}

int trace_write_csv(const char *path, const trace *t, kv_error *err) {
  kv_atomic_file af;
  int rc = kv_atomic_open(&af, path, err);
  if (rc) return rc;
  rc = trace_write_csv_stream(af.f, t, err);
  if (rc) {
    kv_atomic_abort(&af);
    kv_error_prefix(err, "%s", path);
    return rc;
  }
  return kv_atomic_commit(&af, err);
}

/* Undoes trace__csv_meta's escaping into dst (cap bytes). */
static int trace__csv_unescape(const char *v, char *dst, size_t cap) {
  size_t n = 0;
  for (const char *p = v; *p; p++) {
    char c = *p;
    if (c == '%') {
      unsigned hi, lo;
      char h = p[1], l = h ? p[2] : 0;
      hi = (h >= '0' && h <= '9') ? (unsigned)(h - '0') : (h >= 'A' && h <= 'F') ? (unsigned)(h - 'A' + 10) : 99;
      lo = (l >= '0' && l <= '9') ? (unsigned)(l - '0') : (l >= 'A' && l <= 'F') ? (unsigned)(l - 'A' + 10) : 99;
      if (hi > 15 || lo > 15) return KV_EFORMAT;
      c = (char)(hi * 16 + lo);
      p += 2;
    }
    if (n + 1 >= cap) return KV_ERANGE;
    dst[n++] = c;
  }
  dst[n] = '\0';
  return 0;
}

/* Parses one "# key: value" metadata line into t; the declared counts go to want[2]
 * (sessions, turns). */
static int trace__csv_meta_line(const char *line, const char *name, int64_t lineno, trace *t,
                                int64_t *want, kv_error *err) {
  const char *p = line + 1;
  while (*p == ' ') p++;
  const char *colon = strchr(p, ':');
  if (!colon) return 0; /* a free comment */
  size_t klen = (size_t)(colon - p);
  const char *v = colon + 1;
  if (*v == ' ') v++;
  char *dst = NULL;
  size_t cap = 0;
  if (klen == 4 && !strncmp(p, "name", 4)) dst = t->name, cap = sizeof t->name;
  else if (klen == 6 && !strncmp(p, "source", 6)) dst = t->source, cap = sizeof t->source;
  else if (klen == 9 && !strncmp(p, "tokenizer", 9)) dst = t->tokenizer, cap = sizeof t->tokenizer;
  if (dst) {
    int rc = trace__csv_unescape(v, dst, cap);
    if (rc == KV_ERANGE) {
      return kv_error_set(err, rc, "%s:%lld: metadata value longer than %zu bytes", name,
                          (long long)lineno, cap - 1);
    }
    if (rc) return kv_error_set(err, rc, "%s:%lld: bad %%-escape in metadata", name,
                                (long long)lineno);
    return 0;
  }
  int64_t x;
  if (klen == 5 && !strncmp(p, "flags", 5)) {
    if (trace_parse_i64(v, &x) || x < 0 || x > UINT32_MAX) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: flags '%s' is not a 32-bit unsigned integer",
                          name, (long long)lineno, v);
    }
    t->flags = (uint32_t)x;
  } else if (klen == 12 && !strncmp(p, "block_tokens", 12)) {
    if (trace_parse_i64(v, &x) || x < 0 || x > INT32_MAX) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: block_tokens '%s' is not in [0, 2^31)", name,
                          (long long)lineno, v);
    }
    t->block_tokens = (int32_t)x;
  } else if ((klen == 8 && !strncmp(p, "sessions", 8)) || (klen == 5 && !strncmp(p, "turns", 5))) {
    if (trace_parse_i64(v, &x) || x < 0) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: %.*s '%s' is not a count", name,
                          (long long)lineno, (int)klen, p, v);
    }
    want[klen == 5] = x;
  }
  return 0;
}

/* Parses the space-separated hash list into *buf (grown as needed); returns the count or <0. */
static int64_t trace__csv_hashes(char *s, uint64_t **buf, int64_t *cap) {
  int64_t n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(s, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    if (n == *cap) {
      int64_t nc = *cap ? *cap * 2 : 64;
      uint64_t *nb = realloc(*buf, (size_t)nc * sizeof *nb);
      if (!nb) return KV_ENOMEM;
      *buf = nb;
      *cap = nc;
    }
    if (trace_parse_u64(tok, &(*buf)[n])) return KV_EFORMAT;
    n++;
    if (n > INT32_MAX) return KV_ERANGE;
  }
  return n;
}

/* Checks the first line: TRACE_IO_CSV_MAGIC and a version this build reads. */
static int trace__csv_magic(const char *line, const char *name, long long ln, kv_error *err) {
  size_t ml = strlen(TRACE_IO_CSV_MAGIC);
  int64_t ver;
  if (strncmp(line, TRACE_IO_CSV_MAGIC, ml) != 0 || trace_parse_i64(line + ml, &ver)) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: not a kvlab trace CSV (first line must be "
                        "'%s <version>')", name, ln, TRACE_IO_CSV_MAGIC);
  }
  if (ver < 1 || ver > TRACE_FORMAT_VERSION) {
    return kv_error_set(err, KV_ENOTSUP, "%s:%lld: trace CSV version %lld; this build reads "
                        "versions 1..%d", name, ln, (long long)ver, TRACE_FORMAT_VERSION);
  }
  return 0;
}

/* Parses the integer fields of a data row (fld: its 9 fields) into v[0..7]. *empty = 1 for a
 * session row without turns (empty turn index; every turn field must then be empty, and v[2..7]
 * are left unset). KV_EFORMAT naming the line and field otherwise. */
static int trace__csv_row_numbers(char *const *fld, const char *name, long long ln, int64_t *v,
                                  int *empty, kv_error *err) {
  static const char *const names[8] = {"session_id", "session_arrival_ns", "turn",
                                       "arrival_ns", "think_ns", "input_tokens",
                                       "new_tokens", "output_tokens"};
  *empty = fld[2][0] == '\0';
  for (int i = 0; i < (*empty ? 2 : 8); i++) {
    if (trace_parse_i64(fld[i], &v[i])) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: %s '%s' is not an integer", name, ln,
                          names[i], fld[i]);
    }
  }
  if (*empty && (fld[3][0] || fld[4][0] || fld[5][0] || fld[6][0] || fld[7][0] || fld[8][0])) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: a row without a turn index must have empty "
                        "turn fields", name, ln);
  }
  return 0;
}

int trace_read_csv_stream(FILE *f, const char *name, trace *t, kv_error *err) {
  trace_init(t);
  trace_lines lr;
  int rc = trace_lines_init(&lr, f, name, 0, err);
  if (rc) return rc;
  uint64_t *hbuf = NULL;
  int64_t hcap = 0;
  int seen_magic = 0, seen_header = 0;
  int64_t prev_sid = 0;
  int prev_turn = -1; /* turn index of the previous row; -1 none/empty session */
  int sess_open = 0;
  int64_t want[2] = {-1, -1}; /* declared sessions, turns */
  int more;
  while ((more = trace_lines_next(&lr, err)) == 1) {
    rc = 0;
    long long ln = (long long)lr.lineno;
    if (lr.has_nul) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: NUL byte in line", name, ln);
      break;
    }
    if (lr.too_long) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: line longer than %zu bytes", name, ln,
                        lr.max_len);
      break;
    }
    char *line = lr.line;
    if (!seen_magic) {
      if ((rc = trace__csv_magic(line, name, ln, err))) break;
      seen_magic = 1;
      continue;
    }
    if (lr.unterminated) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: the last line has no newline: the file is cut "
                        "short", name, ln);
      break;
    }
    if (line[0] == '#') {
      if (seen_header) continue;
      if ((rc = trace__csv_meta_line(line, name, lr.lineno, t, want, err))) break;
      continue;
    }
    if (!seen_header) {
      if (strcmp(line, TRACE_IO_CSV_HEADER) != 0) {
        rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: expected the header '%s'", name, ln,
                          TRACE_IO_CSV_HEADER);
        break;
      }
      seen_header = 1;
      continue;
    }
    if (line[0] == '\0') continue;
    char *fld[10];
    int nf = trace_csv_split(line, fld, 10);
    if (nf != 9) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: expected 9 fields, found %s%d", name, ln,
                        nf < 0 ? "more than " : "", nf < 0 ? 9 : nf);
      break;
    }
    int64_t v[8]; /* v[0] session_id, v[1] session_arrival_ns, v[2..7] the turn's numbers */
    int empty = 0;
    if ((rc = trace__csv_row_numbers(fld, name, ln, v, &empty, err))) break;
    int64_t sid = v[0], sarr = v[1];
    if (empty || v[2] == 0) { /* a new session: without turns, or with this row as turn 0 */
      int64_t r = trace_add_session(t, sid, sarr, err);
      if (r < 0) {
        rc = (int)r;
        kv_error_prefix(err, "%s:%lld", name, ln);
        break;
      }
      sess_open = !empty;
      if (empty) {
        prev_turn = -1;
        continue;
      }
    } else if (!sess_open || sid != prev_sid || v[2] != prev_turn + 1 ||
               sarr != t->sessions[t->n_sessions - 1].arrival_ns) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: turn %lld of session %lld does not follow "
                        "turn %d of the same session on the previous row", name, ln,
                        (long long)v[2], (long long)sid, prev_turn);
      break;
    }
    int64_t nh = trace__csv_hashes(fld[8], &hbuf, &hcap);
    if (nh < 0) {
      rc = nh == KV_ENOMEM ? kv_error_set(err, KV_ENOMEM, "%s: out of memory", name)
                           : kv_error_set(err, KV_EFORMAT, "%s:%lld: bad hash list", name, ln);
      break;
    }
    int64_t r = trace_add_turn(t, v[3], v[4], v[5], v[6], v[7], hbuf, (int32_t)nh, err);
    if (r < 0) {
      rc = (int)r;
      kv_error_prefix(err, "%s:%lld", name, ln);
      break;
    }
    prev_sid = sid;
    prev_turn = (int)v[2];
  }
  if (more < 0) rc = more;
  if (rc == 0 && !seen_header) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: no header line (empty or truncated file)", name);
  }
  if (rc == 0 && ((want[0] >= 0 && want[0] != t->n_sessions) ||
                  (want[1] >= 0 && want[1] != t->n_turns))) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: the header declares %lld sessions and %lld turns, the "
                      "rows hold %lld and %lld: the file is cut short or was edited", name,
                      (long long)want[0], (long long)want[1], (long long)t->n_sessions,
                      (long long)t->n_turns);
  }
  if (rc == 0) {
    rc = trace_check(t, err);
    if (rc) kv_error_prefix(err, "%s", name);
  }
  free(hbuf);
  trace_lines_free(&lr);
  if (rc) trace_free(t);
  return rc;
}

int trace_read_csv(const char *path, trace *t, kv_error *err) {
  trace_init(t);
  FILE *f = fopen(path, "rb");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  kv_fs_note_input(path);
  int rc = trace_read_csv_stream(f, path, t, err);
  fclose(f);
  return rc;
}

int trace_read(const char *path, trace *t, kv_error *err) {
  trace_init(t);
  FILE *f = fopen(path, "rb");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  unsigned char sig[8] = {0};
  size_t n = fread(sig, 1, 8, f);
  fclose(f);
  static const unsigned char h5sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (n == 8 && memcmp(sig, h5sig, 8) == 0) return trace_read_h5(path, t, err);
  return trace_read_csv(path, t, err);
}
