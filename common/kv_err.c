#include "kv_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void kv__finish_truncated(char *buf, size_t cap, int n) {
  if (n >= 0 && (size_t)n >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
}

int kv_error_set(kv_error *err, int code, const char *fmt, ...) {
  if (!err) return code;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  kv__finish_truncated(err->msg, sizeof err->msg, n);
  return code;
}

void kv_error_prefix(kv_error *err, const char *fmt, ...) {
  if (!err) return;
  char prefix[KV_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char old[KV_ERROR_MSG_MAX];
  memcpy(old, err->msg, sizeof old);
  int n = snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  kv__finish_truncated(err->msg, sizeof err->msg, n);
}

const char *kv_status_name(int code) {
  switch (code) {
    case KV_OK: return "KV_OK";
    case KV_EINVAL: return "KV_EINVAL";
    case KV_ENOMEM: return "KV_ENOMEM";
    case KV_EIO: return "KV_EIO";
    case KV_EFORMAT: return "KV_EFORMAT";
    case KV_ERANGE: return "KV_ERANGE";
    case KV_ENOTSUP: return "KV_ENOTSUP";
    case KV_ENOENT: return "KV_ENOENT";
    case KV_EDEVICE: return "KV_EDEVICE";
    case KV_ESTATE: return "KV_ESTATE";
    default: return "KV_E?";
  }
}

const char *kv_version(void) { return KVLAB_VERSION; }
