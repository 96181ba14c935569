#!/usr/bin/env python3
"""kvprof_gap.py - the time per layer a graph replay spends beyond its operators, launch_gap.csv.

    python3 sim/profiling/kvprof_gap.py --out PROFILE/launch_gap.csv BREAKDOWN.csv [...]
            [--models sim/data/models] [--source TEXT] [--grid GRID.csv]
    python3 sim/profiling/kvprof_gap.py --out PROFILE/launch_gap.csv
            --layers LAYERS.csv --ops OPS.csv [--layers ... --ops ...] [...]

Reads kvprof_breakdown.py's per-kernel CSVs (one iteration of transformers' decode or prefill
replayed from a CUDA graph: the replay's time `graph_us` and, per kernel, its CUDA time and
launches per iteration under torch.profiler) and writes one row per measured point:

    model, kind, batch, context, tokens, graph_us, kernel_us, launches, layers,
    kernels_per_layer, method, idle_us, gap_per_kernel_us, gap_us,
    slope_us, pred_layer_us, residual_us (method layers only, below)

The idle time of an iteration is the time the GPU spends between dependent kernels of a graph
replay (the next kernel's launch and ramp-up), which a sum of per-operator timings does not see.
Where the breakdown has `idle_est_us` and `kernels` (one replay profiled alone: its device span
minus the union of its kernels' intervals, less the profiler's own inflation of the replay;
kvprof_breakdown.py since 2026-12-03 18:40 UTC) that is the idle time and `launches` its kernel
count (method "trace"); older breakdowns give only
max(0, graph_us - kernel_us) over `launches` (method "difference": the event-timed replay minus
the profiler's per-kernel sums, two different replays, noisy by a few percent of the
iteration). gap_per_kernel_us = idle / launches; gap_us = idle / layers, the idle time per
decoder layer (the head's few kernels are charged to the layers). `tokens` is the
iteration's token count as the cost model sees it (decode: batch; prefill: tokens), the axis
along which sim_profile.c interpolates it (sim_profile.h, launch_gap.csv). A negative
difference (prefill: the profiler's kernel times, a separate replay, sum above the graph's own
time) is recorded as 0 and counted in the summary.

Method "layers" (--layers, --ops; since 2026-12-03 20:20 UTC, the one installed on the H200):
kvprof_layers.py times the same graph iterations on models that differ only in their layer
count, without a profiler; the least-squares slope of time against layer count is what one
layer costs inside a replay. --ops is kvsim-predict's operator breakdown of the same points
(`kvsim-predict --grid LAYERS-grid.csv --launch-gaps none --ops OPS.csv`): the cost model's own
price of one layer (the sum of its layer_* columns). gap_us = max(0, slope - that price): the
per-layer time the operator tables miss, idle time between dependent kernels and whatever else
a layer spends that the per-operator timings do not see (a calibrated residual, not an idle
time observed directly; `residual_us` keeps it unclamped: negative where the tables price a
layer above its measured cost, which the gap does not correct). graph_us is the full model's
time, kernel_us the cost model's price without gaps, idle_us = gap_us x layers.

The points must not be the validation grid's (kvprof_validate.py's), or the gaps would be fitted
to the rows that judge them: --grid GRID.csv refuses points the grid has. Two points of a
model with the same token count are refused too (the cost model reads one gap per model and
token count: a decode batch B and a prefill of B tokens collide). Pure Python, no GPU,
no torch (runs in CI). Exit codes: 0 ok, 1 bad input, 2 usage.
"""
from __future__ import annotations

import argparse
import configparser
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLS = ["model", "kind", "batch", "context", "tokens", "graph_us", "kernel_us", "launches",
        "layers", "kernels_per_layer", "method", "idle_us", "gap_per_kernel_us", "gap_us",
        "slope_us", "pred_layer_us", "residual_us"]


class BadInput(Exception):
    pass


def layers_of(models: Path, stem: str) -> int:
    path = models / f"{stem}.ini"
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    if not cp.read(path):
        raise BadInput(f"{path}: no such model file (model '{stem}' of the breakdown)")
    try:
        n = cp["model"].getint("layers")
    except (KeyError, ValueError) as ex:
        raise BadInput(f"{path}: [model] layers: {ex}") from None
    if not n or n < 1:
        raise BadInput(f"{path}: [model] layers must be >= 1")
    return n


def num(path: Path, line: int, row: dict, col: str, lo: float) -> float:
    text = row.get(col)
    if text is None or text == "":
        raise BadInput(f"{path}:{line}: column '{col}' is empty")
    try:
        v = float(text)
    except ValueError:
        raise BadInput(f"{path}:{line}: column '{col}': '{text}' is not a number") from None
    if not v >= lo:
        raise BadInput(f"{path}:{line}: column '{col}': {text} is below {lo:g}")
    return v


def csv_rows(path: Path, need: set[str]):
    """(line number in the file, row) of a CSV whose '#' lines are provenance; the header must
    have the columns in `need`."""
    try:
        with open(path, newline="") as f:
            lines = [(n, text) for n, text in enumerate(f, start=1) if not text.startswith("#")]
    except OSError as ex:
        raise BadInput(f"{path}: {ex.strerror}") from None
    r = csv.DictReader(text for _, text in lines)
    missing = need - set(r.fieldnames or [])
    if missing:
        raise BadInput(f"{path}: the header has no column(s) {', '.join(sorted(missing))}")
    for (n, _), row in zip(lines[1:], r):
        yield n, row


def read_points(path: Path) -> dict[tuple, dict]:
    """(model, kind, batch, context, tokens) -> graph_us, kernel_us, launches."""
    pts: dict[tuple, dict] = {}
    need = {"model", "batch", "context", "graph_us", "us_per_iter", "launches_per_iter"}
    for i, row in csv_rows(path, need):
        kind = row.get("kind") or "decode"  # the first breakdowns had decode only
        if kind not in ("decode", "prefill"):
            raise BadInput(f"{path}:{i}: column 'kind': '{kind}' (decode or prefill)")
        B = int(num(path, i, row, "batch", 1))
        ctx = int(num(path, i, row, "context", 0))
        tok = int(num(path, i, row, "tokens", 1)) if row.get("tokens") else 1
        T = B if kind == "decode" else tok
        key = (row["model"], kind, B, ctx, T)
        g = num(path, i, row, "graph_us", 1e-9)
        p = pts.setdefault(key, {"graph_us": g, "kernel_us": 0.0, "launches": 0.0})
        if row.get("idle_est_us"):
            p["idle_us"] = num(path, i, row, "idle_est_us", 0)
            p["kernels"] = num(path, i, row, "kernels", 1)
        if abs(p["graph_us"] - g) > 1e-6 * g:
            raise BadInput(f"{path}:{i}: graph_us {g} differs from the point's first row "
                           f"({p['graph_us']})")
        p["kernel_us"] += num(path, i, row, "us_per_iter", 0)
        p["launches"] += num(path, i, row, "launches_per_iter", 0)
    if not pts:
        raise BadInput(f"{path}: no rows")
    return pts


def point_key(path: Path, i: int, row: dict) -> tuple:
    """(model, kind, batch, context, tokens) of a row; tokens is the cost model's T (decode:
    the batch; prefill: the row's tokens)."""
    kind = row.get("kind", "")
    if kind not in ("decode", "prefill"):
        raise BadInput(f"{path}:{i}: column 'kind': '{kind}' (decode or prefill)")
    B = int(num(path, i, row, "batch", 1))
    ctx = int(num(path, i, row, "context", 0))
    tok = int(num(path, i, row, "tokens", 1))
    return (row["model"], kind, B, ctx, B if kind == "decode" else tok)


def read_layers(path: Path) -> dict[tuple, dict[int, float]]:
    """kvprof_layers.py's layers.csv: point -> {layer count: graph_us}."""
    out: dict[tuple, dict[int, float]] = {}
    for i, row in csv_rows(path, {"model", "kind", "batch", "tokens", "context", "layers",
                                  "graph_us"}):
        k = point_key(path, i, row)
        n = int(num(path, i, row, "layers", 1))
        per = out.setdefault(k, {})
        if n in per:
            raise BadInput(f"{path}:{i}: point {k} has a second row with {n} layers")
        per[n] = num(path, i, row, "graph_us", 1e-9)
    if not out:
        raise BadInput(f"{path}: no rows")
    return out


def read_ops(path: Path) -> dict[tuple, tuple[float, int, float]]:
    """kvsim-predict --ops: point -> (the price of one layer, the model's layers, the
    iteration's predicted_us). The ops must be priced without gaps."""
    out: dict[tuple, tuple[float, int, float]] = {}
    rows = csv_rows(path, {"model", "kind", "batch", "tokens", "context", "layers",
                           "predicted_us", "layer_launch_gap"})
    for i, row in rows:
        k = point_key(path, i, row)
        if num(path, i, row, "layer_launch_gap", 0) != 0:
            raise BadInput(f"{path}:{i}: priced with launch gaps (layer_launch_gap "
                           f"{row['layer_launch_gap']}); run kvsim-predict --launch-gaps none")
        layer = sum(num(path, i, row, c, 0) for c in row if c.startswith("layer_")
                    and c != "layers")
        out[k] = (layer, int(num(path, i, row, "layers", 1)), num(path, i, row,
                                                                   "predicted_us", 1e-9))
    if not out:
        raise BadInput(f"{path}: no rows")
    return out


def line_fit(per: dict[int, float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of time against layer count: us per layer, and the
    iteration's time outside the layers. Needs two layer counts or more (kvprof_layers.py and
    kvprof_summary.py use it too)."""
    xs = sorted(per)
    mx = sum(xs) / len(xs)
    my = sum(per[x] for x in xs) / len(xs)
    sl = sum((x - mx) * (per[x] - my) for x in xs) / sum((x - mx) ** 2 for x in xs)
    return sl, my - sl * mx


def layer_points(layers: list[Path], ops: list[Path], models: Path) -> dict[tuple, dict]:
    """Method "layers": point -> the launch_gap.csv row's values."""
    if len(layers) != len(ops):
        raise BadInput(f"{len(layers)} --layers file(s) and {len(ops)} --ops file(s): give one "
                       "--ops per --layers, in the same order")
    pts: dict[tuple, dict] = {}
    for lp, op in zip(layers, ops):
        meas, pred = read_layers(lp), read_ops(op)
        for k, per in meas.items():
            if k not in pred:
                raise BadInput(f"{op}: no prediction of {lp}'s point {k}")
            if len(per) < 2:
                raise BadInput(f"{lp}: point {k} has one layer count ({min(per)}); the slope "
                               "needs two or more")
            layer, L, predicted = pred[k]
            if L != layers_of(models, k[0]):
                raise BadInput(f"{op}: point {k} was priced with {L} layers; the model file "
                               f"has {layers_of(models, k[0])}")
            if L not in per:
                raise BadInput(f"{lp}: point {k} has no time at the model's {L} layers")
            sl = line_fit(per)[0]
            if k in pts:
                raise BadInput(f"{lp}: point {k} is also in an earlier file")
            pts[k] = {"graph_us": per[L], "kernel_us": predicted, "slope": sl, "pred": layer,
                      "layers": L}
    return pts


def grid_points(path: Path) -> set[tuple]:
    """The validation grid's (model, kind, batch, context, tokens) points."""
    out = set()
    for i, row in csv_rows(path, {"model", "kind", "batch", "tokens", "context"}):
        kind = row["kind"]
        if kind not in ("decode", "prefill"):
            continue
        B = int(num(path, i, row, "batch", 1))
        ctx = int(num(path, i, row, "context", 0))
        tok = int(num(path, i, row, "tokens", 1))
        out.add((row["model"], kind, B, ctx, B if kind == "decode" else tok))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("breakdowns", nargs="*", type=Path)
    ap.add_argument("--layers", action="append", type=Path, default=[],
                    help="kvprof_layers.py's layers.csv (method layers)")
    ap.add_argument("--ops", action="append", type=Path, default=[],
                    help="kvsim-predict --launch-gaps none --ops of the --layers file's grid")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=ROOT / "sim" / "data" / "models")
    ap.add_argument("--grid", type=Path, help="the validation grid: its points are refused")
    ap.add_argument("--source", default="", help="provenance line (device, date, command)")
    a = ap.parse_args(argv)
    if not a.breakdowns and not a.layers:
        ap.error("give breakdown CSVs or --layers/--ops pairs")
    try:
        pts: dict[tuple, dict] = {}
        sources = [(p, read_points(p)) for p in a.breakdowns]
        if a.layers or a.ops:
            sources.append((a.layers[0] if a.layers else a.ops[0],
                            layer_points(a.layers, a.ops, a.models)))
        for p, got in sources:
            for k, v in got.items():
                if k in pts:
                    raise BadInput(f"{p}: point {k} is also in an earlier file")
                same_t = [q for q in pts if q[0] == k[0] and q[4] == k[4]]
                if same_t:  # sim_profile.c reads one gap per (model, tokens)
                    raise BadInput(f"{p}: point {k} has the token count of {same_t[0]}: "
                                   "launch_gap.csv holds one gap per model and token count")
                pts[k] = v
        if a.grid:
            clash = sorted(set(pts) & grid_points(a.grid))
            if clash:
                raise BadInput(f"{a.grid}: the validation grid has the calibration point(s) "
                               + "; ".join(str(c) for c in clash))
        rows, clamped = [], 0
        for (model, kind, B, ctx, T), v in sorted(pts.items()):
            L = layers_of(a.models, model)
            if "slope" in v:  # method layers
                res = v["slope"] - v["pred"]
                clamped += res < 0
                gap = max(res, 0.0)
                rows.append([model, kind, B, ctx, T, f"{v['graph_us']:.1f}",
                             f"{v['kernel_us']:.1f}", "", L, "", "layers", f"{gap * L:.1f}", "",
                             f"{gap:.3f}", f"{v['slope']:.2f}", f"{v['pred']:.2f}",
                             f"{res:.2f}"])
                continue
            if v["launches"] <= 0:
                raise BadInput(f"point {model} {kind} B{B} L{ctx} T{T}: no kernel launches")
            if "idle_us" in v:
                method, idle, n = "trace", v["idle_us"], v["kernels"]
            else:
                d = v["graph_us"] - v["kernel_us"]
                clamped += d < 0
                method, idle, n = "difference", max(d, 0.0), v["launches"]
            rows.append([model, kind, B, ctx, T, f"{v['graph_us']:.1f}", f"{v['kernel_us']:.1f}",
                         f"{n:g}", L, f"{n / L:.2f}", method, f"{idle:.1f}", f"{idle / n:.4f}",
                         f"{idle / L:.3f}", "", "", ""])
    except BadInput as ex:
        print(f"kvprof_gap: {ex}", file=sys.stderr)
        return 1
    if a.out.exists() and a.out.is_dir():
        print(f"kvprof_gap: {a.out} is a directory", file=sys.stderr)
        return 1
    tmp = a.out.with_name(a.out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write("# format: kvlab-gpu-profile\n# step: launch_gap (kvprof_gap.py)\n")
        if a.source:
            f.write(f"# source: {a.source}\n")
        f.write("# inputs: " + " ".join([str(p) for p in a.breakdowns]
                                        + [f"--layers {p}" for p in a.layers]
                                        + [f"--ops {p}" for p in a.ops]) + "\n")
        w = csv.writer(f)
        w.writerow(COLS)
        w.writerows(rows)
    os.replace(tmp, a.out)
    for r in rows:
        if r[10] == "layers":
            print(f"{r[0]} {r[1]} B{r[2]} L{r[3]} T{r[4]}: {r[8]} layers {r[5]} us (predicted "
                  f"{r[6]} us without gaps); slope {r[14]} us per layer, priced {r[15]}: gap "
                  f"{r[13]} us per layer (residual {r[16]})")
            continue
        print(f"{r[0]} {r[1]} B{r[2]} L{r[3]} T{r[4]}: graph {r[5]} us, kernels {r[6]} us, "
              f"{r[7]} launches; idle {r[11]} us ({r[10]}) -> {r[12]} us per kernel, {r[13]} us "
              f"per layer")
    print(f"kvprof_gap: {a.out}: {len(rows)} points ({clamped} with a negative difference or "
          f"residual: gap 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
