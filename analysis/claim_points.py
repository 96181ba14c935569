#!/usr/bin/env python3
"""claim_points — the papers' numbers (or ours) of named claims as gnuplot points.

usage: claim_points.py CLAIMS --ids ID,ID,... [--x X,X,...] [--field paper|ours] [--scale F]
                       [--nonnumeric nan] [-o OUT.dat]

CLAIMS is reproduce.py's claims.csv (id, group, title, paper, ours, status) or the claims file it
reads (experiments/claims.ini: one [id] section per claim with a 'paper' key); the paper column
is the same in both. One row per id, in the order given:
    x  value  lo  hi  "id"
x is the id's position (0, 1, 2, ...) unless --x gives one number per id. A number gives
value = lo = hi; a published range "a-b" (e.g. 0.176-0.415) gives its midpoint and its ends, so
    plot 'OUT.dat' using 1:2:3:4 with yerrorbars
draws the paper's number or range. --scale multiplies all three (e.g. 100 for percent). An id
missing from CLAIMS is an error, and so is a value that is not a number or a range (an ordering,
"> 1", an empty 'ours' of a claim that did not run) unless --nonnumeric nan writes NaN for it
(gnuplot skips such points).
"""
import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import AnalysisError, die, read_csv, read_ini, write_text_atomic  # noqa: E402

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def load_claims(path):
    """{id: {'paper': str, 'ours': str}} from claims.csv or claims.ini."""
    if path.endswith(".ini"):
        cp = read_ini(path)
        return {s: {"paper": cp[s].get("paper", ""), "ours": ""} for s in cp.sections()}
    header, rows = read_csv(path)
    for col in ("id", "paper", "ours"):
        if col not in header:
            raise AnalysisError(f"{path}: no column '{col}' (is it reproduce.py's claims.csv?)")
    return {r["id"]: {"paper": r["paper"], "ours": r["ours"]} for r in rows}


def parse_value(text, where):
    """'0.86' -> (0.86, 0.86, 0.86); '0.176-0.415' -> (0.2955, 0.176, 0.415); else None."""
    t = text.strip()
    if re.fullmatch(_NUM, t):
        v = float(t)
        return v, v, v
    m = re.fullmatch(rf"({_NUM})\s*-\s*({_NUM})", t)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            raise AnalysisError(f"{where}: range '{t}' has its ends reversed")
        return (lo + hi) / 2, lo, hi
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("claims")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--x", default="", help="one x per id (default 0, 1, 2, ...)")
    ap.add_argument("--field", default="paper", choices=["paper", "ours"])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--nonnumeric", default="error", choices=["error", "nan"])
    ap.add_argument("-o", "--out", default="-")
    a = ap.parse_args()
    try:
        claims = load_claims(a.claims)
        ids = [s.strip() for s in a.ids.split(",") if s.strip()]
        if not ids:
            raise AnalysisError("--ids is empty")
        xs = [s.strip() for s in a.x.split(",") if s.strip()]
        if xs and len(xs) != len(ids):
            raise AnalysisError(f"--x has {len(xs)} values for {len(ids)} ids")
        lines = [f"# {a.field} of {a.claims}: x value lo hi id"]
        for i, cid in enumerate(ids):
            if cid not in claims:
                raise AnalysisError(f"{a.claims}: no claim '{cid}'")
            where = f"{a.claims}: claim '{cid}' {a.field}"
            x = float(xs[i]) if xs else float(i)
            v = parse_value(claims[cid][a.field], where)
            if v is None:
                if a.nonnumeric == "error":
                    raise AnalysisError(f"{where}: '{claims[cid][a.field]}' is not a number or "
                                        "a range a-b")
                v = (math.nan, math.nan, math.nan)
            val, lo, hi = (u * a.scale for u in v)
            lines.append(f'{x:.9g} {val:.9g} {lo:.9g} {hi:.9g} "{cid}"')
        text = "\n".join(lines) + "\n"
        if a.out == "-":
            sys.stdout.write(text)
        else:
            write_text_atomic(a.out, text)
    except AnalysisError as e:
        die(str(e))


if __name__ == "__main__":
    main()
