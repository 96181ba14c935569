#ifndef KVLAB_IMPORT_SHAREGPT_ROLES_H
#define KVLAB_IMPORT_SHAREGPT_ROLES_H
/* Private to the ShareGPT importer: what a role of the default table is, for the statistics
 * (its side may be overridden through trace_sharegpt_opts.roles). */
#include <stddef.h>

#include "import_sharegpt.h"

enum {
  TRACE_SG_KIND_USER,
  TRACE_SG_KIND_MODEL,
  TRACE_SG_KIND_SYSTEM,
  TRACE_SG_KIND_TOOL_CALL,
  TRACE_SG_KIND_TOOL_RESULT,
  TRACE_SG_KIND_OTHER /* not in the default table */
};

/* The kind of `role` (len bytes, case-insensitive) in the default table. */
int trace_sharegpt_role_kind(const char *role, size_t len);

#endif
