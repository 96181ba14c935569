"""Reference token counts for sharegpt_tools_zh.json, independent of the C code under test:
GPT-2's BPE as Hugging Face `tokenizers` implements it (ByteLevelBPETokenizer over the same
encoder.json / vocab.bpe), applied to each text the importer counts (the record's "system" and
"tools" (a JSON value as json.dumps(ensure_ascii=False) writes it), then every message). Writes
sharegpt_tools_zh_ref.csv: per conversation, in file order, its total tokens (GPT-2), its
chars/4 estimate (sum over texts of ceil(code points / 4)), its code points and of those the CJK
ideographs (U+4E00..U+9FFF).

usage: python3 sharegpt_tools_zh_ref.py [GPT2_DIR]   (needs the `tokenizers` package; GPT2_DIR
holds encoder.json and vocab.bpe, by default $KVLAB_SHARED_DIR/data/tokenizers/gpt2 or
../shared/data/tokenizers/gpt2 beside the checkout; none ships with the repository)"""
import csv
import json
import math
import os
import sys

from tokenizers import ByteLevelBPETokenizer

here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("KVLAB_SHARED_DIR", os.path.join(here, "..", "..", "..", "..", "shared"))
gpt2 = sys.argv[1] if len(sys.argv) > 1 else os.path.join(shared, "data", "tokenizers", "gpt2")
tok = ByteLevelBPETokenizer(os.path.join(gpt2, "encoder.json"), os.path.join(gpt2, "vocab.bpe"))
recs = json.load(open(os.path.join(here, "sharegpt_tools_zh.json"), encoding="utf-8"))
with open(os.path.join(here, "sharegpt_tools_zh_ref.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["conversation", "gpt2_tokens", "chars4", "chars", "cjk_chars"])
    for i, r in enumerate(recs):
        texts = []
        if r.get("system"):
            texts.append(r["system"])
        tools = r.get("tools")
        if isinstance(tools, str) and tools not in ("", "[]"):
            texts.append(tools)
        elif isinstance(tools, (list, dict)) and tools:
            texts.append(json.dumps(tools, ensure_ascii=False))
        for m in r.get("conversations", r.get("messages", [])):
            texts.append(m.get("value", m.get("content")))
        gpt = sum(len(tok.encode(t).ids) for t in texts)
        c4 = sum(math.ceil(len(t) / 4) for t in texts)
        chars = sum(len(t) for t in texts)
        cjk = sum(1 for t in texts for ch in t if "\u4e00" <= ch <= "\u9fff")
        w.writerow([i, gpt, c4, chars, cjk])
