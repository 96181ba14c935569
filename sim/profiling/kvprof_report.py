#!/usr/bin/env python3
"""kvprof_report.py - errors of the simulator's predictions against the GPU (standard library).

    python3 sim/profiling/kvprof_report.py VALIDATION.csv [--out DIR] [--no-figure]
                                          [--docs docs/sim.md]

VALIDATION.csv is kvsim-predict's output (docs/sim.md, "Validation"). Prints, as Markdown:
  * per model, kind and mode: iterations, median and p95 of |relative error| of the measured
    cost model (predicted_us) and of the roofline (predicted_roofline_us); relative error =
    (predicted - measured) / measured
  * the pre-loading comparison row by row (read buffer 0..15 layers, all-resident,
    load-then-compute)
  * the issue's acceptance checks: median <= 5% and p95 <= 15% for prefill and for decode on
    each model (measured model); pre-loading within 10% at every buffer size
With --out DIR it also writes DIR/errors.csv (the first table), DIR/data/sim-validation/*.dat
and, where gnuplot exists, DIR/sim-validation.png and .svg (predicted vs measured, log-log,
y = x; paper-figures/common.gp style). With --docs FILE the tables replace what stands
between the lines `<!-- gpu-validation:begin -->` and `<!-- gpu-validation:end -->` in FILE
(with a link to the figure when --out is given). Exit status 0 (1 on unreadable input or a
FILE without the markers, 2 on usage); failing an acceptance check is reported, not an exit
status.
"""
from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PRELOAD_KINDS = ("preload", "resident", "sync")


def read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path) as f:
        lines = f.readlines()
    head = [ln.rstrip("\n") for ln in lines if ln.startswith("#")]
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
    for r in rows:
        for k in ("measured_us", "predicted_us", "predicted_roofline_us"):
            r[k] = float(r[k])
    return head, rows


def quantile(v: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    if not v:
        return math.nan
    s = sorted(v)
    x = q * (len(s) - 1)
    i = int(math.floor(x))
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (x - i)


def rel(pred: float, meas: float) -> float:
    return (pred - meas) / meas


def pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def group_errors(rows: list[dict]) -> list[dict]:
    out = []
    keys: dict[tuple, list[dict]] = {}
    for r in rows:
        keys.setdefault((r["model"], r["kind"], r["mode"]), []).append(r)
    for (model, kind, mode), rs in keys.items():
        e = [abs(rel(r["predicted_us"], r["measured_us"])) for r in rs]
        er = [abs(rel(r["predicted_roofline_us"], r["measured_us"])) for r in rs]
        out.append({"model": model, "kind": kind, "mode": mode, "n": len(rs),
                    "median": quantile(e, 0.5), "p95": quantile(e, 0.95),
                    "median_roofline": quantile(er, 0.5), "p95_roofline": quantile(er, 0.95),
                    "out_of_range": sum(1 for r in rs if r.get("out_of_range"))})
    return out


def acceptance(rows: list[dict], groups: list[dict]) -> list[tuple[str, bool, str]]:
    checks = []
    models = sorted({g["model"] for g in groups})
    for model in models:
        for kind in ("prefill", "decode"):
            # the criterion is per iteration kind and model; eager and graph rows are
            # pooled (each is an iteration the simulator must predict)
            e = [abs(rel(r["predicted_us"], r["measured_us"])) for r in rows
                 if r["model"] == model and r["kind"] == kind]
            if not e:
                continue
            med, p95 = quantile(e, 0.5), quantile(e, 0.95)
            checks.append((f"{model} {kind}: median <= 5%, p95 <= 15%", med <= 0.05 and p95 <= 0.15,
                           f"median {pct(med)}, p95 {pct(p95)} over {len(e)} iterations"))
    pre = [r for r in rows if r["kind"] in PRELOAD_KINDS]
    if pre:
        worst = max(pre, key=lambda r: abs(rel(r["predicted_us"], r["measured_us"])))
        w = abs(rel(worst["predicted_us"], worst["measured_us"]))
        checks.append(("pre-loading within 10% at every buffer size", w <= 0.10,
                       f"worst {pct(w)} ({worst['kind']}, read buffer {worst['read_buffer']})"))
    return checks


def host_noise_floor(rows: list[dict]) -> dict | None:
    """How well ANY model could predict the eager pre-loading rows. Those rows repeat one
    iteration (13B, 1K history + 100 new tokens) with only the read buffer changed: the Python
    host issues the same launches in each, and the GPU's own time differs by the span of the
    same rows replayed from CUDA graphs. Returns the eager and graph spans and the p95 relative
    error of the best prediction that is one constant for every eager row (the floor for any
    model that prices identical launches identically); None without >= 5 eager rows."""
    eager = [r["measured_us"] for r in rows if r["kind"] == "preload" and r.get("mode") == "eager"]
    graph = [r["measured_us"] for r in rows if r["kind"] == "preload" and r.get("mode") == "graph"]
    if len(eager) < 5:
        return None
    lo, hi = min(eager), max(eager)
    best = (math.inf, lo)
    for i in range(2001):  # a scan of constants; p95 is piecewise linear in the constant
        c = lo + (hi - lo) * i / 2000
        e = quantile([abs(rel(c, x)) for x in eager], 0.95)
        if e < best[0]:
            best = (e, c)
    return {"n": len(eager), "min": lo, "max": hi, "median": quantile(eager, 0.5),
            "graph_min": min(graph) if graph else math.nan,
            "graph_max": max(graph) if graph else math.nan,
            "best_p95": best[0], "best_constant": best[1]}


def layers_of(model: str) -> int | None:
    """The model file's layer count (sim/data/models/<model>.ini)."""
    try:
        for ln in (ROOT / "sim" / "data" / "models" / f"{model}.ini").read_text().splitlines():
            k, _, v = ln.partition("=")
            if k.strip() == "layers":
                return int(v.split(";")[0].strip())
    except (OSError, ValueError):
        return None
    return None


def harness_affected(r: dict) -> bool:
    """Rows whose measurement ran an attention kernel the profile does not have: transformers'
    prefill captured in a CUDA graph built an explicit mask (transformers <= 5.17 never skips it
    under stream capture; sim/profiling/kvprof_llama.py EagerMasks fixes this for later runs).
    Grids that record the SDPA calls (column attn) say so directly."""
    if r.get("attn"):
        return r["kind"] == "prefill" and "mask" in r["attn"]
    return r["impl"] == "hf" and r["mode"] == "graph" and r["kind"] == "prefill"


def pooled(rows: list[dict], keep=lambda r: True) -> list[dict]:
    """Per model and kind, eager and graph together (the acceptance's grouping)."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        for kind in ("prefill", "decode", "mixed"):
            rs = [r for r in rows if r["model"] == model and r["kind"] == kind and keep(r)]
            if not rs:
                continue
            e = [abs(rel(r["predicted_us"], r["measured_us"])) for r in rs]
            er = [abs(rel(r["predicted_roofline_us"], r["measured_us"])) for r in rs]
            out.append({"model": model, "kind": kind, "n": len(rs), "median": quantile(e, 0.5),
                        "p95": quantile(e, 0.95), "median_roofline": quantile(er, 0.5),
                        "p95_roofline": quantile(er, 0.95)})
    return out


def calibrated(rows: list[dict]) -> list[dict]:
    """The host model fitted on one model's eager rows and judged on the other's (a calibration
    on validation rows, reported as such; the committed model takes its host times from the
    profile's host.csv only). Per transformers path (prefill, decode): host time per layer =
    median of measured / layers over the fit model's host-bound eager rows (eager >= 1.25 x the
    same iteration's graph time); prediction = max(layers x that, the GPU prediction of the
    iteration, i.e. its graph row's predicted_us)."""
    graph = {(r["model"], r["kind"], r["impl"], r["batch"], r["tokens"], r["context"]): r
             for r in rows if r["mode"] == "graph"}
    models = sorted({r["model"] for r in rows})
    out = []
    for fit in models:
        for judge in models:
            if judge == fit:
                continue
            for kind in ("prefill", "decode"):
                def eager(m):
                    res = []
                    for r in rows:
                        if (r["model"], r["kind"], r["impl"], r["mode"]) != (m, kind, "hf", "eager"):
                            continue
                        g = graph.get((m, kind, "hf", r["batch"], r["tokens"], r["context"]))
                        if g is not None:
                            res.append((r, g))
                    return res
                Lf, Lj = layers_of(fit), layers_of(judge)
                fr = [r["measured_us"] / Lf for r, g in eager(fit)
                      if Lf and r["measured_us"] >= 1.25 * g["measured_us"]]
                jr = eager(judge)
                if not fr or not jr or not Lj:
                    continue
                h = quantile(fr, 0.5)
                e = [abs(rel(max(Lj * h, g["predicted_us"]), r["measured_us"])) for r, g in jr]
                out.append({"fit": fit, "judge": judge, "kind": kind, "host_us_per_layer": h,
                            "n_fit": len(fr), "n": len(jr), "median": quantile(e, 0.5),
                            "p95": quantile(e, 0.95)})
    return out


def markdown(head: list[str], rows: list[dict], groups: list[dict]) -> str:
    out = []
    dev = next((h.split(":", 2)[-1].strip() for h in head if h.startswith("# grid: device:")), "?")
    smoke = any(h.strip() == "# grid: smoke: true" for h in head)
    out.append(f"Device: {dev}{' (SMOKE TEST: CPU numbers, not a measurement)' if smoke else ''}.")
    out.append("")
    out.append("| model | kind | mode | iterations | median error | p95 error | roofline median "
               "| roofline p95 | outside the profile |")
    out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for g in groups:
        out.append(f"| {g['model']} | {g['kind']} | {g['mode']} | {g['n']} | {pct(g['median'])} | "
                   f"{pct(g['p95'])} | {pct(g['median_roofline'])} | {pct(g['p95_roofline'])} | "
                   f"{g['out_of_range']} |")
    pre = [r for r in rows if r["kind"] in PRELOAD_KINDS]
    if pre:
        out.append("")
        out.append("| pre-loading | mode | read buffer (layers) | measured ms | predicted ms | "
                   "error | roofline ms | roofline error |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        order = {"resident": 0, "preload": 1, "sync": 2}
        for r in sorted(pre, key=lambda r: (r.get("mode", ""), order[r["kind"]],
                                            int(r["read_buffer"] or 0))):
            out.append(f"| {r['kind']} | {r.get('mode', '')} | {r['read_buffer']} | "
                       f"{r['measured_us'] / 1e3:.2f} | "
                       f"{r['predicted_us'] / 1e3:.2f} | "
                       f"{pct(rel(r['predicted_us'], r['measured_us']))} | "
                       f"{r['predicted_roofline_us'] / 1e3:.2f} | "
                       f"{pct(rel(r['predicted_roofline_us'], r['measured_us']))} |")
    out.append("")
    out.append("Per model and kind, eager and graph together (the acceptance's grouping), "
               "and without the rows whose measurement ran a kernel the profile lacks "
               "(transformers' captured prefill: explicit-mask attention; "
               f"{sum(1 for r in rows if harness_affected(r))} rows):")
    out.append("")
    out.append("| model | kind | iterations | median | p95 | roofline median | roofline p95 "
               "| without those: iterations | median | p95 |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    clean = {(g["model"], g["kind"]): g for g in pooled(rows, lambda r: not harness_affected(r))}
    for g in pooled(rows):
        c = clean.get((g["model"], g["kind"]), {"n": 0, "median": math.nan, "p95": math.nan})
        out.append(f"| {g['model']} | {g['kind']} | {g['n']} | {pct(g['median'])} | "
                   f"{pct(g['p95'])} | {pct(g['median_roofline'])} | {pct(g['p95_roofline'])} | "
                   f"{c['n']} | {pct(c['median'])} | {pct(c['p95'])} |")
    cal = calibrated(rows)
    if cal:
        out.append("")
        out.append("Calibrated on validation rows (not the committed model): transformers' eager "
                   "host time per layer fitted on one model's host-bound rows, judged on the "
                   "other model's eager rows:")
        out.append("")
        out.append("| fitted on | judged on | kind | host us/layer (fit rows) | iterations | "
                   "median | p95 |")
        out.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for c in cal:
            out.append(f"| {c['fit']} | {c['judge']} | {c['kind']} | {c['host_us_per_layer']:.0f} "
                       f"({c['n_fit']}) | {c['n']} | {pct(c['median'])} | {pct(c['p95'])} |")
    out.append("")
    out.append("| acceptance (issue 15) | verdict | measured |")
    out.append("| --- | --- | --- |")
    for what, ok, detail in acceptance(rows, groups):
        out.append(f"| {what} | {'pass' if ok else 'FAIL'} | {detail} |")
    floor = host_noise_floor(rows)
    if floor:
        out.append("")
        gpu = ("" if math.isnan(floor["graph_min"]) else
               f" whose GPU time (the same rows replayed from CUDA graphs) spans "
               f"{floor['graph_min'] / 1e3:.2f}-{floor['graph_max'] / 1e3:.2f} ms")
        out.append(f"The eager rows' noise floor: the {floor['n']} eager pre-loading rows repeat one "
                   f"iteration{gpu}; eager they span {floor['min'] / 1e3:.2f}-"
                   f"{floor['max'] / 1e3:.2f} ms (median {floor['median'] / 1e3:.2f}), the Python "
                   "host's time. The best single prediction for all of them "
                   f"({floor['best_constant'] / 1e3:.2f} ms) has a p95 error of "
                   f"{pct(floor['best_p95'])} (the bar: 15%; above it, no model that gives these "
                   "host-bound rows, whose launches are the same, one time meets the bar).")
    graph = [r for r in rows if r.get("mode") == "graph"]
    if graph:
        out.append("")
        out.append("The same criteria on the CUDA-graph rows alone (the GPU's time, which the "
                   "simulator models; eager rows add the Python host's launch time; pre-loading "
                   "where the grid has graph rows of it). For information: the issue's grouping "
                   "above pools both.")
        out.append("")
        out.append("| graph rows only | verdict | measured |")
        out.append("| --- | --- | --- |")
        for what, ok, detail in acceptance(graph, groups):
            out.append(f"| {what} | {'pass' if ok else 'FAIL'} | {detail} |")
    return "\n".join(out)


def figure(rows: list[dict], out: Path) -> str:
    d = out / "data" / "sim-validation"
    d.mkdir(parents=True, exist_ok=True)
    kinds = ["prefill", "decode", "mixed", "preload"]
    with open(d / "points.dat", "w") as f:
        for k in kinds:
            sel = [r for r in rows if (r["kind"] in PRELOAD_KINDS) == (k == "preload")
                   and (k == "preload" or r["kind"] == k)]
            f.write(f'"{k}"\n# measured_ms predicted_ms roofline_ms\n')
            for r in sel:
                f.write(f"{r['measured_us'] / 1e3:.6g} {r['predicted_us'] / 1e3:.6g} "
                        f"{r['predicted_roofline_us'] / 1e3:.6g}\n")
            if not sel:
                f.write("nan nan nan\n")
            f.write("\n\n")
    if not shutil.which("gnuplot"):
        return "gnuplot not found: figure not drawn (data in " + str(d) + ")"
    for fmt in ("png", "svg"):
        dst = out / f"sim-validation.{fmt}"
        r = subprocess.run(["gnuplot", "-e", f"fmt='{fmt}'; out='{dst}'; D='{d}/'",
                            str(ROOT / "paper-figures" / "common.gp"),
                            str(HERE / "validation.gp")], capture_output=True, text=True)
        if r.returncode != 0:
            return f"gnuplot failed: {r.stderr.strip()[:400]}"
    return f"figure: {out / 'sim-validation.png'} and .svg"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("validation", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--docs", type=Path, help="Markdown file whose gpu-validation block to replace")
    a = ap.parse_args()
    try:
        head, rows = read(a.validation)
    except (OSError, KeyError, ValueError) as ex:
        print(f"kvprof_report: {a.validation}: {ex}", file=sys.stderr)
        return 1
    groups = group_errors(rows)
    print(markdown(head, rows, groups))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        with open(a.out / "errors.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(groups[0].keys()) if groups else ["model"])
            w.writeheader()
            for g in groups:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in g.items()})
        if not a.no_figure:
            print("\n" + figure(rows, a.out), file=sys.stderr)
    if a.docs:
        return replace_block(a.docs, head, rows, groups, a.validation, a.out)
    return 0


BEGIN, END = "<!-- gpu-validation:begin -->", "<!-- gpu-validation:end -->"


def replace_block(doc: Path, head, rows, groups, validation: Path, out: Path | None) -> int:
    smoke = any(h.strip() == "# grid: smoke: true" for h in head)
    if smoke and ROOT in doc.resolve().parents:
        print(f"kvprof_report: {doc}: smoke-test numbers are not written into the tree",
              file=sys.stderr)
        return 1
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"kvprof_report: {doc}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 1

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(ROOT))
        except ValueError:
            return str(p)

    when = next((h.split(":", 2)[-1].strip() for h in head if h.startswith("# grid: date_utc:")), "?")
    commit = next((h.split(":", 2)[-1].strip() for h in head if h.startswith("# grid: commit:")), "?")
    body = [BEGIN, "",
            f"Measured {when} (commit {commit[:12]}); predictions and errors: "
            f"`{rel(validation)}` (`kvsim-predict`, `sim/profiling/kvprof_report.py`).", "",
            markdown(head, rows, groups), ""]
    if out is not None and (out / "sim-validation.svg").exists():
        body += [f"![predicted vs measured iteration time]({'../' + rel(out / 'sim-validation.svg')})",
                 ""]
    body.append(END)
    a, b = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:a] + "\n".join(body) + text[b:])
    print(f"{doc}: validation block rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
