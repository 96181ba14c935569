#!/usr/bin/env python3
"""psa_budget.py -- KV read at matched accuracy, from psa-compare's per-record CSVs.

  psa_budget.py RECORDS.csv [RECORDS.csv ...] [--by layer|kind] [--out TABLE.csv]

Each input is the PREFIX.csv that `psa-compare -o PREFIX` writes (one row per sequence, layer,
query, query head and method). Pooled over every row of every input (optionally per layer), for
each method: mean tokens of the KV head's block set (kv_tokens: what is read, shared by the query
group), mean tokens of the query head's own ranking (head_tokens), mean and 90th-percentile
relative L2 output error, and for PSA / oracle the calibration: the fraction of (query, head)
cases whose true covered mass reached the method's epsilon.

Matched accuracy: the top-k methods present (every ranking, every budget) form a lower envelope
of tokens against error; for each other method, the tokens the envelope needs for the method's
error (log-log interpolation between neighbouring budgets; an error below the envelope's range
gives no ratio) divided by the method's kv_tokens is its ratio "at matched mean error" and "at
matched p90 error". Errors of exactly 0 (a budget covering the whole context) count as 1e-7.
Standard library only.
"""
import argparse
import csv
import math
import re
import sys

FLOOR = 1e-7


def die(msg):
    print("psa_budget: " + msg, file=sys.stderr)
    sys.exit(1)


def read_rows(paths):
    need = {"method", "layer", "tokens_read", "mass_covered", "rel_l2_err"}
    for p in paths:
        try:
            f = open(p, newline="")
        except OSError as e:
            die("%s: %s" % (p, e.strerror))
        with f:
            r = csv.DictReader(f)
            missing = need - set(r.fieldnames or [])
            if missing:
                die("%s: not a psa-compare records CSV (missing column(s) %s)" %
                    (p, ", ".join(sorted(missing))))
            for i, row in enumerate(r, start=2):
                try:
                    yield {"file": p, "method": row["method"], "layer": int(row["layer"]),
                           "kv": float(row["tokens_read"]),
                           "head": float(row.get("head_tokens") or row["tokens_read"]),
                           "mass": float(row["mass_covered"]),
                           "err": float(row["rel_l2_err"])}
                except ValueError as e:
                    die("%s: line %d: %s" % (p, i, e))


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def epsilon_of(label):
    m = re.match(r"^(psa|oracle)-([0-9.eE+-]+?)(-|$)", label)
    return float(m.group(2)) if m else None


def summarise(rows):
    out = {}
    for r in rows:
        out.setdefault(r["method"], []).append(r)
    res = {}
    for name, rs in out.items():
        n = len(rs)
        errs = [max(r["err"], FLOOR) for r in rs]
        eps = epsilon_of(name)
        res[name] = {"method": name, "cases": n, "kv_tokens": sum(r["kv"] for r in rs) / n,
                     "head_tokens": sum(r["head"] for r in rs) / n,
                     "err_mean": sum(errs) / n, "err_p90": quantile(errs, 0.9),
                     "calibration": (sum(1 for r in rs if r["mass"] >= eps - 1e-12) / n
                                     if eps is not None else float("nan")),
                     "epsilon": eps}
    return res


def envelope(points):
    """Lower envelope of (tokens, err): for decreasing error, increasing tokens."""
    out, best = [], float("inf")
    for t, e in sorted(points):
        if e < best:
            out.append((t, e))
            best = e
    return out


def matched(env, err):
    for (t0, e0), (t1, e1) in zip(env, env[1:]):
        if e0 >= err >= e1 and e0 > e1:
            a = (math.log(e0) - math.log(err)) / (math.log(e0) - math.log(e1))
            return math.exp(math.log(t0) + a * (math.log(t1) - math.log(t0)))
    return float("nan")


def table(rows):
    res = summarise(rows)
    topk = [v for k, v in res.items() if k.startswith("topk")]
    env_mean = envelope([(v["kv_tokens"], v["err_mean"]) for v in topk])
    env_p90 = envelope([(v["kv_tokens"], v["err_p90"]) for v in topk])
    for v in res.values():
        v["ratio_mean"] = matched(env_mean, v["err_mean"]) / v["kv_tokens"]
        v["ratio_p90"] = matched(env_p90, v["err_p90"]) / v["kv_tokens"]
    return sorted(res.values(), key=lambda v: (v["method"].split("-")[0], v["kv_tokens"]))


COLS = ["group", "method", "cases", "kv_tokens", "head_tokens", "err_mean", "err_p90",
        "calibration", "ratio_mean", "ratio_p90"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+")
    ap.add_argument("--by", choices=["layer"], help="also one table per layer")
    ap.add_argument("--out", help="write every table as one CSV")
    args = ap.parse_args()
    rows = list(read_rows(args.records))
    if not rows:
        die("no records in %s" % ", ".join(args.records))
    groups = [("all", rows)]
    if args.by == "layer":
        for L in sorted({r["layer"] for r in rows}):
            groups.append(("layer %d" % L, [r for r in rows if r["layer"] == L]))
    out = []
    for gname, rs in groups:
        print("# %s: %d records" % (gname, len(rs)))
        print("%-46s %7s %9s %9s %8s %8s %6s %7s %7s" % (
            "method", "cases", "kv_tokens", "head_tok", "err_mean", "err_p90", "calib",
            "x@mean", "x@p90"))
        for v in table(rs):
            v["group"] = gname
            out.append(v)
            print("%-46s %7d %9.1f %9.1f %8.5f %8.5f %6s %7s %7s" % (
                v["method"], v["cases"], v["kv_tokens"], v["head_tokens"], v["err_mean"],
                v["err_p90"], "-" if math.isnan(v["calibration"]) else "%.3f" % v["calibration"],
                "-" if math.isnan(v["ratio_mean"]) else "%.2f" % v["ratio_mean"],
                "-" if math.isnan(v["ratio_p90"]) else "%.2f" % v["ratio_p90"]))
    if args.out:
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from kvlab_analysis import AnalysisError, check_output_path
        try:
            check_output_path(args.out)  # replace only a regular file or nothing
        except AnalysisError as e:
            sys.exit("psa_budget.py: %s" % e)
        tmp = "%s.tmp.%d" % (args.out, os.getpid())
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLS, extrasaction="ignore")
            w.writeheader()
            for v in out:
                w.writerow(v)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
