/* Tests of the Q/K/V HDF5 files (kernels/qkv.h): round trips in every dtype, the synthetic writer,
 * and the reader's answer to damaged or inconsistent files — each must be a clear error naming
 * the file and dataset, never a crash or a short read. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_h5.h"
#include "kv_half.h"
#include "kv_rng.h"
#include "qkv.h"
#include "test.h"

enum { T = 40, HKV = 2, HQ = 4, D = 8, P = 5 };

typedef struct {
  float K[T * HKV * D], V[T * HKV * D], Q[P * HQ * D], Kp[T * HKV * D];
  int64_t pos[P];
  int32_t tok[T];
} fixture;

static void fixture_fill(fixture *f, uint64_t seed) {
  kv_rng r;
  kv_rng_seed(&r, seed);
  for (int i = 0; i < T * HKV * D; i++) {
    f->K[i] = (float)kv_rng_normal(&r);
    f->V[i] = (float)kv_rng_normal(&r);
    f->Kp[i] = (float)kv_rng_normal(&r);
  }
  for (int i = 0; i < P * HQ * D; i++) f->Q[i] = (float)kv_rng_normal(&r);
  for (int i = 0; i < P; i++) f->pos[i] = 20 + 4 * i;
  for (int i = 0; i < T; i++) f->tok[i] = 1000 + i;
}

static qkv_model fixture_model(void) {
  qkv_model m = {0};
  snprintf(m.name, sizeof m.name, "test-model");
  snprintf(m.creator, sizeof m.creator, "test_qkv");
  snprintf(m.tokenizer, sizeof m.tokenizer, "bytes");
  m.n_layers = 4;
  m.n_heads = HQ;
  m.n_kv_heads = HKV;
  m.head_dim = D;
  m.rope_theta = 10000.0;
  m.k_post_rope = 1;
  return m;
}

/* Writes a valid two-sequence file (layers 0 and 3 of seq 0, layer 1 of seq 1). */
static int write_fixture(const char *path, qkv_dtype dt, const fixture *f, kv_error *e) {
  qkv_model m = fixture_model();
  qkv_writer *w;
  int rc = qkv_writer_open(path, &m, &w, e);
  if (rc) return rc;
  if (qkv_writer_add_seq(w, "prose-0", "prose", "unit test", T, f->tok, e) != 0) return -1;
  if ((rc = qkv_writer_add_layer(w, 0, 0, dt, f->K, f->V, f->Q, f->pos, P, f->Kp, e))) return rc;
  if ((rc = qkv_writer_add_layer(w, 0, 3, dt, f->V, f->K, f->Q, f->pos, P, NULL, e))) return rc;
  if (qkv_writer_add_seq(w, "code-0", "code", NULL, T, NULL, e) != 1) return -1;
  if ((rc = qkv_writer_add_layer(w, 1, 1, dt, f->K, f->V, f->Q, f->pos, P, NULL, e))) return rc;
  return qkv_writer_close(w, e);
}

static double dtype_tol(qkv_dtype dt) {
  return dt == QKV_DTYPE_F32 ? 0.0 : dt == QKV_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 128;
}

static void check_roundtrip(qkv_dtype dt) {
  static fixture f;
  fixture_fill(&f, 7);
  const char *path = test_tmp_path("rt.h5");
  kv_error e = {0};
  REQUIRE_OK(write_fixture(path, dt, &f, &e), &e);
  qkv_file *qf;
  REQUIRE_OK(qkv_open(path, &qf, &e), &e);
  const qkv_model *m = qkv_file_model(qf);
  CHECK(strcmp(m->name, "test-model") == 0);
  CHECK(strcmp(m->tokenizer, "bytes") == 0);
  CHECK_EQ_INT(m->n_layers, 4);
  CHECK_EQ_INT(m->n_heads, HQ);
  CHECK_EQ_INT(m->k_post_rope, 1);
  CHECK_NEAR(m->rope_theta, 10000.0, 0, 0);
  REQUIRE_EQ_INT(qkv_file_n_seqs(qf), 2);
  const qkv_seq_info *s0 = qkv_file_seq(qf, 0), *s1 = qkv_file_seq(qf, 1);
  CHECK(strcmp(s0->name, "prose-0") == 0 && strcmp(s0->text_kind, "prose") == 0);
  CHECK(strcmp(s0->source, "unit test") == 0 && s1->source[0] == '\0');
  CHECK_EQ_INT(s0->n_layers, 2);
  CHECK(s0->n_layers == 2 && s0->layers[0] == 0 && s0->layers[1] == 3);
  CHECK(s1->n_layers == 1 && s1->layers[0] == 1);
  CHECK(s0->has_tokens && !s1->has_tokens);
  qkv_layer l;
  REQUIRE_OK(qkv_read_layer(qf, 0, 0, 1, &l, &e), &e);
  CHECK_EQ_INT(l.n_tokens, T);
  CHECK_EQ_INT(l.n_positions, P);
  CHECK_EQ_INT(l.dtype, dt);
  double tol = dtype_tol(dt);
  int bad = 0;
  for (int i = 0; i < T * HKV * D; i++) {
    if (fabs(l.K[i] - f.K[i]) > tol * fabs(f.K[i]) + 1e-7) bad++;
    if (fabs(l.V[i] - f.V[i]) > tol * fabs(f.V[i]) + 1e-7) bad++;
    if (fabs(l.K_pre_rope[i] - f.Kp[i]) > tol * fabs(f.Kp[i]) + 1e-7) bad++;
  }
  for (int i = 0; i < P * HQ * D; i++) {
    if (fabs(l.Q[i] - f.Q[i]) > tol * fabs(f.Q[i]) + 1e-7) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  for (int i = 0; i < P; i++) CHECK_EQ_INT(l.positions[i], f.pos[i]);
  /* Values converted exactly as the host conversion does (the file stores those bits). */
  if (dt == QKV_DTYPE_F16) CHECK(l.K[5] == kv_f16_to_f32(kv_f32_to_f16(f.K[5])));
  if (dt == QKV_DTYPE_BF16) CHECK(l.K[5] == kv_bf16_to_f32(kv_f32_to_bf16(f.K[5])));
  qkv_layer_free(&l);
  /* layer 3 has no pre-RoPE keys; layer 2 was not recorded; seq 5 does not exist */
  CHECK_EQ_INT(qkv_read_layer(qf, 0, 3, 1, &l, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "K_pre_rope");
  CHECK_EQ_INT(qkv_read_layer(qf, 0, 2, 0, &l, &e), KV_ENOENT);
  CHECK_EQ_INT(qkv_read_layer(qf, 5, 0, 0, &l, &e), KV_ENOENT);
  int32_t *tok;
  int64_t nt;
  REQUIRE_OK(qkv_read_tokens(qf, 0, &tok, &nt, &e), &e);
  CHECK(nt == T && tok[3] == 1003);
  free(tok);
  qkv_close(qf);
  CHECK_OK(qkv_validate(path, &e), &e);
  remove(path);
}

static void test_roundtrip_fp32(void) { check_roundtrip(QKV_DTYPE_F32); }
static void test_roundtrip_fp16(void) { check_roundtrip(QKV_DTYPE_F16); }
static void test_roundtrip_bf16(void) { check_roundtrip(QKV_DTYPE_BF16); }

static void test_writer_rejects_bad_values(void) {
  static fixture f;
  fixture_fill(&f, 3);
  const char *path = test_tmp_path("wbad.h5");
  kv_error e = {0};
  qkv_model m = fixture_model();
  qkv_writer *w;
  REQUIRE_OK(qkv_writer_open(path, &m, &w, &e), &e);
  REQUIRE(qkv_writer_add_seq(w, "s", "prose", NULL, T, NULL, &e) == 0);
  f.K[17] = NAN;
  CHECK_EQ_INT(qkv_writer_add_layer(w, 0, 0, QKV_DTYPE_F32, f.K, f.V, f.Q, f.pos, P, NULL, &e),
               KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "non-finite");
  f.K[17] = 1e6f;
  CHECK_EQ_INT(qkv_writer_add_layer(w, 0, 0, QKV_DTYPE_F16, f.K, f.V, f.Q, f.pos, P, NULL, &e),
               KV_ERANGE);
  f.K[17] = 0.5f;
  f.pos[2] = f.pos[1];
  CHECK_EQ_INT(qkv_writer_add_layer(w, 0, 0, QKV_DTYPE_F32, f.K, f.V, f.Q, f.pos, P, NULL, &e),
               KV_EINVAL);
  f.pos[2] = f.pos[1] + 1;
  CHECK_EQ_INT(qkv_writer_add_layer(w, 0, 9, QKV_DTYPE_F32, f.K, f.V, f.Q, f.pos, P, NULL, &e),
               KV_ERANGE);
  /* A rejected layer leaves the file valid: write a good one and read everything back. */
  CHECK_OK(qkv_writer_add_layer(w, 0, 0, QKV_DTYPE_F32, f.K, f.V, f.Q, f.pos, P, NULL, &e), &e);
  CHECK_OK(qkv_writer_close(w, &e), &e);
  CHECK_OK(qkv_validate(path, &e), &e);
  m.n_kv_heads = 3; /* 4 % 3 != 0 */
  CHECK_EQ_INT(qkv_writer_open(path, &m, &w, &e), KV_EINVAL);
  remove(path);
}

/* ---- damaged files ------------------------------------------------------------------------ */

/* Writes the fixture as fp32 and reopens it read-write for tampering. */
static hid_t tamper_open(const char *path) {
  static fixture f;
  fixture_fill(&f, 11);
  kv_error e = {0};
  if (write_fixture(path, QKV_DTYPE_F32, &f, &e)) return -1;
  return H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
}

/* Expects qkv_validate to fail with `code` and a message containing both needles. */
static void expect_invalid(const char *path, int code, const char *n1, const char *n2) {
  kv_error e = {0};
  int rc = qkv_validate(path, &e);
  CHECK_EQ_INT(rc, code);
  CHECK_STR_CONTAINS(e.msg, path);
  if (n1) CHECK_STR_CONTAINS(e.msg, n1);
  if (n2) CHECK_STR_CONTAINS(e.msg, n2);
}

static void test_missing_dataset(void) {
  const char *p = test_tmp_path("nov.h5");
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  H5Ldelete(f, "seq_0/layer_03/V", H5P_DEFAULT);
  H5Fclose(f);
  expect_invalid(p, KV_ENOENT, "/seq_0/layer_03/V", "missing dataset");
  remove(p);
}

static void test_wrong_shape(void) {
  const char *p = test_tmp_path("shape.h5");
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  H5Ldelete(f, "seq_1/layer_01/K", H5P_DEFAULT);
  float buf[(T - 1) * HKV * D] = {0};
  hsize_t dims[3] = {T - 1, HKV, D};
  kv_error e = {0};
  hid_t g = H5Gopen2(f, "seq_1/layer_01", H5P_DEFAULT);
  kv_h5_write(g, "K", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dims, buf, "x", &e);
  H5Gclose(g);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_1/layer_01/K", "shape [39, 2, 8], expected [40, 2, 8]");
  remove(p);
}

static void test_wrong_rank(void) {
  const char *p = test_tmp_path("rank.h5");
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  H5Ldelete(f, "seq_0/layer_00/Q", H5P_DEFAULT);
  float buf[P * HQ * D] = {0};
  hsize_t dims[2] = {P, HQ * D};
  kv_error e = {0};
  hid_t g = H5Gopen2(f, "seq_0/layer_00", H5P_DEFAULT);
  kv_h5_write(g, "Q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, buf, "x", &e);
  H5Gclose(g);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_0/layer_00/Q", "rank 2, expected 3");
  remove(p);
}

static void test_nan_value(void) {
  const char *p = test_tmp_path("nan.h5");
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, "seq_0/layer_03/V", H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hsize_t start[3] = {7, 1, 2}, count[3] = {1, 1, 1};
  H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
  hid_t ms = H5Screate_simple(1, count, NULL);
  float nan = NAN;
  H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &nan);
  H5Sclose(ms);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_0/layer_03/V", "non-finite value nan at [7, 1, 2]");
  remove(p);
}

static void test_bad_positions(void) {
  const char *p = test_tmp_path("pos.h5");
  for (int variant = 0; variant < 2; variant++) {
    hid_t f = tamper_open(p);
    REQUIRE(f >= 0);
    hid_t d = H5Dopen2(f, "seq_1/layer_01/positions", H5P_DEFAULT);
    int64_t pos[P] = {20, 24, 24, 32, 36};
    if (variant == 1) { /* increasing, but the last is out of range */
      pos[2] = 28;
      pos[4] = T;
    }
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, pos);
    H5Dclose(d);
    H5Fclose(f);
    if (variant == 0) {
      expect_invalid(p, KV_EFORMAT, "/seq_1/layer_01/positions", "not strictly increasing at [2]");
    } else {
      expect_invalid(p, KV_ERANGE, "/seq_1/layer_01/positions", "position[4] = 40 is outside");
    }
  }
  remove(p);
}

static void test_inconsistent_heads_and_version(void) {
  const char *p = test_tmp_path("heads.h5");
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  kv_error e = {0};
  kv_h5_attr_write_i64(f, "n_kv_heads", 3, "x", &e);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "inconsistent head counts", "n_kv_heads 3");
  f = tamper_open(p);
  kv_h5_attr_write_i64(f, "n_heads", 8, "x", &e); /* Q has 4 heads */
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_0/layer_00/Q", "shape [5, 4, 8], expected [*, 8, 8]");
  f = tamper_open(p);
  kv_h5_attr_write_i64(f, "schema_version", 2, "x", &e);
  H5Fclose(f);
  expect_invalid(p, KV_ENOTSUP, "schema_version 2", NULL);
  f = tamper_open(p);
  H5Adelete(f, "head_dim");
  H5Fclose(f);
  expect_invalid(p, KV_ENOENT, "missing attribute 'head_dim'", NULL);
  remove(p);
}

/* The documented index and layer attributes are checked; string attributes up to 255 bytes are
 * read whole, longer ones are errors (never truncated). */
static void test_index_layer_and_long_strings(void) {
  const char *p = test_tmp_path("attrs.h5");
  kv_error e = {0};
  hid_t f = tamper_open(p);
  REQUIRE(f >= 0);
  hid_t g = H5Gopen2(f, "seq_1", H5P_DEFAULT);
  H5Adelete(g, "index");
  kv_h5_attr_write_i64(g, "index", 0, "x", &e);
  H5Gclose(g);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_1", "attribute index = 0, the group is seq_1");
  f = tamper_open(p);
  g = H5Gopen2(f, "seq_0/layer_03", H5P_DEFAULT);
  H5Adelete(g, "layer");
  kv_h5_attr_write_i64(g, "layer", 2, "x", &e);
  H5Gclose(g);
  H5Fclose(f);
  expect_invalid(p, KV_EFORMAT, "/seq_0/layer_03", "attribute layer = 2, the group is layer 3");
  char kind[301];
  for (int len = 200; len <= 300; len += 100) {
    memset(kind, 'k', (size_t)len);
    kind[len] = '\0';
    f = tamper_open(p);
    g = H5Gopen2(f, "seq_0", H5P_DEFAULT);
    H5Adelete(g, "text_kind");
    kv_h5_attr_write_str(g, "text_kind", kind, "x", &e);
    H5Gclose(g);
    H5Fclose(f);
    if (len == 200) {
      qkv_file *q = NULL;
      REQUIRE_OK(qkv_open(p, &q, &e), &e);
      CHECK_EQ_INT((int)strlen(qkv_file_seq(q, 0)->text_kind), 200);
      qkv_close(q);
    } else {
      expect_invalid(p, KV_ERANGE, "text_kind", "longer than 255 bytes");
    }
  }
  remove(p);
}

static void test_unsupported_types(void) {
  const char *p = test_tmp_path("types.h5");
  kv_error e = {0};
  for (int variant = 0; variant < 2; variant++) {
    hid_t f = tamper_open(p);
    REQUIRE(f >= 0);
    H5Ldelete(f, "seq_0/layer_00/K", H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "seq_0/layer_00", H5P_DEFAULT);
    hsize_t dims[3] = {T, HKV, D};
    if (variant == 0) {
      static int32_t buf[T * HKV * D];
      kv_h5_write(g, "K", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, dims, buf, "x", &e);
    } else {
      static uint16_t buf[T * HKV * D]; /* uint16 but no dtype="bf16" tag */
      kv_h5_write(g, "K", H5T_STD_U16LE, H5T_NATIVE_UINT16, 3, dims, buf, "x", &e);
    }
    H5Gclose(g);
    H5Fclose(f);
    if (variant == 0) {
      expect_invalid(p, KV_ENOTSUP, "/seq_0/layer_00/K", "unsupported element type");
    } else {
      expect_invalid(p, KV_EFORMAT, "/seq_0/layer_00/K", "dtype=\"bf16\"");
    }
  }
  remove(p);
}

/* Copies the first `keep` bytes of src to dst. */
static long copy_prefix(const char *src, const char *dst, long keep, long flip_at) {
  FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
  if (!a || !b) return -1;
  long n = 0;
  int c;
  while ((c = fgetc(a)) != EOF && (keep < 0 || n < keep)) {
    if (n >= flip_at && n < flip_at + 64) c ^= 0x5a;
    fputc(c, b);
    n++;
  }
  fclose(a);
  fclose(b);
  return n;
}

static void test_damaged_and_truncated_files(void) {
  const char *good = test_tmp_path("good.h5");
  const char *bad = test_tmp_path("damaged.h5");
  static fixture f;
  fixture_fill(&f, 5);
  kv_error e = {0};
  REQUIRE_OK(write_fixture(good, QKV_DTYPE_F16, &f, &e), &e);
  FILE *fp = fopen(good, "rb");
  fseek(fp, 0, SEEK_END);
  long size = ftell(fp);
  fclose(fp);
  /* Truncations at many points: each must be an error, never a crash or a success. */
  int errors = 0, tries = 0;
  for (long keep = 0; keep < size; keep += size / 23 + 1) {
    copy_prefix(good, bad, keep, -1000);
    tries++;
    int rc = qkv_validate(bad, &e);
    if (rc != 0) {
      errors++;
      if (!strstr(e.msg, bad)) TEST_FAIL_AT("error does not name the file: %s", e.msg);
    }
  }
  CHECK_EQ_INT(errors, tries);
  /* Byte corruption anywhere: an error or (if only tensor bits changed) a valid read, no crash. */
  for (long at = 0; at < size; at += size / 31 + 1) {
    copy_prefix(good, bad, -1, at);
    int rc = qkv_validate(bad, &e);
    if (rc != 0 && !strstr(e.msg, bad)) TEST_FAIL_AT("error does not name the file: %s", e.msg);
  }
  /* Not an HDF5 file at all; no file. */
  fp = fopen(bad, "w");
  fputs("K,V,Q\n1,2,3\n", fp);
  fclose(fp);
  expect_invalid(bad, KV_EFORMAT, "not an HDF5 file", NULL);
  CHECK_EQ_INT(qkv_validate("/nonexistent/q.h5", &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "/nonexistent/q.h5");
  remove(good);
  remove(bad);
}

static void test_synthetic_deterministic_and_valid(void) {
  const char *a = test_tmp_path("syn_a.h5"), *b = test_tmp_path("syn_b.h5");
  qkv_synth_params p;
  qkv_synth_defaults(&p);
  p.n_tokens = 512;
  p.n_positions = 6;
  p.n_seqs = 2;
  kv_error e = {0};
  REQUIRE_OK(qkv_synth_write(a, &p, &e), &e);
  REQUIRE_OK(qkv_synth_write(b, &p, &e), &e);
  CHECK_OK(qkv_validate(a, &e), &e);
  qkv_file *fa, *fb;
  REQUIRE_OK(qkv_open(a, &fa, &e), &e);
  REQUIRE_OK(qkv_open(b, &fb, &e), &e);
  CHECK_EQ_INT(qkv_file_n_seqs(fa), 2);
  qkv_layer la, lb;
  REQUIRE_OK(qkv_read_layer(fa, 1, 1, 0, &la, &e), &e);
  REQUIRE_OK(qkv_read_layer(fb, 1, 1, 0, &lb, &e), &e);
  size_t nk = (size_t)la.n_tokens * la.n_kv_heads * la.head_dim;
  CHECK(memcmp(la.K, lb.K, nk * sizeof(float)) == 0);
  CHECK(memcmp(la.Q, lb.Q, (size_t)la.n_positions * la.n_heads * la.head_dim * sizeof(float)) == 0);
  CHECK_EQ_INT(la.positions[0], 256);
  CHECK_EQ_INT(la.positions[5], 511);
  qkv_layer_free(&la);
  qkv_layer_free(&lb);
  qkv_close(fa);
  qkv_close(fb);
  p.seed = 2;
  REQUIRE_OK(qkv_synth_write(b, &p, &e), &e);
  REQUIRE_OK(qkv_open(a, &fa, &e), &e);
  REQUIRE_OK(qkv_open(b, &fb, &e), &e);
  REQUIRE_OK(qkv_read_layer(fa, 0, 0, 0, &la, &e), &e);
  REQUIRE_OK(qkv_read_layer(fb, 0, 0, 0, &lb, &e), &e);
  CHECK(memcmp(la.K, lb.K, 64 * sizeof(float)) != 0);
  qkv_layer_free(&la);
  qkv_layer_free(&lb);
  qkv_close(fa);
  qkv_close(fb);
  remove(a);
  remove(b);
}

TEST_LIST = {TEST(test_roundtrip_fp32),
             TEST(test_roundtrip_fp16),
             TEST(test_roundtrip_bf16),
             TEST(test_writer_rejects_bad_values),
             TEST(test_missing_dataset),
             TEST(test_wrong_shape),
             TEST(test_wrong_rank),
             TEST(test_nan_value),
             TEST(test_bad_positions),
             TEST(test_inconsistent_heads_and_version),
             TEST(test_unsupported_types),
             TEST(test_index_layer_and_long_strings),
             TEST(test_damaged_and_truncated_files),
             TEST(test_synthetic_deterministic_and_valid),
             {0}};
TEST_MAIN
