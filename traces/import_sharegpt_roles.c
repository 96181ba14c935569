/* The ShareGPT role table and its command-line overrides (split from import_sharegpt.c; the
 * public functions are declared in import_sharegpt.h). */
#include "import_sharegpt_roles.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
  const char *name;
  trace_sharegpt_side side;
  int kind;
} sg__roles[] = {
    {"human", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_USER},
    {"user", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_USER},
    {"gpt", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_MODEL},
    {"chatgpt", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_MODEL},
    {"bard", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_MODEL},
    {"model", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_MODEL},
    {"assistant", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_MODEL},
    {"system", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_SYSTEM},
    {"function_call", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_TOOL_CALL},
    {"tool_call", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_TOOL_CALL},
    {"tool_calls", TRACE_SHAREGPT_SIDE_OUTPUT, TRACE_SG_KIND_TOOL_CALL},
    {"observation", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_TOOL_RESULT},
    {"tool", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_TOOL_RESULT},
    {"function", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_TOOL_RESULT},
    {"ipython", TRACE_SHAREGPT_SIDE_PROMPT, TRACE_SG_KIND_TOOL_RESULT},
};

static int sg__role_eq(const char *name, const char *role, size_t len) {
  return strlen(name) == len && !strncasecmp(name, role, len);
}

int trace_sharegpt_role_kind(const char *role, size_t len) {
  for (size_t i = 0; i < sizeof sg__roles / sizeof sg__roles[0]; i++) {
    if (sg__role_eq(sg__roles[i].name, role, len)) return sg__roles[i].kind;
  }
  return TRACE_SG_KIND_OTHER;
}

trace_sharegpt_side trace_sharegpt_role_side(const trace_sharegpt_opts *o, const char *role,
                                             size_t len) {
  for (int i = 0; o && i < o->n_roles; i++) {
    if (sg__role_eq(o->roles[i].name, role, len)) return o->roles[i].side;
  }
  for (size_t i = 0; i < sizeof sg__roles / sizeof sg__roles[0]; i++) {
    if (sg__role_eq(sg__roles[i].name, role, len)) return sg__roles[i].side;
  }
  return TRACE_SHAREGPT_SIDE_REJECT;
}

int trace_sharegpt_set_role(trace_sharegpt_opts *o, const char *name, trace_sharegpt_side side,
                            kv_error *err) {
  size_t n = strlen(name);
  if (n == 0 || n >= sizeof o->roles[0].name) {
    return kv_error_set(err, KV_EINVAL, "role '%.40s': a role name has 1 to %zu bytes", name,
                        sizeof o->roles[0].name - 1);
  }
  if (side < TRACE_SHAREGPT_SIDE_PROMPT || side > TRACE_SHAREGPT_SIDE_REJECT) {
    return kv_error_set(err, KV_EINVAL, "role '%s': bad side %d", name, (int)side);
  }
  int i;
  for (i = 0; i < o->n_roles; i++) {
    if (sg__role_eq(o->roles[i].name, name, n)) break;
  }
  if (i == o->n_roles) {
    if (o->n_roles == TRACE_SHAREGPT_MAX_ROLES) {
      return kv_error_set(err, KV_ERANGE, "role '%s': more than %d role mappings", name,
                          TRACE_SHAREGPT_MAX_ROLES);
    }
    o->n_roles++;
  }
  snprintf(o->roles[i].name, sizeof o->roles[i].name, "%s", name);
  o->roles[i].side = side;
  return 0;
}

int trace_sharegpt_parse_role(trace_sharegpt_opts *o, const char *spec, kv_error *err) {
  const char *eq = strchr(spec, '=');
  static const char *const sides[4] = {"prompt", "output", "drop", "reject"};
  char name[64];
  if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof name) {
    return kv_error_set(err, KV_EINVAL, "role mapping '%.60s': expected NAME=SIDE (SIDE: prompt, "
                        "output, drop or reject)", spec);
  }
  memcpy(name, spec, (size_t)(eq - spec));
  name[eq - spec] = '\0';
  for (int s = 0; s < 4; s++) {
    if (!strcmp(eq + 1, sides[s])) return trace_sharegpt_set_role(o, name, s, err);
  }
  return kv_error_set(err, KV_EINVAL, "role mapping '%.60s': side '%.20s' is not prompt, output, "
                      "drop or reject", spec, eq + 1);
}

