/* kv_config.h — configuration files: INI (parsed by libinih), with typed, checked getters.
 *
 * A config is a list of (section, key, value) entries, each remembering the file and line it
 * came from, so that every error names "file:line: [section] key: what is wrong". Overrides
 * given on a command line ("section.key=value") replace or add entries and are reported as
 * "<command line>". Repeated keys in a file are an error (a typo would otherwise pass silently).
 * Values may be comma-separated lists; sweep runners expand them (kv_config_list).
 *
 * Getters mark entries as used; kv_config_check_unused() reports any entry no component read,
 * which catches misspelt keys.
 */
#ifndef KV_CONFIG_H
#define KV_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

typedef struct kv_config kv_config;

/* Parses an INI file. On success *out is a new config the caller frees with kv_config_free. */
int kv_config_load(const char *path, kv_config **out, kv_error *err);
/* Parses INI text held in memory; `name` stands for the file in messages. */
int kv_config_parse(const char *text, const char *name, kv_config **out, kv_error *err);
/* An empty config (for building one in code). */
kv_config *kv_config_new(void);
/* Deep copy. NULL on allocation failure. */
kv_config *kv_config_clone(const kv_config *cfg);
void kv_config_free(kv_config *cfg);

/* Sets (replacing) section.key = value; `origin` names where it came from (may be NULL). */
int kv_config_set(kv_config *cfg, const char *section, const char *key, const char *value,
                  const char *origin);
/* Applies an override "section.key=value". */
int kv_config_override(kv_config *cfg, const char *assignment, kv_error *err);

/* Raw value, or NULL when absent. Marks the entry used. */
const char *kv_config_get(const kv_config *cfg, const char *section, const char *key);
/* "file:line" (or origin) of an entry, for messages; "<default>" when absent. */
const char *kv_config_where(const kv_config *cfg, const char *section, const char *key);

/* Typed getters. When the key is absent *out = def and 0 is returned; when `required` is
 * wanted, use the _req forms, which return KV_ENOENT. A value that does not parse completely,
 * or lies outside [lo, hi], is KV_EINVAL/KV_ERANGE with file:line in err. */
int kv_config_int(const kv_config *cfg, const char *sec, const char *key, int64_t def,
                  int64_t lo, int64_t hi, int64_t *out, kv_error *err);
int kv_config_double(const kv_config *cfg, const char *sec, const char *key, double def,
                     double lo, double hi, double *out, kv_error *err);
int kv_config_bool(const kv_config *cfg, const char *sec, const char *key, int def, int *out,
                   kv_error *err);
/* String value (pointer into cfg, valid until the entry changes or cfg is freed). */
int kv_config_str(const kv_config *cfg, const char *sec, const char *key, const char *def,
                  const char **out, kv_error *err);
/* Chooses one of `names` (NULL-terminated); *out is its index. Errors list the valid names. */
int kv_config_enum(const kv_config *cfg, const char *sec, const char *key, int def,
                   const char *const *names, int *out, kv_error *err);
int kv_config_int_req(const kv_config *cfg, const char *sec, const char *key, int64_t lo,
                      int64_t hi, int64_t *out, kv_error *err);
int kv_config_double_req(const kv_config *cfg, const char *sec, const char *key, double lo,
                         double hi, double *out, kv_error *err);

/* Tables of optional numeric keys: each entry's *dst holds its default on entry and the
 * configured value on return; the first error (file:line, range) stops the table. */
typedef struct kv_config_f64_key {
  const char *key;
  double *dst;
  double lo, hi;
} kv_config_f64_key;
typedef struct kv_config_i64_key {
  const char *key;
  int64_t *dst;
  int64_t lo, hi;
} kv_config_i64_key;
int kv_config_f64_table(const kv_config *cfg, const char *sec, const kv_config_f64_key *keys,
                        size_t n, kv_error *err);
int kv_config_i64_table(const kv_config *cfg, const char *sec, const kv_config_i64_key *keys,
                        size_t n, kv_error *err);

/* Splits a comma-separated value into at most cap items (whitespace trimmed) into a caller
 * buffer `store` of store_cap bytes; returns the item count or a negative status. A list with
 * more than cap items is KV_ERANGE, never truncated. */
int kv_config_list(const char *value, char **items, int cap, char *store, size_t store_cap);

/* Number of entries and access by index (in insertion order), for dumping and sweeps. */
int kv_config_count(const kv_config *cfg);
void kv_config_entry(const kv_config *cfg, int i, const char **section, const char **key,
                     const char **value);

/* Replaces every occurrence of `placeholder` (e.g. "{configdir}") in every value by `value`.
 * KV_ERANGE (naming the entry) when a value would exceed 4,000 bytes. */
int kv_config_expand(kv_config *cfg, const char *placeholder, const char *value, kv_error *err);

/* Entries never read by a getter are an error naming the first few with file:line. */
int kv_config_check_unused(const kv_config *cfg, kv_error *err);

/* Writes the config as INI text (sections in first-appearance order). */
int kv_config_write(const kv_config *cfg, FILE *f);
/* The same into a malloc'ed string (caller frees); NULL on allocation failure. */
char *kv_config_to_string(const kv_config *cfg);

#endif /* KV_CONFIG_H */
