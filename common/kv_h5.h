/* kv_h5.h — checked HDF5 helpers shared by the Q/K/V files, the trace format and result files.
 *
 * Every helper checks each HDF5 id and status and turns a failure into a kv_error that names the
 * file and the object ("file.h5: /seq/0/layer_03/K: ..."). HDF5's own automatic error printing is
 * switched off inside these helpers (kv_h5_quiet), because a failure here is reported through
 * kv_error instead; the first message of HDF5's error stack is appended to ours.
 */
#ifndef KV_H5_H
#define KV_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "kv_err.h"

/* Switches off HDF5's automatic error printing for the whole process (idempotent). */
void kv_h5_quiet(void);

/* Appends the innermost message of HDF5's current error stack to err->msg (" (HDF5: ...)"). */
void kv_h5_append_stack(kv_error *err);

/* Opens an existing file read-only / creates (truncating) a file. Returns the id, or a negative
 * kv_status with err naming the path. The caller closes the id with H5Fclose. kv_h5_create
 * writes the HDF5 1.10 file format (checksummed metadata) and switches off object times for the
 * whole process (the default creation property lists), so that groups created with H5P_DEFAULT
 * too leave the same bytes for the same data. */
hid_t kv_h5_open_read(const char *path, kv_error *err);
hid_t kv_h5_create(const char *path, kv_error *err);

/* 1 when `name` (a path relative to loc, may contain '/') exists as a link, 0 when not. */
int kv_h5_exists(hid_t loc, const char *name);

/* Attributes on the object `loc` (a file, group or dataset id). `what` names loc in messages
 * (e.g. "model.h5: /seq/0"). Reading converts numeric types (HDF5 conversion); a missing
 * attribute is KV_ENOENT, a wrong class (string vs number) or non-scalar shape is KV_EFORMAT. */
int kv_h5_attr_write_i64(hid_t loc, const char *name, int64_t v, const char *what, kv_error *err);
int kv_h5_attr_write_f64(hid_t loc, const char *name, double v, const char *what, kv_error *err);
int kv_h5_attr_write_str(hid_t loc, const char *name, const char *v, const char *what, kv_error *err);
int kv_h5_attr_read_i64(hid_t loc, const char *name, int64_t *v, const char *what, kv_error *err);
int kv_h5_attr_read_f64(hid_t loc, const char *name, double *v, const char *what, kv_error *err);
/* Reads a string attribute (fixed or variable length) into buf (cap bytes, NUL-terminated).
 * A value longer than cap-1 is KV_ERANGE, never silently cut. */
int kv_h5_attr_read_str(hid_t loc, const char *name, char *buf, size_t cap, const char *what,
                        kv_error *err);

/* Writes dataset `name` under loc with `rank` dims, file type ftype, memory type mtype, from
 * buf. Every non-empty dataset of a fixed-size type is chunked with the Fletcher32 checksum
 * filter (HDF5 filters no variable-length data), so a damaged
 * byte in its data fails the read (kv_h5_read_all names the file and dataset) instead of
 * passing silently; datasets larger than 1 MiB are also deflate-compressed (level 4, shuffle).
 * No modification times are stored, so the same data give a byte-identical file.
 * Returns 0 or a negative kv_status. */
int kv_h5_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *buf, const char *what, kv_error *err);

/* Opens dataset `name`, checks its rank equals `rank` and fills dims[rank]. The caller closes
 * the returned dataset id with H5Dclose. Missing dataset: KV_ENOENT; wrong rank: KV_EFORMAT. */
hid_t kv_h5_open_dataset(hid_t loc, const char *name, int rank, hsize_t *dims, const char *what,
                         kv_error *err);

/* Reads all of dataset `dset` (n_elems elements expected) as memory type mtype into buf.
 * Checks the element count first: a dataset whose size differs is KV_EFORMAT, so a caller never
 * reads fewer elements than it asked for. */
int kv_h5_read_all(hid_t dset, hid_t mtype, void *buf, hsize_t n_elems, const char *what,
                   kv_error *err);

/* 1-D string datasets. Writing stores fixed-length, NUL-terminated UTF-8 strings as wide as the
 * longest; reading accepts fixed or variable length and returns n malloc'ed strings in *out
 * (caller frees with kv_h5_free_strings). A row count other than n is KV_EFORMAT. */
int kv_h5_write_strings(hid_t loc, const char *name, const char *const *s, hsize_t n,
                        const char *what, kv_error *err);
int kv_h5_read_strings(hid_t loc, const char *name, hsize_t n, char ***out, const char *what,
                       kv_error *err);
void kv_h5_free_strings(char **s, hsize_t n);

#endif /* KV_H5_H */
