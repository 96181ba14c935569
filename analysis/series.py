#!/usr/bin/env python3
"""series — extract plot series from a tidy table for gnuplot.

usage: series.py TABLE.csv --x COL --y COL [--series COL] [--where k=v,...] [-o OUT.dat]
                 [--x-scale F] [--y-scale F] [--label-map a=A,b=B]
                 [--match COL=REGEX ...] [--y-over COL]
                 [--base-where k=v,... --op reduction|ratio|difference [--base-match COL,...]]
                 [--x-categorical [--x-order a,b,c] [--x-labels a=A,b=B]]

Groups rows by --series (one gnuplot data block per value, in order of first appearance, or of
--order a,b,c), averages --y over rows sharing an x (e.g. seeds), sorts by x and writes blocks
separated by two blank lines. Each block starts with a header line ("<label>" "<label>"), so
    plot for [i=0:*] 'OUT.dat' index i using 1:2 with linespoints title columnheader(1)
draws one labelled line per series. Columns per row: x, mean y, min y, max y, count.

Options for figures (all optional; without them the output is as above):
  --match COL=REGEX   keep rows whose COL matches REGEX (re.search); repeatable, combined with
                      --where (e.g. --match 'method=^psa-.*-mean$').
  --y-over COL        y is mean(--y) / mean(COL) over the rows sharing a series and an x (the
                      same rule as reproduce.py's op = quotient); min and max are of the per-row
                      quotients.
  --base-where, --op  y is compared with a baseline: the mean of --y over the rows matching
                      --base-where (chosen from the whole table, not only --where's rows) that
                      have the same x (and the same values of the --base-match columns):
                      reduction = 1 - y / base, ratio = y / base, difference = y - base
                      (reproduce.py's ops); applied to the mean, min and max. An x with no
                      baseline row is an error. --base-global: one baseline, the mean over all
                      --base-where rows whatever their x (e.g. every policy vs one of them).
  --band LO,HI        columns 3 and 4 are the means of the columns LO and HI (e.g. a table's own
                      p10 and p90) instead of min and max of y; scaled by --y-scale.
  --x-categorical     x is a label, not a number: rows are placed at x = 0, 1, 2, ... in the
                      order of --x-order (values not listed are dropped; default: first
                      appearance) and a sixth column holds the label (--x-labels maps values to
                      labels), for  using 1:2:xtic(6).
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import (AnalysisError, die, parse_where, read_csv, select,  # noqa: E402
                            to_float, write_text_atomic)


def parse_match(specs):
    """['col=regex', ...] -> [(col, compiled regex)]."""
    out = []
    for spec in specs or []:
        if "=" not in spec:
            raise AnalysisError(f"--match: '{spec}' is not COL=REGEX")
        col, rx = spec.split("=", 1)
        try:
            out.append((col.strip(), re.compile(rx)))
        except re.error as e:
            raise AnalysisError(f"--match: bad regular expression '{rx}': {e}") from None
    return out


def apply_op(op, y, base, where):
    if op == "reduction":
        return 1 - y / base if base else float("nan")
    if op == "ratio":
        return y / base if base else float("nan")
    if op == "difference":
        return y - base
    raise AnalysisError(f"{where}: unknown --op '{op}' (reduction, ratio or difference)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--x", required=True)
    ap.add_argument("--y", required=True)
    ap.add_argument("--series", default=None)
    ap.add_argument("--where", default="")
    ap.add_argument("--match", action="append", default=[], help="COL=REGEX (repeatable)")
    ap.add_argument("--order", default="", help="series values in this order (others dropped)")
    ap.add_argument("--label-map", default="", help="series value=label pairs")
    ap.add_argument("--x-scale", type=float, default=1.0)
    ap.add_argument("--y-scale", type=float, default=1.0)
    ap.add_argument("--y-over", default=None, help="y = mean(y) / mean(this column)")
    ap.add_argument("--base-where", default=None, help="baseline rows (col=value, ...)")
    ap.add_argument("--base-match", default="", help="columns the baseline must also match")
    ap.add_argument("--base-global", action="store_true", help="one baseline for every x")
    ap.add_argument("--op", default=None, help="reduction | ratio | difference vs the baseline")
    ap.add_argument("--band", default=None, help="LO,HI: columns 3-4 from these columns")
    ap.add_argument("--x-categorical", action="store_true", help="x is a label")
    ap.add_argument("--x-order", default="", help="categorical x values in this order")
    ap.add_argument("--x-labels", default="", help="categorical x value=label pairs")
    ap.add_argument("-o", "--out", default="-")
    a = ap.parse_args()
    try:
        if (a.base_where is None) != (a.op is None):
            raise AnalysisError("--base-where and --op go together")
        if a.base_global and (a.base_where is None or a.base_match):
            raise AnalysisError("--base-global needs --base-where and excludes --base-match")
        _, all_rows = read_csv(a.table)
        rows = select(all_rows, parse_where(a.where, "--where"), a.table, "--where")
        matches = parse_match(a.match)
        if all_rows:
            for col, _ in matches:
                if col not in all_rows[0]:
                    raise AnalysisError(f"{a.table}: no column '{col}' (--match)")
        rows = [r for r in rows if all(rx.search(r[c]) for c, rx in matches)]
        if not rows:
            raise AnalysisError(f"{a.table}: no rows match --where {a.where} "
                                f"{' '.join('--match ' + m for m in a.match)}".rstrip())
        band = [c.strip() for c in (a.band or "").split(",") if c.strip()]
        if a.band is not None and (len(band) != 2 or a.op or a.y_over):
            raise AnalysisError("--band takes two columns LO,HI and excludes --op and --y-over")
        base_match = [c.strip() for c in a.base_match.split(",") if c.strip()]
        for col in ([a.x, a.y] + ([a.series] if a.series else []) +
                    ([a.y_over] if a.y_over else []) + base_match + band):
            if col not in rows[0]:
                raise AnalysisError(f"{a.table}: no column '{col}'")
        labels = dict(parse_where(a.label_map, "--label-map"))
        x_labels = dict(parse_where(a.x_labels, "--x-labels"))
        x_order = [s.strip() for s in a.x_order.split(",") if s.strip()]

        def xkey(r):
            if a.x_categorical:
                return r[a.x]
            return to_float(r[a.x], f"{a.table}: {a.x}") * a.x_scale

        if a.x_categorical:
            seen = x_order or list(dict.fromkeys(r[a.x] for r in rows))
            xpos = {v: i for i, v in enumerate(seen)}
            rows = [r for r in rows if r[a.x] in xpos]
            if not rows:
                raise AnalysisError(f"{a.table}: no rows have {a.x} in --x-order {a.x_order}")
            missing_x = [v for v in x_order if v not in {r[a.x] for r in rows}]
            if missing_x:
                raise AnalysisError(f"{a.table}: --x-order names {a.x} values with no rows: "
                                    f"{missing_x}")

        base = {}
        if a.base_where is not None:
            brows = select(all_rows, parse_where(a.base_where, "--base-where"), a.table,
                           "--base-where")
            if not brows:
                raise AnalysisError(f"{a.table}: no rows match --base-where {a.base_where}")
            for r in brows:
                k = (None,) if a.base_global else (xkey(r),) + tuple(r[c] for c in base_match)
                base.setdefault(k, []).append(to_float(r[a.y], f"{a.table}: {a.y}") * a.y_scale)

        groups = {}
        for r in rows:
            key = r[a.series] if a.series else a.y
            x = xkey(r)
            y = to_float(r[a.y], f"{a.table}: {a.y}") * a.y_scale
            d = to_float(r[a.y_over], f"{a.table}: {a.y_over}") if a.y_over else 1.0
            if band:
                d = tuple(to_float(r[c], f"{a.table}: {c}") * a.y_scale for c in band)
            bk = (x,) + tuple(r[c] for c in base_match)
            groups.setdefault(key, {}).setdefault(x, {}).setdefault(bk, []).append((y, d))
        order = [s.strip() for s in a.order.split(",") if s.strip()] or list(groups)
        missing = [s for s in order if s not in groups]
        if missing:
            raise AnalysisError(f"{a.table}: --order names series with no rows: {missing}")
        blocks = []
        for s in order:
            lab = labels.get(s, s).replace('"', "'")
            lines = [f'"{lab}" "{lab}"']
            xs = sorted(groups[s], key=(lambda v: xpos[v]) if a.x_categorical else None)
            for x in xs:
                means, lows, highs, n = [], [], [], 0
                for bk, pts in groups[s][x].items():
                    ys = [y for y, _ in pts]
                    if a.y_over:
                        ds = [d for _, d in pts]
                        m = (sum(ys) / len(ys)) / (sum(ds) / len(ds)) if sum(ds) else float("nan")
                        per = [y / d if d else float("nan") for y, d in pts]
                    else:
                        m, per = sum(ys) / len(ys), ys
                    lo, hi = min(per), max(per)
                    if band:
                        lo = sum(d[0] for _, d in pts) / len(pts)
                        hi = sum(d[1] for _, d in pts) / len(pts)
                    if a.op:
                        if a.base_global:
                            bk = (None,)
                        if bk not in base:
                            raise AnalysisError(
                                f"{a.table}: no --base-where {a.base_where} row for {a.x}={x}"
                                + "".join(f", {c}={v}" for c, v in zip(base_match, bk[1:])))
                        b = sum(base[bk]) / len(base[bk])
                        where = f"{a.table}: --op"
                        m, lo, hi = (apply_op(a.op, v, b, where) for v in (m, lo, hi))
                        lo, hi = min(lo, hi), max(lo, hi)
                    means.append(m)
                    lows.append(lo)
                    highs.append(hi)
                    n += len(pts)
                m = sum(means) / len(means)
                if a.x_categorical:
                    xl = x_labels.get(x, x).replace('"', "'")
                    lines.append(f'{xpos[x]} {m:.9g} {min(lows):.9g} {max(highs):.9g} {n} "{xl}"')
                else:
                    lines.append(f"{x:.9g} {m:.9g} {min(lows):.9g} {max(highs):.9g} {n}")
            blocks.append("\n".join(lines))
        text = "\n\n\n".join(blocks) + "\n"
        if a.out == "-":
            sys.stdout.write(text)
        else:
            write_text_atomic(a.out, text)
    except AnalysisError as e:
        die(str(e))


if __name__ == "__main__":
    main()
