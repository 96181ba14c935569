#!/usr/bin/env python3
"""series — extract plot series from a tidy table for gnuplot.

usage: series.py TABLE.csv --x COL --y COL [--series COL] [--where k=v,...] [-o OUT.dat]
                 [--x-scale F] [--y-scale F] [--label-map a=A,b=B]

Groups rows by --series (one gnuplot data block per value, in order of first appearance, or of
--order a,b,c), averages --y over rows sharing an x (e.g. seeds), sorts by x and writes blocks
separated by two blank lines. Each block starts with a header line ("<label>" "<label>"), so
    plot for [i=0:*] 'OUT.dat' index i using 1:2 with linespoints title columnheader(1)
draws one labelled line per series. Columns per row: x, mean y, min y, max y, count.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import (AnalysisError, die, parse_where, read_csv, select,  # noqa: E402
                            to_float, write_text_atomic)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--x", required=True)
    ap.add_argument("--y", required=True)
    ap.add_argument("--series", default=None)
    ap.add_argument("--where", default="")
    ap.add_argument("--order", default="", help="series values in this order (others dropped)")
    ap.add_argument("--label-map", default="", help="series value=label pairs")
    ap.add_argument("--x-scale", type=float, default=1.0)
    ap.add_argument("--y-scale", type=float, default=1.0)
    ap.add_argument("-o", "--out", default="-")
    a = ap.parse_args()
    try:
        _, rows = read_csv(a.table)
        rows = select(rows, parse_where(a.where, "--where"), a.table, "--where")
        if not rows:
            raise AnalysisError(f"{a.table}: no rows match --where {a.where}")
        for col in [a.x, a.y] + ([a.series] if a.series else []):
            if col not in rows[0]:
                raise AnalysisError(f"{a.table}: no column '{col}'")
        labels = dict(parse_where(a.label_map, "--label-map"))
        groups = {}
        for r in rows:
            key = r[a.series] if a.series else a.y
            x = to_float(r[a.x], f"{a.table}: {a.x}") * a.x_scale
            y = to_float(r[a.y], f"{a.table}: {a.y}") * a.y_scale
            groups.setdefault(key, {}).setdefault(x, []).append(y)
        order = [s.strip() for s in a.order.split(",") if s.strip()] or list(groups)
        missing = [s for s in order if s not in groups]
        if missing:
            raise AnalysisError(f"{a.table}: --order names series with no rows: {missing}")
        blocks = []
        for s in order:
            lab = labels.get(s, s).replace('"', "'")
            lines = [f'"{lab}" "{lab}"']
            for x in sorted(groups[s]):
                ys = groups[s][x]
                lines.append(f"{x:.9g} {sum(ys) / len(ys):.9g} {min(ys):.9g} {max(ys):.9g} "
                             f"{len(ys)}")
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
