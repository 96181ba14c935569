/* libFuzzer target: the streaming ShareGPT importer (traces/import_sharegpt.h) with the BPE
 * tokenizer of fuzz_tok.h; the first input byte picks the options, its top two bits the role
 * mapping (none; tool results dropped and calls rejected; tool calls as prompts and an unknown
 * role "alien" as output; "tools"/"system" ignored). */
#include "fuzz_common.h"
#include "fuzz_tok.h"
#include "import_sharegpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t sel = data[0], roles = (uint8_t)(sel >> 6);
  for (int mode = 0; mode < 2; mode++) {
    FILE *f = fuzz_stream(data + 1, size - 1);
    if (!f) return 0;
    trace_sharegpt_opts o;
    trace_sharegpt_opts_init(&o);
    o.base.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
    o.tok = (sel & 1) ? fuzz_tokenizer() : NULL;
    /* without the tokenizer: words, or the script estimate (the default) in the stop mode and
     * chars/4 in the skip mode */
    o.approx = (sel & 2) ? TRACE_TOK_APPROX_WORDS
               : mode    ? TRACE_TOK_APPROX_CHARS4
                         : TRACE_TOK_APPROX_SCRIPT;
    o.lead = (sel & 4) ? TRACE_SHAREGPT_LEAD_DROP : TRACE_SHAREGPT_LEAD_AS_PROMPT;
    o.msg_overhead = (sel >> 3) & 3;
    o.base.max_records = (sel & 32) ? 3 : 0;
    kv_error re = {0};
    int bad = 0;
    if (roles == 1) {
      bad |= trace_sharegpt_parse_role(&o, "observation=drop", &re);
      bad |= trace_sharegpt_parse_role(&o, "tool=drop", &re);
      bad |= trace_sharegpt_parse_role(&o, "function_call=reject", &re);
    } else if (roles == 2) {
      bad |= trace_sharegpt_parse_role(&o, "function_call=prompt", &re);
      bad |= trace_sharegpt_parse_role(&o, "tool_call=prompt", &re);
      bad |= trace_sharegpt_parse_role(&o, "alien=output", &re);
    } else if (roles == 3) {
      o.ignore_tools = 1;
    }
    if (bad) abort();
    trace t;
    trace_sharegpt_stats st;
    kv_error e = {0};
    if (trace_import_sharegpt_stream(f, "fuzz.json", &o, &t, &st, &e) == 0) {
      fuzz_expect_valid(&t);
      if (!(t.flags & TRACE_FLAG_FULL_HISTORY)) abort();
      trace_free(&t);
    }
    fclose(f);
  }
  return 0;
}
