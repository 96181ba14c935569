/* kv_profile.c — the attention profile's tables (kv_profile.h). */
#include "kv_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_h5.h"

int kv_profile_tables_alloc(kv_profile_tables *t, int n_layers, int n_bins, int n_quantiles) {
  const size_t L = (size_t)n_layers, lb = L * (size_t)n_bins;
  t->count = calloc(lb, sizeof *t->count);
  t->frac_q = calloc(lb * (size_t)n_quantiles, sizeof *t->frac_q);
  t->mean_frac = calloc(lb, sizeof(double));
  t->mean_iters = calloc(lb, sizeof(double));
  t->mean_mass = calloc(L, sizeof(double));
  t->mean_err = calloc(L, sizeof(double));
  t->fit_a = calloc(L, sizeof(double));
  t->fit_b = calloc(L, sizeof(double));
  if (!t->count || !t->frac_q || !t->mean_frac || !t->mean_iters || !t->mean_mass ||
      !t->mean_err || !t->fit_a || !t->fit_b) {
    kv_profile_tables_free(t);
    return KV_ENOMEM;
  }
  return 0;
}

void kv_profile_tables_free(kv_profile_tables *t) {
  free(t->count);
  free(t->frac_q);
  free(t->mean_frac);
  free(t->mean_iters);
  free(t->mean_mass);
  free(t->mean_err);
  free(t->fit_a);
  free(t->fit_b);
  memset(t, 0, sizeof *t);
}

void kv_profile_fields(const kv_profile_tables *t, int n_layers, int n_bins, int n_quantiles,
                       kv_profile_field out[KV_PROFILE_N_FIELDS]) {
  const uint64_t L = (uint64_t)n_layers, B = (uint64_t)n_bins, Q = (uint64_t)n_quantiles;
  const kv_profile_field f[KV_PROFILE_N_FIELDS] = {
      {"count", 2, {L, B, 0}, 1, t->count},          {"frac_q", 3, {L, B, Q}, 0, t->frac_q},
      {"mean_frac", 2, {L, B, 0}, 0, t->mean_frac},  {"mean_iters", 2, {L, B, 0}, 0, t->mean_iters},
      {"mean_mass", 1, {L, 0, 0}, 0, t->mean_mass},  {"mean_err", 1, {L, 0, 0}, 0, t->mean_err},
      {"fit_a", 1, {L, 0, 0}, 0, t->fit_a},          {"fit_b", 1, {L, 0, 0}, 0, t->fit_b},
  };
  memcpy(out, f, sizeof f);
}

void kv_profile_timings_free(kv_profile_timings *t) {
  for (int64_t i = 0; t->section && i < t->n; i++) free(t->section[i]);
  for (int64_t i = 0; t->method && i < t->n; i++) free(t->method[i]);
  free(t->section);
  free(t->method);
  free(t->batch);
  free(t->len);
  free(t->time_s);
  free(t->bytes);
  memset(t, 0, sizeof *t);
}

/* Column `name` of n rows into buf (memory type mt). */
static int kv__profile_column(hid_t g, const char *name, hid_t mt, hsize_t n, void *buf,
                              const char *what, kv_error *err) {
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(g, name, 1, dims, what, err);
  if (d < 0) return (int)d;
  int rc = dims[0] == n ? kv_h5_read_all(d, mt, buf, n, what, err)
                        : kv_error_set(err, KV_EFORMAT, "%s/%s: %llu rows, time_s has %llu",
                                       what, name, (unsigned long long)dims[0],
                                       (unsigned long long)n);
  H5Dclose(d);
  return rc;
}

int kv_profile_timings_read_group(int64_t group_id, kv_profile_timings *t, const char *what,
                                  kv_error *err) {
  const hid_t g = (hid_t)group_id;
  memset(t, 0, sizeof *t);
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(g, "time_s", 1, dims, what, err);
  if (d < 0) return (int)d;
  H5Dclose(d);
  const hsize_t n = dims[0], m = n ? n : 1;
  const int sized = kv_h5_exists(g, "batch") && kv_h5_exists(g, "len");
  t->time_s = malloc(m * sizeof *t->time_s);
  t->bytes = malloc(m * sizeof *t->bytes);
  if (sized) {
    t->batch = malloc(m * sizeof *t->batch);
    t->len = malloc(m * sizeof *t->len);
  }
  int rc = t->time_s && t->bytes && (!sized || (t->batch && t->len))
               ? 0 : kv_error_set(err, KV_ENOMEM, "out of memory");
  if (!rc) rc = kv__profile_column(g, "time_s", H5T_NATIVE_DOUBLE, n, t->time_s, what, err);
  if (!rc) rc = kv__profile_column(g, "bytes", H5T_NATIVE_DOUBLE, n, t->bytes, what, err);
  if (!rc && sized) rc = kv__profile_column(g, "batch", H5T_NATIVE_INT64, n, t->batch, what, err);
  if (!rc && sized) rc = kv__profile_column(g, "len", H5T_NATIVE_INT64, n, t->len, what, err);
  if (!rc) rc = kv_h5_read_strings(g, "section", n, &t->section, what, err);
  if (!rc) rc = kv_h5_read_strings(g, "method", n, &t->method, what, err);
  if (!rc && H5Aexists(g, "device") > 0) {
    rc = kv_h5_attr_read_str(g, "device", t->device, sizeof t->device, what, err);
  }
  t->n = (int64_t)n;
  if (rc) kv_profile_timings_free(t);
  return rc;
}

int kv_profile_timings_read_file(const char *path, kv_profile_timings *t, kv_error *err) {
  memset(t, 0, sizeof *t);
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  char what[1200], fmt[64] = "";
  snprintf(what, sizeof what, "%s: /", path);
  int rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, what, err);
  if (!rc && strcmp(fmt, "kvlab-kernel-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format '%s' is not kvlab-kernel-profile", what, fmt);
  }
  int64_t ver = 0;
  if (!rc) rc = kv_h5_attr_read_i64(f, "schema_version", &ver, what, err);
  if (!rc && ver != 1) rc = kv_error_set(err, KV_ENOTSUP, "%s: schema_version %lld not supported",
                                         what, (long long)ver);
  hid_t g = -1;
  if (!rc) {
    if (!kv_h5_exists(f, "attention")) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: no /attention group", path);
    } else {
      g = H5Gopen2(f, "attention", H5P_DEFAULT);
      if (g < 0) rc = kv_error_set(err, KV_EIO, "%s: cannot open /attention", path);
    }
  }
  char dev[sizeof t->device] = "";
  if (!rc && H5Aexists(f, "device") > 0) {
    rc = kv_h5_attr_read_str(f, "device", dev, sizeof dev, what, err);
  }
  snprintf(what, sizeof what, "%s: /attention", path);
  if (!rc) rc = kv_profile_timings_read_group(g, t, what, err);
  if (!rc && !t->device[0]) snprintf(t->device, sizeof t->device, "%s", dev);
  if (g >= 0) H5Gclose(g);
  H5Fclose(f);
  return rc;
}

int kv_profile_timings_write_group(int64_t group_id, const kv_profile_timings *t,
                                   const char *what, kv_error *err) {
  const hid_t g = (hid_t)group_id;
  hsize_t d[1] = {(hsize_t)t->n};
  int rc = kv_h5_write_strings(g, "section", (const char *const *)t->section, d[0], what, err);
  if (!rc) rc = kv_h5_write_strings(g, "method", (const char *const *)t->method, d[0], what, err);
  if (!rc && t->batch) rc = kv_h5_write(g, "batch", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, t->batch, what, err);
  if (!rc && t->len) rc = kv_h5_write(g, "len", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, t->len, what, err);
  if (!rc) rc = kv_h5_write(g, "time_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, t->time_s, what, err);
  if (!rc) rc = kv_h5_write(g, "bytes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, t->bytes, what, err);
  if (!rc && t->device[0]) rc = kv_h5_attr_write_str(g, "device", t->device, what, err);
  return rc;
}
