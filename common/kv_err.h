/* kv_err.h — error codes and error messages shared by every kvlab library.
 *
 * Contract: library functions return 0 (KV_OK) on success and a negative kv_status on failure.
 * They never exit and never print; when the caller passes a non-NULL kv_error, the function
 * fills it with the code and a one-line message that names the input (file, line, dataset) and
 * what is wrong. Only the main() of a tool prints errors and exits.
 */
#ifndef KV_ERR_H
#define KV_ERR_H

#include <stddef.h>

typedef enum kv_status {
  KV_OK = 0,
  KV_EINVAL = -1,    /* bad argument or configuration value */
  KV_ENOMEM = -2,    /* allocation failed */
  KV_EIO = -3,       /* a file could not be opened, read or written */
  KV_EFORMAT = -4,   /* input is malformed: wrong shape, type, syntax, NaN/Inf */
  KV_ERANGE = -5,    /* a value is out of its allowed range, or an integer would overflow */
  KV_ENOTSUP = -6,   /* valid but unsupported (a type, a schema version, a feature not built) */
  KV_ENOENT = -7,    /* a named item (dataset, key, sequence, model) does not exist */
  KV_EDEVICE = -8,   /* a CUDA / cuBLAS call failed, or no device is present */
  KV_ESTATE = -9     /* call not valid in the object's current state */
} kv_status;

#define KV_ERROR_MSG_MAX 1024

/* Caller-owned error record. Zero-initialise it (kv_error e = {0};) before use. */
typedef struct kv_error {
  int code;                       /* a kv_status */
  char msg[KV_ERROR_MSG_MAX];     /* one line, no trailing newline */
} kv_error;

/* Fills *err (when non-NULL) with code and a printf-style message; returns code, so that a
 * library can write `return kv_error_set(err, KV_EFORMAT, "%s: ...", path);`.
 * A message that does not fit is cut and ends in "...", never overflowing. */
int kv_error_set(kv_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "prefix: " to an existing message (context added by an outer layer). */
void kv_error_prefix(kv_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Static name of a status ("KV_EFORMAT", ...). */
const char *kv_status_name(int code);

/* The library version string ("0.1.0"). */
const char *kv_version(void);

#endif /* KV_ERR_H */
