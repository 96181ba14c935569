#!/usr/bin/env python3
"""make-micro — writes the workloads of CachedAttention's per-job micro-benchmarks (kvlab trace
CSV, docs/trace-format.md), deterministically:

  preload-1k100.csv  the pre-loading ablation (1K-token history + 100 new tokens, LLaMA-2-13B):
                     20 sessions build a 1,000-token history (turn 0, 1 s apart, one output
                     token); at 300 s each second turn (100 new tokens, one output token) arrives
                     right behind a compute-only job (a one-token prompt decoding 30 tokens, no
                     KV transfers), so with batch_limit = 1 the second turn waits at the queue
                     head while that job runs and its read buffer fills, as in the paper (the
                     buffer is loaded during the previous job). The jobs' KV (20 x 0.78 GB +
                     20 x ~0.02 GB) fits in DRAM: every second turn hits DRAM.
  async-1k16k.csv    the asynchronous-saving ablation: 20 single-turn jobs with prompts of
                     1,000 to 1,600 tokens (the paper's range, evenly spaced), one output token
                     each, arriving 1 us apart from t = 0 and run back to back (batch_limit = 1): with
                     synchronous saving each job's KV is written before the next starts, with
                     asynchronous saving the write overlaps the next job.

usage: make-micro.py [OUT_DIR]   (default: this script's folder)
"""
import os
import sys

HDR = ("# kvlab-trace-csv 1\n# name: {name}\n# source: experiments/cachedattention/data/"
       "make-micro.py: {src}\n# tokenizer: synthetic\n# flags: 1\n# block_tokens: 0\n"
       "session_id,session_arrival_ns,turn,arrival_ns,think_ns,input_tokens,new_tokens,"
       "output_tokens,hashes\n")
S = 1_000_000_000


def preload(path):
    rows = []
    n = 20
    t1 = 300 * S
    for i in range(n):
        a0 = i * S
        # session i: history turn, then the measured turn 1 us behind blocker i
        at = t1 + i * 2000 + 1000
        rows.append((i, a0, 0, a0, 0, 1000, 1000, 1))
        rows.append((i, a0, 1, at, at - a0, 1101, 100, 1))
    for i in range(n):
        sid = 1000 + i
        at = t1 + i * 2000
        rows.append((sid, at, 0, at, 0, 1, 1, 30))
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    write(path, "preload-1k100", "pre-loading micro-benchmark (1K history + 100 new tokens, "
          "each behind a compute-only job)", rows)


def async_save(path):
    n = 20
    rows = []
    for i in range(n):
        tokens = 1000 + round(600 * i / (n - 1))
        rows.append((i, i * 1000, 0, i * 1000, 0, tokens, tokens, 1))
    write(path, "async-1k16k", "asynchronous-saving micro-benchmark (prompts 1K-1.6K tokens, "
          "back to back)", rows)


def write(path, name, src, rows):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(HDR.format(name=name, src=src))
        for r in rows:
            f.write(",".join(str(x) for x in r) + ",\n")
    os.replace(path + ".tmp", path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    preload(os.path.join(out, "preload-1k100.csv"))
    async_save(os.path.join(out, "async-1k16k.csv"))


if __name__ == "__main__":
    main()
