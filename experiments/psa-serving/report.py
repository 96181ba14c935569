#!/usr/bin/env python3
"""report — the psa-serving results as markdown tables (docs/psa-serving.md).

usage: report.py TIDY_DIR [-o OUT.md] [--means DIR]

Reads the tidy tables that analysis/aggregate.py writes for the psa-serving sweeps
(psa-serving-*.csv) and prints, for whatever sweeps are present:
  - per method and serving mode: mean output error (from the attention profile), throughput and
    its ratio to dense, time between tokens, mean decode batch, GPU KV memory peak, PCIe block
    traffic per generated token, fraction of the context read;
  - PSA against fixed top-k at equal accuracy: for every PSA point, top-k's time per token
    interpolated at the PSA point's error (linear in error, logarithmic in time, between the two
    top-k budgets that bracket it) and the speedup; and the pairs of data/pairs.csv;
  - the pool, loop, reuse, extension, CachedAttention-combination and ShareGPT sweeps.
Means over seeds where a sweep has several; --means also writes them as tables
(psa-serving-*-means.csv, what experiments/claims.ini compares). Standard library only.
"""
import argparse
import csv
import math
import os
import sys
from collections import defaultdict


def write_atomic(path, write):
    """Writes through write(fh) to a temporary file beside `path`, renamed over it; like
    common/kv_fs.h, replaces only a regular file or nothing."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        sys.exit(f"report.py: {path}: not a regular file; an output replaces only a regular "
                 "file or nothing")
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    return rows


def num(r, k):
    try:
        return float(r.get(k, "nan"))
    except ValueError:
        return float("nan")


def mean(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def group(rows, keys):
    g = defaultdict(list)
    for r in rows:
        g[tuple(r.get(k, "") for k in keys)].append(r)
    return g


def f(x, d=3):
    if isinstance(x, str):
        return x
    if x is None or math.isnan(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{d}g}"


def table(out, head, rows):
    out.append("| " + " | ".join(head) + " |")
    out.append("| " + " | ".join("---" for _ in head) + " |")
    for r in rows:
        out.append("| " + " | ".join(f(c) for c in r) + " |")
    out.append("")


GIB = 1024.0 ** 3


def method_rows(rows, extra_keys, out, title):
    """One line per (extra keys..., method, offload): means over seeds."""
    keys = extra_keys + ["attention.method", "attention.offload"]
    g = group(rows, keys)
    dense = {}
    for k, rs in g.items():
        if k[-2] == "dense":
            dense[k[:-2]] = mean([num(r, "throughput_tok_s") for r in rs])
    lines = []
    for k in sorted(g, key=lambda k: (k[:-2], k[-1], k[-2])):
        rs = g[k]
        thr = mean([num(r, "throughput_tok_s") for r in rs])
        d = dense.get(k[:-2], float("nan"))
        dec = mean([num(r, "stat.decode_tokens") for r in rs])
        h2d = mean([num(r, "attn_h2d_bytes") for r in rs])
        lines.append(list(k[:-2]) + [k[-2], "offload" if k[-1] == "true" else "HBM",
                     mean([num(r, "attn_mean_err") for r in rs]),
                     thr, thr / d if d else float("nan"),
                     mean([num(r, "tbt_mean_s") for r in rs]) * 1e3,
                     mean([num(r, "ttft_mean_s") for r in rs]),
                     mean([num(r, "attn_batch_mean") for r in rs]),
                     mean([num(r, "gpu_kv_peak_bytes") for r in rs]) / GIB,
                     h2d / dec / 1e6 if dec else float("nan"),
                     mean([num(r, "attn_read_frac") for r in rs]),
                     mean([num(r, "attn_time_frac") for r in rs])])
    out.append(f"### {title}\n")
    table(out, [k.split(".")[-1] for k in extra_keys] +
          ["method", "KV", "mean err", "tokens/s", "x dense", "TBT ms", "TTFT s", "batch",
           "GPU KV GiB", "PCIe MB/token", "read frac", "attn time frac"], lines)


def interp_time(topk, err):
    """top-k's time per token at error `err`: topk = [(err, time)], sorted by err."""
    for (e0, t0), (e1, t1) in zip(topk, topk[1:]):
        if e0 <= err <= e1 and e1 > e0 and t0 > 0 and t1 > 0:
            a = (err - e0) / (e1 - e0)
            return math.exp(math.log(t0) * (1 - a) + math.log(t1) * a)
    return float("nan")


def equal_accuracy(rows, extra_keys, out, title):
    keys = extra_keys + ["attention.offload"]
    lines = []
    best = {}
    for k, rs in sorted(group(rows, keys).items()):
        by = group(rs, ["attention.method"])
        pts = {m[0]: (mean([num(r, "attn_mean_err") for r in v]),
                      mean([num(r, "time_per_token_s") for r in v])) for m, v in by.items()}
        topk = sorted(v for m, v in pts.items() if m.startswith("topk-"))
        for m, (e, t) in sorted(pts.items()):
            if not m.startswith("psa-"):
                continue
            tk = interp_time(topk, e)
            sp = tk / t if t > 0 else float("nan")
            lines.append(list(k[:-1]) + ["offload" if k[-1] == "true" else "HBM", m, e, tk, t, sp])
            if not math.isnan(sp) and (k not in best or sp > best[k][0]):
                best[k] = (sp, m)
    out.append(f"### {title}\n")
    table(out, [k.split(".")[-1] for k in extra_keys] +
          ["KV", "PSA", "mean err", "top-k s/token at that err", "PSA s/token", "PSA speedup"],
          lines)
    if best:
        out.append("Largest PSA speedup over top-k at equal mean error, per setting: " +
                   "; ".join(f"{'/'.join(k)}: {f(v[0])}x ({v[1]})" for k, v in sorted(best.items()))
                   + "\n")


def simple(rows, keys, cols, out, title):
    g = group(rows, keys)
    lines = []
    for k in sorted(g):
        rs = g[k]
        lines.append(list(k) + [c[1](rs) for c in cols])
    out.append(f"### {title}\n")
    table(out, [k.split(".")[-1] for k in keys] + [c[0] for c in cols], lines)


def col(name, scale=1.0):
    return lambda rs: mean([num(r, name) for r in rs]) * scale


def per_token(name, scale=1.0):
    def fn(rs):
        d = mean([num(r, "stat.decode_tokens") for r in rs])
        return mean([num(r, name) for r in rs]) / d * scale if d else float("nan")
    return fn


def write_means(tidy, dest):
    """For every psa-serving-*.csv of `tidy`: the mean over seeds of every numeric column per
    point of the parameter grid, as psa-serving-*-means.csv in `dest` (the claims compare these:
    seeds change the workload, so rows of different seeds must not be paired)."""
    for fn in sorted(os.listdir(tidy)):
        if not (fn.startswith("psa-serving-") and fn.endswith(".csv")) or fn.endswith("-means.csv"):
            continue
        with open(os.path.join(tidy, fn), newline="") as f:
            rd = csv.reader(line for line in f if not line.startswith("#"))
            header = next(rd, None)
            rows = list(rd)
        if not header or "seed" not in header:
            continue
        k = header.index("seed")
        params, rest = header[:k], [c for c in header[k:] if c not in ("seed", "point")]
        g = defaultdict(list)
        for r in rows:
            g[tuple(r[:k])].append(dict(zip(header, r)))
        path = os.path.join(dest, fn[:-4] + "-means.csv")
        def write_means(fh, params=params, rest=rest, g=g):
            w = csv.writer(fh)
            w.writerow(params + ["n_seeds"] + rest)
            for key in sorted(g):
                rs = g[key]
                vals = []
                for c in rest:
                    xs = [num(r, c) for r in rs]
                    vals.append(f"{mean(xs):.17g}" if not all(math.isnan(x) for x in xs)
                                else rs[0].get(c, ""))
                w.writerow(list(key) + [len(rs)] + vals)
        write_atomic(path, write_means)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tidy")
    ap.add_argument("-o", "--out")
    ap.add_argument("--means", metavar="DIR",
                    help="also write psa-serving-*-means.csv (means over seeds) into DIR")
    a = ap.parse_args()
    if a.means:
        write_means(a.tidy, a.means)
    out = []
    p = lambda n: os.path.join(a.tidy, f"psa-serving-{n}.csv")  # noqa: E731
    if os.path.exists(p("methods")):
        rows = read(p("methods"))
        method_rows(rows, ["attention.topk_extension", "workload.out_median"], out,
                    "Long-context workload: methods and serving modes (by top-k budget rule and "
                    "answer length)")
        equal_accuracy(rows, ["attention.topk_extension", "workload.out_median"], out,
                       "PSA vs fixed top-k at equal mean output error (long context)")
    if os.path.exists(p("pool")):
        simple(read(p("pool")), ["attention.method", "attention.pool_frac", "attention.pool"],
               [("tokens/s", col("throughput_tok_s")), ("batch", col("attn_batch_mean")),
                ("PCIe MB/token", per_token("attn_h2d_bytes", 1e-6)),
                ("hit rate", col("attn_block_hit_rate")),
                ("pool GiB", col("pool_bytes", 1 / GIB)),
                ("need unified (blocks)", col("pool_need_unified_blocks")),
                ("need equal (blocks)", col("pool_need_equal_blocks")),
                ("equal / unified", col("pool_equal_over_unified"))],
               out, "Block cache: unified pool vs equal per-layer partitions (offload)")
    if os.path.exists(p("loop")):
        simple(read(p("loop")), ["attention.method", "attention.offload", "attention.loop"],
               [("tokens/s", col("throughput_tok_s")), ("TBT ms", col("tbt_mean_s", 1e3)),
                ("attn time frac", col("attn_time_frac"))],
               out, "PSA iteration loop: pipelined vs host-synchronised")
    for name, title in (("reuse", "Sensitivity to block reuse between steps (offload, assumed)"),
                        ("reuse-measured", "Block reuse measured on the recording (offload)")):
        if os.path.exists(p(name)):
            keys = ["attention.method"] + (["attention.reuse_frac"] if name == "reuse" else [])
            simple(read(p(name)), keys,
                   [("tokens/s", col("throughput_tok_s")), ("TBT ms", col("tbt_mean_s", 1e3)),
                    ("batch", col("attn_batch_mean")),
                    ("PCIe MB/token", per_token("attn_h2d_bytes", 1e-6)),
                    ("hit rate", col("attn_block_hit_rate")),
                    ("PCIe stall frac", col("attn_pcie_stall_frac"))], out, title)
    if os.path.exists(p("draws")):
        simple(read(p("draws")), ["attention.method", "attention.redraw", "attention.head_draws"],
               [("tokens/s", col("throughput_tok_s")), ("hit rate", col("attn_block_hit_rate")),
                ("PCIe MB/token", per_token("attn_h2d_bytes", 1e-6))],
               out, "How budgets are drawn (offload, measured reuse)")
    if os.path.exists(p("extension")):
        simple(read(p("extension")),
               ["attention.method", "attention.offload", "attention.extension"],
               [("tokens/s", col("throughput_tok_s")), ("read frac", col("attn_read_frac")),
                ("batch", col("attn_batch_mean"))],
               out, "Extension rule from the recorded lengths to 16K-128K")
    if os.path.exists(p("cachedattention")):
        method_rows(read(p("cachedattention")), ["cache.mode"], out,
                    "PSA with the CachedAttention hierarchy (multi-turn long context)")
        simple(read(p("cachedattention")), ["cache.mode", "attention.method", "attention.offload"],
               [("hit rate", col("hit_rate")), ("prefill tokens/s", col("prefill_throughput_tok_s")),
                ("TTFT s", col("ttft_mean_s"))], out, "... its cache side")
    if os.path.exists(p("sharegpt")):
        rows = read(p("sharegpt"))
        method_rows(rows, ["cache.mode"], out, "ShareGPT-style workload")
        equal_accuracy(rows, ["cache.mode"], out, "ShareGPT: PSA vs top-k at equal mean error")
    text = "\n".join(out) + "\n"
    if a.out:
        write_atomic(a.out, lambda fh: fh.write(text))
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
