#!/usr/bin/env python3
"""aggregate — turn sweep results into tidy CSV tables.

usage: aggregate.py RESULTS_DIR [-o OUT_DIR] [SWEEP ...]

For each sweep directory RESULTS_DIR/<sweep>/ (or only the named ones), reads every finished point
(<point>/done present; *.failed, *.stale-* and temporary directories are ignored), its point.ini
(swept parameters as the runner split them in [assign], seed, id) and the result file named by
[sweep] results in point.ini, and writes OUT_DIR/<sweep>.csv: the parameter columns (named by
their key, e.g. cache.policy; a zipped key "a+b" gives one column per component), seed, point,
then the result file's columns, one output row
per result row ('#' comment lines are skipped; a key,value file such as kvsim's summary.csv becomes
one row with a column per key). Output is written atomically.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import (AnalysisError, die, pivot_key_value, read_csv, read_ini,  # noqa: E402
                            write_csv_atomic)


def aggregate_sweep(sweep_dir):
    points = sorted(p for p in os.listdir(sweep_dir)
                    if not p.startswith(".") and ".failed" not in p and ".stale-" not in p
                    and os.path.isdir(os.path.join(sweep_dir, p)))
    header, rows = [], []
    for p in points:
        pdir = os.path.join(sweep_dir, p)
        if not os.path.exists(os.path.join(pdir, "done")):
            continue
        ini = read_ini(os.path.join(pdir, "point.ini"))
        # [assign]: the point's parameters with zipped keys already split by the sweep runner
        # (experiments/xp_sweep.h, the one parser of the sweep syntax)
        if ini.has_section("params") and not ini.has_section("assign"):
            raise AnalysisError(f"{pdir}/point.ini: no [assign] section (written by a sweep "
                                "runner older than this analysis: rerun the sweep)")
        params = dict(ini["assign"].items()) if ini.has_section("assign") else {}
        res = ini.get("sweep", "results", fallback="").strip()
        if not res:
            raise AnalysisError(f"{pdir}/point.ini: [sweep] results is empty: the sweep names no "
                                "result file to aggregate")
        rpath = os.path.join(pdir, res)
        if not os.path.exists(rpath):
            raise AnalysisError(f"{rpath}: missing (point finished without its result file)")
        rh, rrows = pivot_key_value(*read_csv(rpath))
        base = dict(params)
        base["seed"] = ini.get("point", "seed", fallback="")
        base["point"] = ini.get("point", "id", fallback=p)
        cols = list(params) + ["seed", "point"] + [c for c in rh if c not in params]
        for c in cols:
            if c not in header:
                header.append(c)
        for r in rrows:
            row = dict(base)
            for k, v in r.items():
                if k in params:
                    continue  # a result column that repeats a parameter keeps the parameter
                row[k] = v
            rows.append(row)
    return header, rows


def main():
    ap = argparse.ArgumentParser(description="Aggregate sweep results into tidy CSV tables.")
    ap.add_argument("results", help="results root (the sweep runner's --out)")
    ap.add_argument("sweeps", nargs="*", help="sweep names (default: all)")
    ap.add_argument("-o", "--out", default=None, help="output directory (default: RESULTS/tidy)")
    a = ap.parse_args()
    if not os.path.isdir(a.results):
        die(f"{a.results}: not a directory")
    out = a.out or os.path.join(a.results, "tidy")
    os.makedirs(out, exist_ok=True)
    names = a.sweeps or sorted(d for d in os.listdir(a.results)
                               if os.path.isdir(os.path.join(a.results, d)) and d != "tidy")
    try:
        for n in names:
            d = os.path.join(a.results, n)
            if not os.path.isdir(d):
                die(f"{d}: no such sweep directory")
            header, rows = aggregate_sweep(d)
            if not rows:
                print(f"aggregate: {n}: no finished points", file=sys.stderr)
                continue
            write_csv_atomic(os.path.join(out, f"{n}.csv"), header, rows)
            print(f"aggregate: {n}: {len(rows)} rows -> {out}/{n}.csv", file=sys.stderr)
    except AnalysisError as e:
        die(str(e))


if __name__ == "__main__":
    main()
