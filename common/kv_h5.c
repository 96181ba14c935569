#include "kv_h5.h"

#include "kv_fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kv_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Walk callback (downward: from the API call inwards): keeps the first message, and the first
 * one that reports a checksum mismatch (the cause that matters when a file is damaged). */
typedef struct kv__h5_descs {
  char first[256], checksum[256];
} kv__h5_descs;

static herr_t kv__h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
  kv__h5_descs *d = data;
  if (!e->desc) return 0;
  if (n == 0) snprintf(d->first, sizeof d->first, "%s", e->desc);
  if (!d->checksum[0] && strstr(e->desc, "checksum")) {
    snprintf(d->checksum, sizeof d->checksum, "%s", e->desc);
  }
  return 0;
}

void kv_h5_append_stack(kv_error *err) {
  if (!err) return;
  kv__h5_descs d = {"", ""};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, kv__h5_walk, &d);
  size_t len = strlen(err->msg);
  if (d.checksum[0]) {
    snprintf(err->msg + len, sizeof err->msg - len,
             ": checksum mismatch, the stored bytes are damaged (HDF5: %s)", d.checksum);
  } else if (d.first[0]) {
    snprintf(err->msg + len, sizeof err->msg - len, " (HDF5: %s)", d.first);
  }
  H5Eclear2(H5E_DEFAULT);
}

hid_t kv_h5_open_read(const char *path, kv_error *err) {
  kv_h5_quiet();
  FILE *probe = fopen(path, "rb");
  if (!probe) return kv_error_set(err, KV_EIO, "%s: cannot open file", path);
  fclose(probe);
  kv_fs_note_input(path);
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return kv_error_set(err, KV_EFORMAT, "%s: not an HDF5 file (or its superblock is damaged)",
                        path);
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    kv_error_set(err, KV_EFORMAT, "%s: HDF5 cannot open the file (damaged or truncated?)", path);
    kv_h5_append_stack(err);
    return KV_EFORMAT;
  }
  return f;
}

/* The HDF5 1.10 format stores access/modification/change/birth times in every object header
 * whose creation property list tracks times, and HDF5 tracks them by default: two runs a second
 * apart would give different bytes. The project stores no times (the same data, the same file),
 * so the process's default file, group and dataset creation lists are set not to track them
 * (HDF5 resolves H5P_DEFAULT to these lists), which also covers callers that create groups with
 * H5P_DEFAULT. Returns 0, or a negative status when HDF5 refuses. */
static int kv__h5_no_times(void) {
  static int done;
  if (done) return 0;
  if (H5Pset_obj_track_times(H5P_FILE_CREATE_DEFAULT, 0) < 0 ||
      H5Pset_obj_track_times(H5P_GROUP_CREATE_DEFAULT, 0) < 0 ||
      H5Pset_obj_track_times(H5P_DATASET_CREATE_DEFAULT, 0) < 0) {
    return KV_EIO;
  }
  done = 1;
  return 0;
}

hid_t kv_h5_create(const char *path, kv_error *err) {
  kv_h5_quiet();
  if (kv__h5_no_times()) {
    kv_error_set(err, KV_EIO, "%s: HDF5 refused to switch off object times", path);
    kv_h5_append_stack(err);
    return KV_EIO;
  }
  /* File format of HDF5 1.8 and later: its superblock, object headers, group and heap metadata
   * carry checksums (the earliest format has none), so damage to the metadata is detected
   * before HDF5 acts on it. Readable by HDF5 >= 1.8 (2008) and h5py. */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    kv_error_set(err, KV_EIO, "%s: cannot set up HDF5 file access", path);
    kv_h5_append_stack(err);
    return KV_EIO;
  }
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f < 0) {
    kv_error_set(err, KV_EIO, "%s: cannot create HDF5 file", path);
    kv_h5_append_stack(err);
    return KV_EIO;
  }
  return f;
}

int kv_h5_exists(hid_t loc, const char *name) {
  /* H5Lexists needs every intermediate group to exist: check prefix by prefix. */
  char buf[1024];
  size_t n = strlen(name);
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, name, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
      buf[i] = c;
      if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
      }
    }
  }
  return 1;
}

static int kv__attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v,
                          const char *what, kv_error *err) {
  if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = 0;
  if (a < 0 || H5Awrite(a, mtype, v) < 0) {
    rc = kv_error_set(err, KV_EIO, "%s: cannot write attribute '%s'", what, name);
    kv_h5_append_stack(err);
  }
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc;
}

int kv_h5_attr_write_i64(hid_t loc, const char *name, int64_t v, const char *what, kv_error *err) {
  return kv__attr_write(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, what, err);
}

int kv_h5_attr_write_f64(hid_t loc, const char *name, double v, const char *what, kv_error *err) {
  return kv__attr_write(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, what, err);
}

int kv_h5_attr_write_str(hid_t loc, const char *name, const char *v, const char *what,
                         kv_error *err) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  int rc = kv__attr_write(loc, name, t, t, v, what, err);
  H5Tclose(t);
  return rc;
}

/* Opens attribute `name` and checks it is a scalar (or one-element) of class cls. */
static hid_t kv__attr_open(hid_t loc, const char *name, H5T_class_t cls, const char *what,
                           kv_error *err) {
  htri_t ex = H5Aexists(loc, name);
  if (ex <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return kv_error_set(err, KV_ENOENT, "%s: missing attribute '%s'", what, name);
  }
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) {
    kv_error_set(err, KV_EFORMAT, "%s: cannot open attribute '%s'", what, name);
    kv_h5_append_stack(err);
    return KV_EFORMAT;
  }
  hid_t t = H5Aget_type(a);
  hid_t sp = H5Aget_space(a);
  H5T_class_t c = H5Tget_class(t);
  hssize_t npts = H5Sget_simple_extent_npoints(sp);
  H5Tclose(t);
  H5Sclose(sp);
  int num_ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) && (c == H5T_INTEGER || c == H5T_FLOAT);
  if (!(c == cls || num_ok)) {
    H5Aclose(a);
    return kv_error_set(err, KV_EFORMAT, "%s: attribute '%s' has the wrong type (expected %s)",
                        what, name, cls == H5T_STRING ? "a string" : "a number");
  }
  if (npts != 1) {
    H5Aclose(a);
    return kv_error_set(err, KV_EFORMAT, "%s: attribute '%s' is not a scalar (%lld values)",
                        what, name, (long long)npts);
  }
  return a;
}

int kv_h5_attr_read_i64(hid_t loc, const char *name, int64_t *v, const char *what, kv_error *err) {
  hid_t a = kv__attr_open(loc, name, H5T_INTEGER, what, err);
  if (a < 0) return (int)a;
  hid_t t = H5Aget_type(a);
  int is_float = H5Tget_class(t) == H5T_FLOAT;
  H5Tclose(t);
  int rc = 0;
  if (is_float) {
    double d;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) < 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: cannot read attribute '%s'", what, name);
    } else if (d != (double)(int64_t)d) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: attribute '%s' = %g is not an integer", what, name,
                        d);
    } else {
      *v = (int64_t)d;
    }
  } else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: cannot read attribute '%s'", what, name);
    kv_h5_append_stack(err);
  }
  H5Aclose(a);
  return rc;
}

int kv_h5_attr_read_f64(hid_t loc, const char *name, double *v, const char *what, kv_error *err) {
  hid_t a = kv__attr_open(loc, name, H5T_FLOAT, what, err);
  if (a < 0) return (int)a;
  int rc = 0;
  if (H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: cannot read attribute '%s'", what, name);
    kv_h5_append_stack(err);
  }
  H5Aclose(a);
  return rc;
}

int kv_h5_attr_read_str(hid_t loc, const char *name, char *buf, size_t cap, const char *what,
                        kv_error *err) {
  hid_t a = kv__attr_open(loc, name, H5T_STRING, what, err);
  if (a < 0) return (int)a;
  hid_t ft = H5Aget_type(a);
  int rc = 0;
  if (H5Tis_variable_str(ft) > 0) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ft));
    char *s = NULL;
    if (H5Aread(a, mt, &s) < 0 || !s) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: cannot read string attribute '%s'", what, name);
    } else if (strlen(s) + 1 > cap) {
      rc = kv_error_set(err, KV_ERANGE, "%s: attribute '%s' is longer than %zu bytes", what,
                        name, cap - 1);
    } else {
      memcpy(buf, s, strlen(s) + 1);
    }
    if (s) H5free_memory(s);
    H5Tclose(mt);
  } else {
    size_t sz = H5Tget_size(ft);
    if (sz + 1 > cap) {
      rc = kv_error_set(err, KV_ERANGE, "%s: attribute '%s' is longer than %zu bytes", what, name,
                        cap - 1);
    } else {
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, sz + 1);
      H5Tset_strpad(mt, H5T_STR_NULLTERM);
      H5Tset_cset(mt, H5Tget_cset(ft));
      if (H5Aread(a, mt, buf) < 0) {
        rc = kv_error_set(err, KV_EFORMAT, "%s: cannot read string attribute '%s'", what, name);
      }
      buf[sz] = '\0';
      H5Tclose(mt);
    }
  }
  H5Tclose(ft);
  H5Aclose(a);
  return rc;
}

int kv_h5_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *buf, const char *what, kv_error *err) {
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  size_t esz = H5Tget_size(ftype);
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(dcpl, 0); /* no modification times: the same data, the same bytes */
  /* HDF5 applies no filter to variable-length data (their bytes live in a heap): such datasets
   * stay contiguous, protected only by the metadata checksums. */
  int vlen = H5Tis_variable_str(ftype) > 0 || H5Tdetect_class(ftype, H5T_VLEN) > 0;
  if (n > 0 && rank >= 1 && !vlen) {
    /* Chunked, so that every chunk carries a Fletcher32 checksum (HDF5 verifies it on read).
     * Chunks of ~256 KiB along the first dimension; a smaller dataset is one chunk. */
    hsize_t chunk[H5S_MAX_RANK];
    hsize_t row = n / dims[0] * esz;
    hsize_t rows = row ? (262144 / row) : 1;
    if (rows < 1) rows = 1;
    if (rows > dims[0]) rows = dims[0];
    chunk[0] = rows;
    for (int i = 1; i < rank; i++) chunk[i] = dims[i];
    H5Pset_chunk(dcpl, rank, chunk);
    if (n * esz > (1u << 20)) {
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, 4);
    }
    H5Pset_fletcher32(dcpl); /* last: the checksum covers the stored (compressed) bytes */
  }
  int rc = 0;
  hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0 || (n > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
    rc = kv_error_set(err, KV_EIO, "%s: cannot write dataset '%s'", what, name);
    kv_h5_append_stack(err);
  }
  if (d >= 0) H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return rc;
}

hid_t kv_h5_open_dataset(hid_t loc, const char *name, int rank, hsize_t *dims, const char *what,
                         kv_error *err) {
  if (!kv_h5_exists(loc, name)) {
    return kv_error_set(err, KV_ENOENT, "%s/%s: missing dataset", what, name);
  }
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) {
    kv_error_set(err, KV_EFORMAT, "%s/%s: cannot open dataset (damaged file?)", what, name);
    kv_h5_append_stack(err);
    return KV_EFORMAT;
  }
  hid_t sp = H5Dget_space(d);
  int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  if (r != rank) {
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return kv_error_set(err, KV_EFORMAT, "%s/%s: rank %d, expected %d", what, name, r, rank);
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  return d;
}

int kv_h5_read_all(hid_t dset, hid_t mtype, void *buf, hsize_t n_elems, const char *what,
                   kv_error *err) {
  hid_t sp = H5Dget_space(dset);
  hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (sp >= 0) H5Sclose(sp);
  if (n < 0 || (hsize_t)n != n_elems) {
    return kv_error_set(err, KV_EFORMAT, "%s: holds %lld elements, expected %llu", what,
                        (long long)n, (unsigned long long)n_elems);
  }
  if (n_elems == 0) return 0;
  if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    kv_error_set(err, KV_EFORMAT, "%s: read failed (damaged or truncated file?)", what);
    kv_h5_append_stack(err);
    return KV_EFORMAT;
  }
  return 0;
}

int kv_h5_write_strings(hid_t loc, const char *name, const char *const *s, hsize_t n,
                        const char *what, kv_error *err) {
  size_t w = 1;
  for (hsize_t i = 0; i < n; i++) w = strlen(s[i]) + 1 > w ? strlen(s[i]) + 1 : w;
  char *buf = calloc(n ? n : 1, w);
  if (!buf) return kv_error_set(err, KV_ENOMEM, "%s/%s: out of memory", what, name);
  for (hsize_t i = 0; i < n; i++) memcpy(buf + i * w, s[i], strlen(s[i]));
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, w);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hsize_t dims[1] = {n};
  int rc = kv_h5_write(loc, name, t, t, 1, dims, buf, what, err);
  H5Tclose(t);
  free(buf);
  return rc;
}

void kv_h5_free_strings(char **s, hsize_t n) {
  if (!s) return;
  for (hsize_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

/* Variable-length strings of dataset d into s[0..n) (strdup'ed). */
static int kv__read_vlen_strings(hid_t d, hid_t ft, hsize_t n, char **s, const char *what,
                                 const char *name, kv_error *err) {
  int rc = 0;
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5Tget_cset(ft));
  char **tmp = calloc(n ? n : 1, sizeof *tmp);
  if (!tmp || (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)) {
    rc = kv_error_set(err, KV_EIO, "%s/%s: cannot read strings", what, name);
  }
  for (hsize_t i = 0; !rc && i < n; i++) {
    s[i] = strdup(tmp[i] ? tmp[i] : "");
    if (!s[i]) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  if (tmp && n) {
    hid_t sp = H5Dget_space(d);
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mt, sp, H5P_DEFAULT, tmp);
#else
    H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
#endif
    H5Sclose(sp);
  }
  free(tmp);
  H5Tclose(mt);
  return rc;
}

/* Fixed-length strings of dataset d (file type ft) into s[0..n). */
static int kv__read_fixed_strings(hid_t d, hid_t ft, hsize_t n, char **s, const char *what,
                                  const char *name, kv_error *err) {
  int rc = 0;
  const size_t w = H5Tget_size(ft);
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, w);
  H5Tset_cset(mt, H5Tget_cset(ft));
  char *buf = malloc(n * w + 1);
  if (!buf || (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
    rc = kv_error_set(err, KV_EIO, "%s/%s: cannot read strings", what, name);
  }
  for (hsize_t i = 0; !rc && i < n; i++) {
    s[i] = strndup(buf + i * w, w);
    if (!s[i]) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  free(buf);
  H5Tclose(mt);
  return rc;
}

int kv_h5_read_strings(hid_t loc, const char *name, hsize_t n, char ***out, const char *what,
                       kv_error *err) {
  *out = NULL;
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(loc, name, 1, dims, what, err);
  if (d < 0) return (int)d;
  int rc = 0;
  if (dims[0] != n) {
    rc = kv_error_set(err, KV_EFORMAT, "%s/%s: %llu rows, expected %llu", what, name,
                      (unsigned long long)dims[0], (unsigned long long)n);
  }
  char **s = rc ? NULL : calloc(n ? n : 1, sizeof *s);
  if (!rc && !s) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  hid_t ft = rc ? -1 : H5Dget_type(d);
  if (!rc && (ft < 0 || H5Tget_class(ft) != H5T_STRING)) {
    rc = kv_error_set(err, KV_EFORMAT, "%s/%s: not a string dataset", what, name);
  }
  if (!rc) {
    rc = H5Tis_variable_str(ft) > 0 ? kv__read_vlen_strings(d, ft, n, s, what, name, err)
                                    : kv__read_fixed_strings(d, ft, n, s, what, name, err);
  }
  if (ft >= 0) H5Tclose(ft);
  H5Dclose(d);
  if (rc) {
    kv_h5_free_strings(s, n);
    s = NULL;
  }
  *out = s;
  return rc;
}
