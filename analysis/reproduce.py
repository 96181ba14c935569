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
  split      = calibration | validation           CachedAttention claims (group "CachedAttention
               ..."): calibration = a parameter was fitted on it (experiments/cachedattention/
               calibrate.py, whose calibration.ini lists the same claims: checked); default
               validation. REPRODUCTION.md counts the two groups apart.
  stationary = yes                                every row used (where and base_where) must come
               from a stationary run (kvsim's `stationary` column); otherwise the claim is
               reported as "non-stationary" (never judged: its latency is not a steady state)
  show       = column                             also shown in the note, for the rows and base
               rows (e.g. TTFT without queueing beside TTFT)
  why        = text                               shown when the claim FAILs or is non-stationary:
               the one-line reason (docs/experiments.md explains each)
  provenance = measured | simulated               how "ours" was obtained (default: simulated for
               the sweeps of experiments/{cachedattention,psa-serving,beyond}, measured otherwise); a calibration claim reads "calibrated on
               this claim"
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


class NonStationary(Exception):
    """A row the claim needs comes from a run that did not reach a steady state."""


def check_stationary(rows, table, where, what):
    bad = [r for r in rows if "stationary" in r and to_float(r["stationary"], table) != 1]
    if rows and "stationary" not in rows[0]:
        raise AnalysisError(f"{where}: stationary = yes but {table} has no 'stationary' column")
    if bad:
        r = bad[0]
        raise NonStationary(
            f"{what}: {len(bad)} of {len(rows)} runs not stationary (e.g. seed {r.get('seed', '?')}: "
            f"TTFT last/middle third {to_float(r.get('ttft_drift', 'nan'), table) + 1:.2f}x, "
            f"busiest resource {to_float(r.get('util_max', 'nan'), table):.2f})")


def shown(c, sel, base, table, where):
    col = c.get("show")
    if not col:
        return ""
    x = agg(sel, col, table, where)
    if base is None:
        return f"{col} {fmt(x)}"
    b = agg(base, col, table, where + " base_where")
    op = c.get("op", "value")
    extra = ""
    if op == "reduction" and b:
        extra = f" (reduction {fmt(1 - x / b)})"
    elif op == "difference":
        extra = f" (difference {fmt(x - b)})"
    return f"{col} {fmt(x)} vs {fmt(b)}{extra}"


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
    base_rows = None
    if c.get("base_where"):
        base_rows = select(rows, parse_where(c.get("base_where"), where), table, where)
    if c.get("stationary", "no").strip().lower() == "yes":
        check_stationary(sel, table, where, "runs")
        if base_rows is not None:
            check_stationary(base_rows, table, where, "baseline runs")
    if op != "kv_at_equal" and not metric:
        raise AnalysisError(f"{where}: metric is required")
    if op == "value":
        ours = agg(sel, metric, table, where)
    elif op in ("reduction", "ratio", "difference"):
        base = base_rows if base_rows is not None else []
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
        sh = shown(c, sel, None, table, where)
        scale = float(c.get("scale", "1"))
        text = f"{names[0]} {fmt(vals[0] * scale)}"
        for n, v, r in zip(names[1:], vals[1:], rels):
            text += f" {r} {n} {fmt(v * scale)}"
        return text, ("pass" if ok else "FAIL"), path, sh
    elif op == "kv_at_equal":
        ours, detail = kv_at_equal(sel, c, table, where)
    else:
        raise AnalysisError(f"{where}: unknown op '{op}'")
    sh = shown(c, sel, base_rows if op in ("reduction", "ratio", "difference") else None,
               table, where)
    detail = "; ".join(x for x in [detail, sh] if x)
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


CA_PREFIX = "CachedAttention"


def ca_split(cid, c, where):
    """'calibration' / 'validation' for a CachedAttention claim, None for the others."""
    if not c.get("group", "").startswith(CA_PREFIX):
        if "split" in c:
            raise AnalysisError(f"{where}: split is only for CachedAttention claims")
        return None
    sp = c.get("split", "validation").strip()
    if sp not in ("calibration", "validation"):
        raise AnalysisError(f"{where}: split must be calibration or validation, not '{sp}'")
    return sp


def check_calibration_list(claims, path):
    """The claims calibrate.py fitted on (its calibration.ini) must be exactly the claims
    marked split = calibration."""
    if not os.path.exists(path):
        return
    cp = read_ini(path)
    listed = {x.strip() for x in cp.get("claims", "calibration", fallback="").split(",")
              if x.strip()}
    marked = {cid for cid in claims.sections() if claims[cid].get("split") == "calibration"}
    if listed != marked:
        raise AnalysisError(
            f"{path} lists calibration claims {sorted(listed)}, the claims file marks "
            f"{sorted(marked)}: rerun calibrate.py or fix the split keys")


def provenance(c, split):
    if split == "calibration":
        return "calibrated on this claim"
    p = c.get("provenance")
    if p:
        return p
    sweep = c.get("sweep", "")
    return "simulated" if any(f"experiments/{d}/" in sweep for d in
                              ("cachedattention", "psa-serving", "beyond")) else "measured"


def rate(counts):
    n = sum(counts.values())
    return f"{counts.get('pass', 0)} of {n} pass ({100 * counts.get('pass', 0) / n:.0f}%)" \
        if n else "none"


def main():
    ap = argparse.ArgumentParser(description="Generate REPRODUCTION.md from claims and results.")
    ap.add_argument("--claims", required=True)
    ap.add_argument("--tables", required=True, help="directory of tidy tables (<sweep>.csv)")
    ap.add_argument("--src", default=".", help="source tree (for '@' tables and sweep paths)")
    ap.add_argument("--scale", default="", help="scale the results were run at (shown)")
    ap.add_argument("--calibration", default=None,
                    help="calibrate.py's calibration.ini (default: experiments/cachedattention/"
                         "calibration.ini under --src)")
    ap.add_argument("-o", "--out", default="REPRODUCTION.md")
    a = ap.parse_args()
    try:
        claims = read_ini(a.claims)
        check_calibration_list(claims, a.calibration or os.path.join(
            a.src, "experiments", "cachedattention", "calibration.ini"))
    except AnalysisError as e:
        die(str(e))
    cache = {}
    groups = {}
    flat = []  # (id, group, title, paper, ours, status) for claims.csv
    counts = {"pass": 0, "FAIL": 0, "non-stationary": 0, "not comparable": 0, "not run": 0,
              "shown": 0}
    split_counts = {"calibration": {}, "validation": {}}
    for cid in claims.sections():
        c = claims[cid]
        group = c.get("group", "Other")
        try:
            split = ca_split(cid, c, f"claims [{cid}]")
            ours, status, path, detail = evaluate(cid, c, a.tables, a.src, cache)
            data = os.path.relpath(path, a.src) if not os.path.isabs(a.tables) else path
        except Missing as e:
            ours, status, data, detail = None, "not run", str(e), c.get("missing_note", "")
        except NoResult as e:
            ours, status, detail = None, "FAIL", str(e)
            data = c.get("table", "")
        except NonStationary as e:
            ours, status, detail = "non-stationary", "non-stationary", str(e)
            data = c.get("table", "")
        except AnalysisError as e:
            die(str(e))
        counts[status] = counts.get(status, 0) + 1
        if split:
            split_counts[split][status] = split_counts[split].get(status, 0) + 1
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
        why = c.get("why", "") if status in ("FAIL", "non-stationary") else ""
        note = "; ".join(x for x in [detail, c.get("note", ""),
                                     cmp_note if cmp_note.lower().startswith("no") else "",
                                     f"why: {why}" if why else ""] if x)
        flat.append({"id": cid, "group": group, "title": c.get("title", cid),
                     "paper": c.get("paper", ""),
                     "ours": ours if isinstance(ours, str) else ("" if ours is None else
                                                                 f"{ours:.6g}"),
                     "status": status, "split": split or ""})
        key = "CachedAttention: calibration claims" if split == "calibration" else group
        groups.setdefault(key, []).append(
            (c.get("title", cid), c.get("paper", ""), ours if isinstance(ours, str) else fmt(ours),
             tol, status, provenance(c, split), c.get("sweep", ""), data, c.get("source", ""),
             note))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ca_all = {}
    for sc in split_counts.values():
        for k, v in sc.items():
            ca_all[k] = ca_all.get(k, 0) + v
    out = ["# Reproduction: paper vs KVLab", "",
           f"Generated by `analysis/reproduce.py` from `{a.claims}` and the result tables in "
           f"`{a.tables}` on {now}" + (f", scale **{a.scale}**" if a.scale else "") + ". "
           "Do not edit by hand: rerun `scripts/main.sh` (quick scale) or "
           "`scripts/main.sh --full`.", "",
           "Status: **pass** (within tolerance), **FAIL**, **non-stationary** (a run the claim "
           "needs did not reach a steady state: no latency is reported from it), **not "
           "comparable** (shown, not judged: the reason is in the note), **not run** (its data "
           "does not exist in this run; the note says why), **shown** (a result with no "
           "published counterpart). Provenance: **calibrated on this claim** (a parameter the "
           "paper leaves unstated was fitted on it: experiments/cachedattention/calibrate.py), "
           "**simulated** (kvsim, every input stated, calibrated on other claims or assumed: "
           "docs/experiments.md), **measured** (on recorded data).", "",
           "Totals: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v), "",
           f"CachedAttention: {rate(ca_all)}; calibration claims {rate(split_counts['calibration'])}"
           f"; validation claims (no parameter fitted on them) "
           f"{rate(split_counts['validation'])}.", ""]
    order = sorted(groups, key=lambda g: (0 if g == "CachedAttention: calibration claims" else
                                          1 if g.startswith(CA_PREFIX) else 2))
    for g in order:
        rows = groups[g]
        sub = ""
        if g == "CachedAttention: calibration claims":
            sub = ("The parameters fitted on these claims, and how: docs/experiments.md "
                   "(\"Calibration\"); the fit's every evaluation: "
                   "`experiments/cachedattention/calibration.csv`.")
        elif g.startswith(CA_PREFIX):
            sub = "Validation: no parameter was fitted on these claims."
        out += [f"## {g}", ""] + ([sub, ""] if sub else []) + [
                "| claim | paper | ours | tolerance | status | provenance | configuration | data "
                "| note |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for title, paper, ours, tol, status, prov, sweep, data, source, note in rows:
            t = f"{title}" + (f" ({source})" if source else "")
            cfg = f"`{sweep}`" if sweep else ""
            out.append(f"| {t} | {paper} | {ours} | {tol} | **{status}** | {prov} | {cfg} | "
                       f"`{data}` | {note} |")
        out.append("")
    try:
        write_text_atomic(a.out, "\n".join(out))
        # The same rows as a table, for figures that set the paper's numbers beside ours.
        write_csv_atomic(os.path.join(os.path.dirname(os.path.abspath(a.out)), "claims.csv"),
                         ["id", "group", "title", "paper", "ours", "status", "split"], flat)
    except AnalysisError as e:
        die(str(e))
    print(f"reproduce: {sum(counts.values())} claims -> {a.out} "
          f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)}; CachedAttention "
          f"calibration {rate(split_counts['calibration'])}, validation "
          f"{rate(split_counts['validation'])})", file=sys.stderr)


if __name__ == "__main__":
    main()
