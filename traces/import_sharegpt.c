#include "import_sharegpt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "import_sharegpt_roles.h"
#include "kv_fs.h"
#include "trace_map.h"

#define SG_CHUNK 65536
#define SG_CHUNK_MAX ((size_t)1 << 30)
#define SG_CAPTURE_MAX ((size_t)64 << 20)
#define SG_ID_MAX 256

void trace_sharegpt_opts_init(trace_sharegpt_opts *o) {
  memset(o, 0, sizeof *o);
  trace_import_opts_init(&o->base);
  o->approx = TRACE_TOK_APPROX_SCRIPT;
}

enum { SG_SIDE_PROMPT = TRACE_SHAREGPT_SIDE_PROMPT, SG_SIDE_OUTPUT = TRACE_SHAREGPT_SIDE_OUTPUT };
enum { SG_RK_NONE, SG_RK_ID, SG_RK_CONV, SG_RK_TOOLS, SG_RK_SYSTEM, SG_RK_OTHER };
enum { SG_MK_NONE, SG_MK_FROM, SG_MK_VALUE, SG_MK_OTHER };

typedef struct sg__msg {
  int8_t side;
  int8_t system;
  int64_t tokens;
} sg__msg;

typedef struct sg__ctx {
  const trace_sharegpt_opts *o;
  trace_sharegpt_stats *st;
  trace *t;
  const char *name;
  kv_error *err;
  yajl_handle h;
  /* position in the input */
  const unsigned char *chunk;
  int64_t chunk_base;       /* offset of chunk[0] in the file */
  int64_t nl_before;        /* newlines before chunk[nl_scan] */
  size_t nl_scan;
  /* structure */
  int depth;
  int mode;                 /* -1 undecided, 0 JSONL (records at depth 0), 1 array (depth 1) */
  int rec_depth;
  int top_closed;
  int skip_to;              /* >= 0: skipping nested content until depth returns to this */
  /* current record */
  int in_rec;
  int64_t rec_index;        /* 0-based record number */
  int64_t rec_offset, rec_line;
  char rec_id[SG_ID_MAX];
  int have_id, have_conv, rec_key, in_conv;
  int in_msg, msg_key, have_from, have_value, msg_side, msg_kind;
  int64_t msg_tokens;
  int64_t rec_sys_tokens;   /* record-level "tools" and "system", counted as a system prompt */
  int rec_has_sys;
  /* serialising a JSON "tools" value back to text */
  int cap_depth;            /* >= 0: capturing until depth returns to this */
  char *cap_buf;
  size_t cap_len, cap_cap;
  struct sg__cap_level {
    char type;              /* '{' or '[' */
    int64_t count;
  } *cap_stack;
  int64_t cap_sp, cap_stack_cap;
  int64_t events;           /* callbacks so far: unchanged over a chunk = a value spans it */
  int rec_bad;
  char bad[300];
  sg__msg *rm;              /* the record's messages */
  int64_t n_rm, cap_rm;
  /* conversation being built (joined segments) */
  int open, open_poison;
  char open_base[SG_ID_MAX];
  int64_t open_suffix, open_first, open_line, open_off;
  sg__msg *cm;
  int64_t n_cm, cap_cm;
  trace_strmap done;        /* bases of finished conversations */
  int rc;                   /* fatal status; makes callbacks cancel */
  int limit_hit;
} sg__ctx;

/* Line number (1-based) of byte `pos` of the current chunk; positions must not go backwards. */
static int64_t sg__line_at(sg__ctx *c, size_t pos) {
  for (; c->nl_scan < pos; c->nl_scan++) c->nl_before += c->chunk[c->nl_scan] == '\n';
  return c->nl_before + 1;
}

/* Counts the tokens of text[0..n) with the tokenizer or the approximation, and its characters
 * for the statistics; a negative status (set in c->rc) on a tokenizer failure. */
static int64_t sg__count(sg__ctx *c, const char *s, size_t n) {
  int64_t tk;
  if (c->o->tok) {
    kv_error e = {0};
    tk = trace_tok_count(c->o->tok, s, n, &e);
    if (tk < 0) {
      c->rc = kv_error_set(c->err, (int)tk, "%s: record %lld: %s", c->name,
                           (long long)c->rec_index, e.msg);
      return tk;
    }
  } else {
    tk = trace_tok_approx_count(c->o->approx, s, n);
  }
  /* characters and non-Latin ones (UTF-8 lead bytes; continuation bytes are skipped) */
  const unsigned char *u = (const unsigned char *)s;
  int64_t chars = 0, non_latin = 0, rough = 0;
  for (size_t i = 0; i < n;) {
    unsigned b = u[i];
    uint32_t cp = b;
    size_t len = 1;
    if (b >= 0xF0 && i + 3 < n) len = 4, cp = ((b & 7u) << 18) | ((u[i + 1] & 63u) << 12) |
                                                ((u[i + 2] & 63u) << 6) | (u[i + 3] & 63u);
    else if (b >= 0xE0 && i + 2 < n) len = 3, cp = ((b & 15u) << 12) | ((u[i + 1] & 63u) << 6) |
                                               (u[i + 2] & 63u);
    else if (b >= 0xC0 && i + 1 < n) len = 2, cp = ((b & 31u) << 6) | (u[i + 1] & 63u);
    i += len;
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') continue;
    chars++;
    /* after Cyrillic (U+052F), except general punctuation, symbols and arrows U+2000-U+2BFF */
    if (cp > 0x052F && !(cp >= 0x2000 && cp <= 0x2BFF)) non_latin++;
    rough += trace_tok_script_rough(cp);
  }
  c->st->text_bytes += (int64_t)n;
  c->st->tokens += tk;
  c->st->chars += chars;
  c->st->non_latin_chars += non_latin;
  c->st->rough_chars += rough;
  return tk;
}

static int sg__push(sg__msg **a, int64_t *n, int64_t *cap, sg__msg m) {
  if (*n == *cap) {
    int64_t nc = *cap ? *cap * 2 : 64;
    sg__msg *nb = realloc(*a, (size_t)nc * sizeof *nb);
    if (!nb) return KV_ENOMEM;
    *a = nb;
    *cap = nc;
  }
  (*a)[(*n)++] = m;
  return 0;
}

/* Marks the current record malformed (first reason wins) and skips its remaining content. */
static int sg__bad(sg__ctx *c, const char *why) {
  if (!c->rec_bad) {
    c->rec_bad = 1;
    snprintf(c->bad, sizeof c->bad, "%s", why);
  }
  return 1;
}

/* Splits id into base and numeric suffix ("abc_12" -> "abc", 12); suffix -1 when none. */
static void sg__split_id(const char *id, char *base, int64_t *suffix) {
  size_t n = strlen(id);
  *suffix = -1;
  snprintf(base, SG_ID_MAX, "%s", id);
  const char *us = strrchr(id, '_');
  if (!us || us == id || us[1] == '\0' || (size_t)(id + n - us) > 12) return;
  int64_t v = 0;
  for (const char *p = us + 1; *p; p++) {
    if (*p < '0' || *p > '9') return;
    v = v * 10 + (*p - '0');
  }
  base[us - id] = '\0';
  *suffix = v;
}

static int sg__report(sg__ctx *c, int64_t rec, const char *id, int64_t line, int64_t off,
                      const char *why) {
  int rc = trace_import_bad(&c->o->base, &c->st->base, c->err, KV_EFORMAT,
                            "%s: record %lld (id \"%.80s\", line %lld, byte %lld): %s", c->name,
                            (long long)rec, id, (long long)line, (long long)off, why);
  if (rc) c->rc = rc;
  return rc;
}

/* Turns the open conversation into a session (or drops it when poisoned or empty). */
static int sg__finish(sg__ctx *c) {
  if (!c->open) return 0;
  c->open = 0;
  trace_strmap_put(&c->done, c->open_base, strlen(c->open_base), 1);
  if (c->open_poison) return 0;
  c->st->conversations++;
  const trace_sharegpt_opts *o = c->o;
  int64_t i = 0, n = c->n_cm, lead = 0;
  while (i < n && c->cm[i].side == SG_SIDE_OUTPUT) lead += c->cm[i++].tokens;
  if (i > 0) {
    c->st->model_first++;
    if (o->lead == TRACE_SHAREGPT_LEAD_DROP) lead = 0;
  }
  /* First pass: count turns and check for overflow before touching the trace. */
  int64_t in = 0, new_tokens = lead, turns = 0;
  int64_t j = i;
  for (;;) {
    int prompt_msgs = 0;
    while (j < n && c->cm[j].side == SG_SIDE_PROMPT) new_tokens += c->cm[j++].tokens, prompt_msgs++;
    int64_t out = 0;
    int got = 0;
    while (j < n && c->cm[j].side == SG_SIDE_OUTPUT) out += c->cm[j++].tokens, got = 1;
    if (!got) {
      if (prompt_msgs) c->st->trailing_prompts++;
      break;
    }
    in += new_tokens;
    if (in > INT32_MAX || out > INT32_MAX || in + out > INT32_MAX) {
      return sg__report(c, c->open_first, c->open_base, c->open_line, c->open_off,
                        "conversation longer than 2^31-1 tokens");
    }
    in += out;
    new_tokens = 0;
    turns++;
  }
  if (turns == 0) {
    c->st->empty++;
    return 0;
  }
  if (c->o->base.max_records && c->t->n_sessions >= c->o->base.max_records) {
    c->limit_hit = 1;
    return 0;
  }
  int64_t r = trace_add_session(c->t, c->open_first, 0, c->err);
  in = 0;
  new_tokens = lead;
  j = i;
  for (int64_t k = 0; k < turns && r >= 0; k++) {
    while (j < n && c->cm[j].side == SG_SIDE_PROMPT) new_tokens += c->cm[j++].tokens;
    int64_t out = 0;
    while (j < n && c->cm[j].side == SG_SIDE_OUTPUT) out += c->cm[j++].tokens;
    in += new_tokens;
    r = trace_add_turn(c->t, 0, k == 0 ? 0 : -1, in, new_tokens, out, NULL, 0, c->err);
    in += out;
    new_tokens = 0;
  }
  if (r < 0) c->rc = (int)r;
  return c->rc;
}

/* Called at the end of each record. */
static int sg__end_record(sg__ctx *c) {
  c->st->base.records++;
  char base[SG_ID_MAX];
  int64_t suffix;
  sg__split_id(c->have_id ? c->rec_id : "", base, &suffix);
  int same = c->open && suffix >= 0 && c->open_suffix >= 0 && !strcmp(base, c->open_base) &&
             suffix > c->open_suffix;
  if (!c->rec_bad && !c->have_conv) sg__bad(c, "no \"conversations\" array");
  if (c->rec_bad) {
    if (sg__report(c, c->rec_index, c->rec_id, c->rec_line, c->rec_offset, c->bad)) return c->rc;
    if (same) {
      c->open_poison = 1;
      c->open_suffix = suffix;
    } else if (suffix >= 0) {
      /* later segments of this conversation must not form a partial session */
      if (sg__finish(c)) return c->rc;
      c->open = 1;
      c->open_poison = 1;
      snprintf(c->open_base, sizeof c->open_base, "%s", base);
      c->open_suffix = suffix;
      c->open_first = c->rec_index;
      c->n_cm = 0;
    }
    return 0;
  }
  if (same) {
    c->st->joined_segments++;
    if (suffix > c->open_suffix + 1) c->st->segment_gaps++;
    c->open_suffix = suffix;
    if (c->open_poison) {
      return sg__report(c, c->rec_index, c->rec_id, c->rec_line, c->rec_offset,
                        "segment of a conversation whose earlier segment is malformed");
    }
  } else {
    if (sg__finish(c)) return c->rc;
    if (c->limit_hit) return 0;
    if (suffix >= 0 && trace_strmap_get(&c->done, base, strlen(base))) {
      c->st->nonadjacent_segments++;
    }
    c->open = 1;
    c->open_poison = 0;
    snprintf(c->open_base, sizeof c->open_base, "%s", base);
    c->open_suffix = suffix;
    c->open_first = c->rec_index;
    c->open_line = c->rec_line;
    c->open_off = c->rec_offset;
    c->n_cm = 0;
  }
  /* the record's "tools" / "system": a system prompt before its messages */
  if (c->rec_has_sys) {
    sg__msg m = {SG_SIDE_PROMPT, 1, c->rec_sys_tokens};
    if (sg__push(&c->cm, &c->n_cm, &c->cap_cm, m)) {
      c->rc = kv_error_set(c->err, KV_ENOMEM, "%s: out of memory", c->name);
      return c->rc;
    }
  }
  for (int64_t i = 0; i < c->n_rm; i++) {
    if (sg__push(&c->cm, &c->n_cm, &c->cap_cm, c->rm[i])) {
      c->rc = kv_error_set(c->err, KV_ENOMEM, "%s: out of memory", c->name);
      return c->rc;
    }
  }
  return 0;
}

/* ---- yajl callbacks ---------------------------------------------------------------------------- */

#define SG_GO(c) ((c)->rc == 0 && !(c)->limit_hit)

static void sg__start_record(sg__ctx *c) {
  size_t pos = yajl_get_bytes_consumed(c->h);
  c->in_rec = 1;
  c->rec_offset = c->chunk_base + (int64_t)pos - 1;
  c->rec_line = sg__line_at(c, pos);
  c->rec_id[0] = '\0';
  c->have_id = c->have_conv = c->in_conv = c->in_msg = 0;
  c->rec_key = SG_RK_NONE;
  c->rec_bad = 0;
  c->n_rm = 0;
  c->rec_sys_tokens = 0;
  c->rec_has_sys = 0;
}

/* ---- "tools" given as JSON: serialised back to text (json.dumps(ensure_ascii=False) style) ---- */

static int sg__cap_put(sg__ctx *c, const char *s, size_t n) {
  if (c->cap_len + n + 1 > SG_CAPTURE_MAX) { /* the record is dropped; keep parsing it */
    c->cap_len = 0;
    return sg__bad(c, "\"tools\" is longer than 64 MiB");
  }
  if (c->cap_len + n + 1 > c->cap_cap) {
    size_t nc = c->cap_cap ? c->cap_cap : 4096;
    while (nc < c->cap_len + n + 1) nc *= 2;
    char *nb = realloc(c->cap_buf, nc);
    if (!nb) {
      c->rc = kv_error_set(c->err, KV_ENOMEM, "%s: out of memory", c->name);
      return 0;
    }
    c->cap_buf = nb;
    c->cap_cap = nc;
  }
  memcpy(c->cap_buf + c->cap_len, s, n);
  c->cap_len += n;
  return 1;
}

static int sg__cap_str(sg__ctx *c, const char *s, size_t n) {
  int ok = sg__cap_put(c, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; ok && i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch != '"' && ch != '\\' && ch >= 0x20) continue;
    if (i > run) ok = sg__cap_put(c, s + run, i - run);
    char esc[8];
    if (ch == '"' || ch == '\\') snprintf(esc, sizeof esc, "\\%c", ch);
    else if (ch == '\n') snprintf(esc, sizeof esc, "\\n");
    else if (ch == '\t') snprintf(esc, sizeof esc, "\\t");
    else if (ch == '\r') snprintf(esc, sizeof esc, "\\r");
    else if (ch == '\b') snprintf(esc, sizeof esc, "\\b");
    else if (ch == '\f') snprintf(esc, sizeof esc, "\\f");
    else snprintf(esc, sizeof esc, "\\u%04x", ch);
    if (ok) ok = sg__cap_put(c, esc, strlen(esc));
    run = i + 1;
  }
  if (ok && n > run) ok = sg__cap_put(c, s + run, n - run);
  return ok && sg__cap_put(c, "\"", 1);
}

/* Separator before a value inside the captured JSON (keys write their own). */
static int sg__cap_sep(sg__ctx *c) {
  if (c->cap_sp == 0) return 1;
  struct sg__cap_level *top = &c->cap_stack[c->cap_sp - 1];
  if (top->type == '[' && top->count++ > 0) return sg__cap_put(c, ", ", 2);
  return 1;
}

static int sg__cap_open(sg__ctx *c, char type) {
  if (!sg__cap_sep(c) || !sg__cap_put(c, &type, 1)) return 0;
  if (c->cap_sp == c->cap_stack_cap) {
    int64_t nc = c->cap_stack_cap ? c->cap_stack_cap * 2 : 16;
    struct sg__cap_level *nb = realloc(c->cap_stack, (size_t)nc * sizeof *nb);
    if (!nb) {
      c->rc = kv_error_set(c->err, KV_ENOMEM, "%s: out of memory", c->name);
      return 0;
    }
    c->cap_stack = nb;
    c->cap_stack_cap = nc;
  }
  c->cap_stack[c->cap_sp].type = type;
  c->cap_stack[c->cap_sp].count = 0;
  c->cap_sp++;
  c->depth++;
  return 1;
}

/* Closes a captured container; the outermost one ends the capture and is counted. */
static int sg__cap_close(sg__ctx *c, char type) {
  c->depth--;
  c->cap_sp--;
  if (!sg__cap_put(c, &type, 1)) return 0;
  if (c->depth > c->cap_depth) return 1;
  c->cap_depth = -1;
  if (c->cap_len > 2) { /* "[]" and "{}" show the model nothing */
    int64_t tk = sg__count(c, c->cap_buf, c->cap_len);
    if (tk < 0) return 0;
    c->rec_sys_tokens += tk + c->o->msg_overhead;
    c->rec_has_sys = 1;
    c->st->tools_fields++;
  }
  c->cap_len = 0;
  return 1;
}

/* A scalar inside the captured JSON: s is its text (a string's unescaped bytes when is_str). */
static int sg__cap_scalar(sg__ctx *c, const char *s, size_t n, int is_str) {
  if (!sg__cap_sep(c)) return 0;
  return is_str ? sg__cap_str(c, s, n) : sg__cap_put(c, s, n);
}

/* A record-level "tools" or "system" string: a system prompt (empty ones and "[]" count
 * nothing). */
static int sg__rec_sys_text(sg__ctx *c, const char *s, size_t n) {
  if (n == 0 || (n == 2 && !memcmp(s, "[]", 2))) return 1;
  int64_t tk = sg__count(c, s, n);
  if (tk < 0) return 0;
  c->rec_sys_tokens += tk + c->o->msg_overhead;
  c->rec_has_sys = 1;
  if (c->rec_key == SG_RK_TOOLS) c->st->tools_fields++;
  else c->st->system_fields++;
  return 1;
}

/* A scalar or container begins at the current depth: what does it mean here? Returns 1 when the
 * caller should go on handling it, 0 when it was a whole non-object record (already handled). */
static int sg__value_start(sg__ctx *c, const char *what, int container) {
  if (c->mode < 0) {
    c->mode = 0; /* a scalar at the top: JSONL of non-objects; each is a bad record */
    c->rec_depth = 0;
  }
  if (c->mode == 1 && c->depth == 0) {
    c->rc = kv_error_set(c->err, KV_EFORMAT, "%s: content after the top-level array (%s)",
                         c->name, what);
    return 0;
  }
  if (c->depth == c->rec_depth) {
    /* a record that is not an object */
    sg__start_record(c);
    char why[80];
    snprintf(why, sizeof why, "a record must be an object, not %s", what);
    sg__bad(c, why);
    if (container) {
      c->skip_to = c->depth;
      c->depth++;
      return 0;
    }
    c->in_rec = 0;
    sg__end_record(c);
    c->rec_index++;
    return 0;
  }
  return 1;
}

static int sg__scalar(sg__ctx *c, const char *what, const char *s, size_t n) {
  if (!SG_GO(c)) return 0;
  if (c->skip_to >= 0) return 1;
  if (!sg__value_start(c, what, 0)) return SG_GO(c);
  int d = c->depth - c->rec_depth; /* 1: record value, 3: message value */
  if (d == 1) {
    if (c->rec_key == SG_RK_ID) {
      if (s) {
        snprintf(c->rec_id, sizeof c->rec_id, "%.*s", (int)(n < SG_ID_MAX - 1 ? n : SG_ID_MAX - 1),
                 s);
        c->have_id = 1;
      } else {
        sg__bad(c, "\"id\" must be a string or a number");
      }
    } else if (c->rec_key == SG_RK_CONV) {
      sg__bad(c, "\"conversations\" must be an array");
    } else if ((c->rec_key == SG_RK_TOOLS || c->rec_key == SG_RK_SYSTEM) && !c->o->ignore_tools) {
      if (s && strcmp(what, "a number")) return sg__rec_sys_text(c, s, n);
      if (strcmp(what, "null")) {
        sg__bad(c, c->rec_key == SG_RK_TOOLS ? "\"tools\" must be a string, an array or an object"
                                             : "\"system\" must be a string");
      }
    }
  } else if (d == 2 && c->in_conv) {
    sg__bad(c, "a message must be an object");
  } else if (d == 3 && c->in_msg && c->msg_key == SG_MK_FROM) {
    if (!s || !strcmp(what, "a number")) return sg__bad(c, "\"from\" must be a string");
    c->have_from = 1;
    trace_sharegpt_side side = trace_sharegpt_role_side(c->o, s, n);
    if (side == TRACE_SHAREGPT_SIDE_REJECT) {
      char why[160];
      snprintf(why, sizeof why, "%s role \"%.*s\" (a role mapping makes it prompt, output or "
               "drop)", trace_sharegpt_role_kind(s, n) == TRACE_SG_KIND_OTHER ? "unknown" : "rejected",
               (int)(n < 40 ? n : 40), s);
      return sg__bad(c, why);
    }
    c->msg_side = (int)side;
    c->msg_kind = trace_sharegpt_role_kind(s, n);
  } else if (d == 3 && c->in_msg && c->msg_key == SG_MK_VALUE) {
    if (!s || !strcmp(what, "a number")) return sg__bad(c, "\"value\" must be a string");
    c->have_value = 1;
    int64_t tk = sg__count(c, s, n);
    if (tk < 0) return 0;
    c->msg_tokens = tk + c->o->msg_overhead;
  }
  return 1;
}

#define SG_CAPTURING(c) ((c)->cap_depth >= 0 && SG_GO(c))

static int sg__null(void *ctx) {
  sg__ctx *c = ctx;
  c->events++;
  if (SG_CAPTURING(c)) return sg__cap_scalar(c, "null", 4, 0) && SG_GO(c);
  return sg__scalar(ctx, "null", NULL, 0);
}
static int sg__bool(void *ctx, int b) {
  sg__ctx *c = ctx;
  c->events++;
  if (SG_CAPTURING(c)) return sg__cap_scalar(c, b ? "true" : "false", b ? 4 : 5, 0) && SG_GO(c);
  return sg__scalar(ctx, "a boolean", NULL, 0);
}
static int sg__number(void *ctx, const char *s, size_t n) {
  sg__ctx *c = ctx;
  c->events++;
  if (SG_CAPTURING(c)) return sg__cap_scalar(c, s, n, 0) && SG_GO(c);
  /* a numeric id is kept as its text */
  if (SG_GO(c) && c->skip_to < 0 && c->in_rec && c->depth - c->rec_depth == 1 &&
      c->rec_key == SG_RK_ID) {
    return sg__scalar(ctx, "a string", s, n);
  }
  return sg__scalar(ctx, "a number", NULL, 0);
}
static int sg__string(void *ctx, const unsigned char *s, size_t n) {
  sg__ctx *c = ctx;
  c->events++;
  if (SG_CAPTURING(c)) return sg__cap_scalar(c, (const char *)s, n, 1) && SG_GO(c);
  return sg__scalar(ctx, "a string", (const char *)s, n);
}

/* A container starts as the value of a record-level "tools": capture it as text. */
static int sg__maybe_capture(sg__ctx *c, char type) {
  if (c->skip_to >= 0 || c->cap_depth >= 0 || !c->in_rec || c->depth - c->rec_depth != 1 ||
      c->rec_key != SG_RK_TOOLS || c->o->ignore_tools) {
    return 0;
  }
  c->cap_depth = c->depth;
  c->cap_len = 0;
  c->cap_sp = 0;
  return sg__cap_open(c, type) ? 1 : -1;
}

static int sg__start_map(void *ctx) {
  sg__ctx *c = ctx;
  c->events++;
  if (!SG_GO(c)) return 0;
  if (c->cap_depth >= 0) return sg__cap_open(c, '{') && SG_GO(c);
  int cap = sg__maybe_capture(c, '{');
  if (cap) return cap > 0 && SG_GO(c);
  if (c->skip_to >= 0) {
    c->depth++;
    return 1;
  }
  if (c->mode < 0) {
    c->mode = 0; /* JSONL: objects at the top level */
    c->rec_depth = 0;
  }
  if (c->mode == 1 && c->depth == 0) {
    c->rc = kv_error_set(c->err, KV_EFORMAT, "%s: content after the top-level array", c->name);
    return 0;
  }
  int d = c->depth - c->rec_depth;
  if (d == 0) {
    sg__start_record(c);
  } else if (d == 1 && c->rec_key == SG_RK_ID) {
    sg__bad(c, "\"id\" must be a string or a number");
  } else if (d == 1 && c->rec_key == SG_RK_CONV) {
    sg__bad(c, "\"conversations\" must be an array");
  } else if (d == 2 && c->in_conv) {
    c->in_msg = 1;
    c->msg_key = SG_MK_NONE;
    c->have_from = c->have_value = 0;
    c->msg_side = SG_SIDE_PROMPT;
    c->msg_kind = TRACE_SG_KIND_OTHER;
    c->msg_tokens = 0;
  } else if (d == 3 && c->in_msg && (c->msg_key == SG_MK_FROM || c->msg_key == SG_MK_VALUE)) {
    sg__bad(c, c->msg_key == SG_MK_FROM ? "\"from\" must be a string"
                                        : "\"value\" must be a string");
  }
  c->depth++;
  return 1;
}

static int sg__map_key(void *ctx, const unsigned char *k, size_t n) {
  sg__ctx *c = ctx;
  c->events++;
  if (!SG_GO(c)) return 0;
  if (c->cap_depth >= 0) {
    struct sg__cap_level *top = &c->cap_stack[c->cap_sp - 1];
    int ok = (top->count++ == 0 || sg__cap_put(c, ", ", 2)) &&
             sg__cap_str(c, (const char *)k, n) && sg__cap_put(c, ": ", 2);
    return ok && SG_GO(c);
  }
  if (c->skip_to >= 0) return 1;
  int d = c->depth - c->rec_depth;
#define SG_IS(lit) (n == sizeof(lit) - 1 && !memcmp(k, lit, n))
  if (d == 1) {
    if (SG_IS("id")) {
      if (c->have_id) sg__bad(c, "duplicate key \"id\"");
      c->rec_key = SG_RK_ID;
    } else if (SG_IS("conversations") || SG_IS("conversation") || SG_IS("messages")) {
      if (c->have_conv) sg__bad(c, "more than one conversations array");
      c->rec_key = SG_RK_CONV;
    } else if (SG_IS("tools")) {
      c->rec_key = SG_RK_TOOLS;
    } else if (SG_IS("system")) {
      c->rec_key = SG_RK_SYSTEM;
    } else {
      c->rec_key = SG_RK_OTHER;
    }
  } else if (d == 3 && c->in_msg) {
    if (SG_IS("from") || SG_IS("role")) {
      if (c->have_from) sg__bad(c, "a message has two roles");
      c->msg_key = SG_MK_FROM;
    } else if (SG_IS("value") || SG_IS("content")) {
      if (c->have_value) sg__bad(c, "a message has two values");
      c->msg_key = SG_MK_VALUE;
    } else {
      c->msg_key = SG_MK_OTHER;
    }
  }
#undef SG_IS
  return 1;
}

static int sg__end_map(void *ctx) {
  sg__ctx *c = ctx;
  c->events++;
  if (!SG_GO(c)) return 0;
  if (c->cap_depth >= 0) return sg__cap_close(c, '}') && SG_GO(c);
  c->depth--;
  if (c->skip_to >= 0) {
    if (c->depth == c->skip_to) {
      c->skip_to = -1;
      if (c->in_rec && c->depth == c->rec_depth) goto end_record;
    }
    return 1;
  }
  int d = c->depth - c->rec_depth;
  if (d == 2 && c->in_msg) {
    c->in_msg = 0;
    c->msg_key = SG_MK_NONE;
    if (!c->have_from) return sg__bad(c, "a message has no \"from\"");
    if (!c->have_value) return sg__bad(c, "a message has no \"value\"");
    c->st->messages++;
    c->st->system_messages += c->msg_kind == TRACE_SG_KIND_SYSTEM;
    c->st->tool_calls += c->msg_kind == TRACE_SG_KIND_TOOL_CALL;
    c->st->tool_results += c->msg_kind == TRACE_SG_KIND_TOOL_RESULT;
    if (c->msg_side == TRACE_SHAREGPT_SIDE_DROP) {
      c->st->dropped_messages++;
      return 1;
    }
    sg__msg m = {(int8_t)c->msg_side, (int8_t)(c->msg_kind == TRACE_SG_KIND_SYSTEM), c->msg_tokens};
    if (sg__push(&c->rm, &c->n_rm, &c->cap_rm, m)) {
      c->rc = kv_error_set(c->err, KV_ENOMEM, "%s: out of memory", c->name);
      return 0;
    }
    return 1;
  }
  if (d == 0 && c->in_rec) goto end_record;
  return 1;
end_record:
  c->in_rec = 0;
  sg__end_record(c);
  c->rec_index++;
  return SG_GO(c);
}

static int sg__start_array(void *ctx) {
  sg__ctx *c = ctx;
  c->events++;
  if (!SG_GO(c)) return 0;
  if (c->cap_depth >= 0) return sg__cap_open(c, '[') && SG_GO(c);
  int cap = sg__maybe_capture(c, '[');
  if (cap) return cap > 0 && SG_GO(c);
  if (c->skip_to >= 0) {
    c->depth++;
    return 1;
  }
  if (c->mode < 0) {
    c->mode = 1;
    c->rec_depth = 1;
    c->depth++;
    return 1;
  }
  if (!sg__value_start(c, "an array", 1)) return SG_GO(c);
  int d = c->depth - c->rec_depth;
  if (d == 1 && c->rec_key == SG_RK_CONV) {
    c->in_conv = 1;
    c->have_conv = 1;
  } else if (d == 1 && c->rec_key == SG_RK_ID) {
    sg__bad(c, "\"id\" must be a string or a number");
  } else if (d == 2 && c->in_conv) {
    sg__bad(c, "a message must be an object");
  } else if (d == 3 && c->in_msg && (c->msg_key == SG_MK_FROM || c->msg_key == SG_MK_VALUE)) {
    sg__bad(c, c->msg_key == SG_MK_FROM ? "\"from\" must be a string"
                                        : "\"value\" must be a string");
  }
  c->depth++;
  return 1;
}

static int sg__end_array(void *ctx) {
  sg__ctx *c = ctx;
  c->events++;
  if (!SG_GO(c)) return 0;
  if (c->cap_depth >= 0) return sg__cap_close(c, ']') && SG_GO(c);
  c->depth--;
  if (c->skip_to >= 0) {
    if (c->depth == c->skip_to) {
      c->skip_to = -1;
      if (c->in_rec && c->depth == c->rec_depth) {
        c->in_rec = 0;
        sg__end_record(c);
        c->rec_index++;
        return SG_GO(c);
      }
    }
    return 1;
  }
  int d = c->depth - c->rec_depth;
  if (d == 1 && c->in_conv) c->in_conv = 0;
  if (c->mode == 1 && c->depth == 0) c->top_closed = 1;
  return 1;
}

static const yajl_callbacks sg__callbacks = {sg__null,      sg__bool,       NULL,
                                             NULL,          sg__number,     sg__string,
                                             sg__start_map, sg__map_key,    sg__end_map,
                                             sg__start_array, sg__end_array};

/* ---- driver ------------------------------------------------------------------------------------ */

static int sg__syntax_error(sg__ctx *c, const unsigned char *buf, size_t n) {
  size_t at = yajl_get_bytes_consumed(c->h);
  if (at > n) at = n;
  int64_t line = sg__line_at(c, at);
  unsigned char *e = yajl_get_error(c->h, 0, buf, n);
  char msg[256];
  snprintf(msg, sizeof msg, "%s", e ? (const char *)e : "?");
  size_t ml = strlen(msg);
  while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' ')) msg[--ml] = '\0';
  if (e) yajl_free_error(c->h, e);
  return kv_error_set(c->err, KV_EFORMAT, "%s: line %lld, byte %lld: JSON syntax error: %s",
                      c->name, (long long)line, (long long)(c->chunk_base + (int64_t)at), msg);
}

int trace_import_sharegpt_stream(FILE *f, const char *name, const trace_sharegpt_opts *o,
                                 trace *t, trace_sharegpt_stats *st, kv_error *err) {
  trace_sharegpt_opts dflt;
  trace_sharegpt_stats st_local;
  if (!o) {
    trace_sharegpt_opts_init(&dflt);
    o = &dflt;
  }
  if (!st) st = &st_local;
  memset(st, 0, sizeof *st);
  trace_init(t);
  if (o->msg_overhead < 0) {
    return kv_error_set(err, KV_EINVAL, "%s: msg_overhead must be >= 0", name);
  }
  snprintf(t->name, sizeof t->name, "sharegpt %s", trace_import_basename(name));
  snprintf(t->source, sizeof t->source, "%s (leading model messages %s)", name,
           o->lead == TRACE_SHAREGPT_LEAD_DROP ? "dropped" : "counted as prompt context");
  if (o->tok) {
    snprintf(t->tokenizer, sizeof t->tokenizer, "bpe %s%s",
             o->tokenizer_name ? o->tokenizer_name : "(user files)",
             o->msg_overhead ? " + per-message overhead" : "");
  } else {
    snprintf(t->tokenizer, sizeof t->tokenizer, "approx %s", trace_tok_approx_name(o->approx));
  }
  t->flags = TRACE_FLAG_FULL_HISTORY;

  sg__ctx c;
  memset(&c, 0, sizeof c);
  c.o = o;
  c.st = st;
  c.t = t;
  c.name = name;
  c.err = err;
  c.mode = -1;
  c.skip_to = -1;
  c.cap_depth = -1;
  trace_strmap_init(&c.done);
  size_t chunk = SG_CHUNK;
  unsigned char *buf = malloc(chunk);
  c.h = buf ? yajl_alloc(&sg__callbacks, NULL, &c) : NULL;
  int rc = 0;
  if (!buf || !c.h) {
    rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
  } else {
    yajl_config(c.h, yajl_allow_multiple_values, 1);
  }
  while (!rc) {
    size_t n = fread(buf, 1, chunk, f);
    if (n == 0) {
      if (ferror(f)) rc = kv_error_set(err, KV_EIO, "%s: read error", name);
      break;
    }
    c.chunk = buf;
    c.nl_scan = 0;
    int64_t events0 = c.events;
    yajl_status s = yajl_parse(c.h, buf, n);
    if (s == yajl_status_client_canceled) {
      rc = c.rc;
      break;
    }
    if (s != yajl_status_ok) {
      rc = sg__syntax_error(&c, buf, n);
      break;
    }
    sg__line_at(&c, n);
    c.chunk_base += (int64_t)n;
    /* No callback during a whole chunk: one value spans it, and yajl re-reads that value from
     * its start with every chunk; doubling the chunks keeps the total re-reading linear. */
    size_t want = c.events == events0 ? (chunk < SG_CHUNK_MAX ? chunk * 2 : chunk) : SG_CHUNK;
    if (want != chunk) {
      unsigned char *nb = realloc(buf, want);
      if (!nb) {
        rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory (a value longer than %zu bytes)",
                          name, chunk);
        break;
      }
      buf = nb;
      chunk = want;
    }
  }
  if (!rc && c.mode < 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: empty input (no JSON value)", name);
  }
  if (!rc && !c.limit_hit) {
    c.chunk = buf;
    c.nl_scan = 0;
    yajl_status s = yajl_complete_parse(c.h);
    if (s == yajl_status_client_canceled) rc = c.rc;
    else if (s != yajl_status_ok) rc = sg__syntax_error(&c, buf, 0);
  }
  if (!rc && !c.limit_hit) rc = sg__finish(&c);
  if (c.h) yajl_free(c.h);
  free(buf);
  free(c.rm);
  free(c.cm);
  free(c.cap_buf);
  free(c.cap_stack);
  trace_strmap_free(&c.done);
  return trace_import_finish(t, &st->base, rc);
}
