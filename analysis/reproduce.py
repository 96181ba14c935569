#!/usr/bin/env python3
"""reproduce — generate REPRODUCTION.md: every claim of the papers, the paper's number, ours, the
tolerance, pass/fail, and which configuration and data produced it.

usage: reproduce.py --claims experiments/claims.ini --tables DIR [--src SRC] [-o REPRODUCTION.md]

Nothing in the output is typed by hand: each row is computed from a tidy table (analysis/
aggregate.py output, or a committed result file named with a leading '@', relative to the source
tree) by the rule the claim declares in the claims file:

  [<claim id>]
  title      = what is claimed                    (required)
  paper      = the paper's number (or text for op = order)
  source     = where the paper states it
  sweep      = experiments/... sweep file that produced the table (shown as the configuration)
  table      = <sweep name> | @path/to/file.csv | @path/to/result.json ("rows" list)  (required)
  where      = col=value, ...                     rows the claim is about
  metric     = column                             (required except op = kv_at_equal)
  op         = value | reduction | ratio | difference | quotient | order | kv_at_equal
               (default value); quotient = mean(metric) / mean(metric2) over the same rows
  base_where = col=value, ...                     reference rows for reduction/ratio/difference
  order      = col: a > b >= c                    for op = order (compares metric, mean per value)
  within     = lo, hi                             pass when lo <= ours <= hi (a published range)
  tolerance  = number                             |ours - paper| allowed (absolute)
  tolerance_rel = number                          |ours/paper - 1| allowed (instead)
  at_least   = number                             pass when ours >= it (a target, e.g. 2.4)
  scale      = number                             multiply ours (e.g. 100 for percent)
  comparable = yes | no: reason                   no: shown, never judged
  note       = shown with the row
For op = kv_at_equal: x = column of KV read, y = column of error, family = column naming the
method family, a = family of the method measured (psa), b = the baseline family (topk); ours is
the largest ratio b_x(y) / a_x over a's points whose error lies inside b's range, with b's curve
interpolated linearly in (log x, y).
"""
import argparse
import json
import math
import re
import os
import sys
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import (AnalysisError, die, fmt, mean, parse_where, read_csv,  # noqa: E402
                            read_ini, select, to_float, write_csv_atomic, write_text_atomic)


class Missing(Exception):
    pass


class NoResult(Exception):
    """The data exist but give no value for the claim (e.g. curves that do not overlap): FAIL."""


def load_table(name, tables_dir, src, cache):
    if name in cache:
        return cache[name]
    path = os.path.join(src, name[1:]) if name.startswith("@") else os.path.join(
        tables_dir, f"{name}.csv")
    if not os.path.exists(path):
        raise Missing(f"no data: {os.path.relpath(path, src) if name.startswith('@') else path}")
    if path.endswith(".json"):
        cache[name] = (path, json_rows(path))
    else:
        cache[name] = (path, read_csv(path)[1])
    return cache[name]


def json_rows(path):
    """The "rows" list of a committed JSON result (e.g. traces/record/quality.py's output) as
    table rows: scalar fields as strings, plus `family` = the method name before ':'."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise AnalysisError(f"{path}: {e}") from None
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise AnalysisError(f"{path}: no 'rows' list")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise AnalysisError(f"{path}: rows[{i}] is not an object")
        row = {k: str(v) for k, v in r.items() if isinstance(v, (int, float, str))}
        row["family"] = str(r.get("method", "")).split(":")[0]
        out.append(row)
    return out


def agg(rows, metric, table, where):
    if not rows:
        raise AnalysisError(f"{where}: no rows of {table} match")
    vals = [to_float(r.get(metric), f"{table}: column {metric}") for r in rows]
    return mean(vals)


def kv_at_equal(rows, c, table, where):
    x, y, fam = c.get("x"), c.get("y"), c.get("family")
    a, b = c.get("a"), c.get("b")
    if not all([x, y, fam, a, b]):
        raise AnalysisError(f"{where}: kv_at_equal needs x, y, family, a and b")
    pa = sorted((to_float(r[y], table), to_float(r[x], table)) for r in rows if r.get(fam) == a)
    pb = sorted((to_float(r[y], table), to_float(r[x], table)) for r in rows if r.get(fam) == b)
    if not pa or len(pb) < 2:
        raise AnalysisError(f"{where}: needs points of both families ({a}: {len(pa)}, {b}: "
                            f"{len(pb)})")
    best, detail = None, ""
    for ya, xa in pa:
        for (y0, x0), (y1, x1) in zip(pb, pb[1:]):
            if y0 <= ya <= y1 and y1 > y0 and x0 > 0 and x1 > 0:
                t = (ya - y0) / (y1 - y0)
                xb = math.exp(math.log(x0) * (1 - t) + math.log(x1) * t)
                ratio = xb / xa
                if best is None or ratio > best:
                    best = ratio
                    detail = f"at error {ya:.3g}: {b} reads {xb:.4g}, {a} reads {xa:.4g}"
    if best is None:
        raise NoResult(f"no {a} point lies within the error range of {b} "
                       f"([{pb[0][0]:.3g}, {pb[-1][0]:.3g}])")
    return best, detail


def evaluate(cid, c, tables_dir, src, cache):
    where = f"claims [{cid}]"
    table = c.get("table")
    if not table:
        raise AnalysisError(f"{where}: table is required")
    path, rows = load_table(table, tables_dir, src, cache)
    sel = select(rows, parse_where(c.get("where"), where), table, where)
    op = c.get("op", "value")
    metric = c.get("metric")
    detail = ""
    if op != "kv_at_equal" and not metric:
        raise AnalysisError(f"{where}: metric is required")
    if op == "value":
        ours = agg(sel, metric, table, where)
    elif op in ("reduction", "ratio", "difference"):
        base = select(rows, parse_where(c.get("base_where"), where), table, where)
        x, b = agg(sel, metric, table, where), agg(base, metric, table, where + " base_where")
        ours = {"reduction": 1 - x / b if b else float("nan"), "ratio": x / b if b else float("nan"),
                "difference": x - b}[op]
        detail = f"{fmt(x)} vs {fmt(b)}"
    elif op == "quotient":
        m2 = c.get("metric2")
        if not m2:
            raise AnalysisError(f"{where}: op = quotient needs metric2")
        x, b = agg(sel, metric, table, where), agg(sel, m2, table, where)
        ours = x / b if b else float("nan")
        detail = f"{metric} {fmt(x)} / {m2} {fmt(b)}"
    elif op == "order":
        spec = c.get("order", "")
        if ":" not in spec:
            raise AnalysisError(f"{where}: order must read 'column: a > b > c'")
        col, chain = spec.split(":", 1)
        col = col.strip()
        tokens = re.findall(r">=|>|[^\s>]+", chain)
        names, rels = [], []
        for tk in tokens:
            if tk in (">", ">="):
                rels.append(tk)
            else:
                names.append(tk)
        if len(rels) != len(names) - 1 or not rels:
            raise AnalysisError(f"{where}: order '{spec}' is not 'column: a > b >= c'")
        vals = []
        for n in names:
            vals.append(agg(select(sel, [(col, n)], table, where), metric, table,
                            f"{where} ({col}={n})"))
        ok = all((v0 > v1) if r == ">" else (v0 >= v1 - 1e-12)
                 for v0, v1, r in zip(vals, vals[1:], rels))
        scale = float(c.get("scale", "1"))
        text = f"{names[0]} {fmt(vals[0] * scale)}"
        for n, v, r in zip(names[1:], vals[1:], rels):
            text += f" {r} {n} {fmt(v * scale)}"
        return text, ("pass" if ok else "FAIL"), path, ""
    elif op == "kv_at_equal":
        ours, detail = kv_at_equal(sel, c, table, where)
    else:
        raise AnalysisError(f"{where}: unknown op '{op}'")
    ours *= float(c.get("scale", "1"))
    status = "shown"
    paper = c.get("paper")
    if c.get("comparable", "yes").strip().lower().startswith("no"):
        status = "not comparable"
    elif "at_least" in c:
        status = "pass" if ours >= float(c["at_least"]) else "FAIL"
    elif "within" in c:
        lo, hi = (float(x) for x in c["within"].split(","))
        status = "pass" if lo <= ours <= hi else "FAIL"
    elif paper is not None and ("tolerance" in c or "tolerance_rel" in c):
        p = to_float(paper, f"{where}: paper")
        if "tolerance" in c:
            ok = abs(ours - p) <= float(c["tolerance"])
        else:
            ok = abs(ours / p - 1) <= float(c["tolerance_rel"]) if p else False
        status = "pass" if ok else "FAIL"
    return ours, status, path, detail


def main():
    ap = argparse.ArgumentParser(description="Generate REPRODUCTION.md from claims and results.")
    ap.add_argument("--claims", required=True)
    ap.add_argument("--tables", required=True, help="directory of tidy tables (<sweep>.csv)")
    ap.add_argument("--src", default=".", help="source tree (for '@' tables and sweep paths)")
    ap.add_argument("--scale", default="", help="scale the results were run at (shown)")
    ap.add_argument("-o", "--out", default="REPRODUCTION.md")
    a = ap.parse_args()
    try:
        claims = read_ini(a.claims)
    except AnalysisError as e:
        die(str(e))
    cache = {}
    groups = {}
    flat = []  # (id, group, title, paper, ours, status) for claims.csv
    counts = {"pass": 0, "FAIL": 0, "not comparable": 0, "not run": 0, "shown": 0}
    for cid in claims.sections():
        c = claims[cid]
        group = c.get("group", "Other")
        try:
            ours, status, path, detail = evaluate(cid, c, a.tables, a.src, cache)
            data = os.path.relpath(path, a.src) if not os.path.isabs(a.tables) else path
        except Missing as e:
            ours, status, data, detail = None, "not run", str(e), c.get("missing_note", "")
        except NoResult as e:
            ours, status, detail = None, "FAIL", str(e)
            data = c.get("table", "")
        except AnalysisError as e:
            die(str(e))
        counts[status] = counts.get(status, 0) + 1
        tol = c.get("tolerance", "")
        if "tolerance_rel" in c:
            tol = f"±{float(c['tolerance_rel']) * 100:g}%"
        elif tol:
            tol = f"±{tol}"
        elif "at_least" in c:
            tol = f"≥ {c['at_least']}"
        elif "within" in c:
            tol = "in [" + c["within"].replace(",", ", ") + "]"
        cmp_note = c.get("comparable", "yes")
        note = "; ".join(x for x in [detail, c.get("note", ""),
                                     cmp_note if cmp_note.lower().startswith("no") else ""] if x)
        flat.append({"id": cid, "group": group, "title": c.get("title", cid),
                     "paper": c.get("paper", ""),
                     "ours": ours if isinstance(ours, str) else ("" if ours is None else
                                                                 f"{ours:.6g}"),
                     "status": status})
        groups.setdefault(group, []).append(
            (c.get("title", cid), c.get("paper", ""), ours if isinstance(ours, str) else fmt(ours),
             tol, status, c.get("sweep", ""), data, c.get("source", ""), note))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# Reproduction: paper vs KVLab", "",
           f"Generated by `analysis/reproduce.py` from `{a.claims}` and the result tables in "
           f"`{a.tables}` on {now}" + (f", scale **{a.scale}**" if a.scale else "") + ". "
           "Do not edit by hand: rerun `scripts/main.sh` (quick scale) or "
           "`scripts/main.sh --full`.", "",
           "Status: **pass** (within tolerance), **FAIL**, **not comparable** (shown, not judged: "
           "the reason is in the note), **not run** (its data does not exist in this run; the "
           "note says why), **shown** (a result with no published counterpart).", "",
           "Totals: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v), ""]
    for g, rows in groups.items():
        out += [f"## {g}", "",
                "| claim | paper | ours | tolerance | status | configuration | data | note |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for title, paper, ours, tol, status, sweep, data, source, note in rows:
            t = f"{title}" + (f" ({source})" if source else "")
            cfg = f"`{sweep}`" if sweep else ""
            out.append(f"| {t} | {paper} | {ours} | {tol} | **{status}** | {cfg} | `{data}` | "
                       f"{note} |")
        out.append("")
    try:
        write_text_atomic(a.out, "\n".join(out))
        # The same rows as a table, for figures that set the paper's numbers beside ours.
        write_csv_atomic(os.path.join(os.path.dirname(os.path.abspath(a.out)), "claims.csv"),
                         ["id", "group", "title", "paper", "ours", "status"], flat)
    except AnalysisError as e:
        die(str(e))
    print(f"reproduce: {sum(counts.values())} claims -> {a.out} "
          f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)})", file=sys.stderr)


if __name__ == "__main__":
    main()
