#!/usr/bin/env python3
"""kvprof_gap.py - the GPU's idle time between a layer's kernels, for the profile's launch_gap.csv.

    python3 sim/profiling/kvprof_gap.py --out PROFILE/launch_gap.csv BREAKDOWN.csv [...]
            [--models sim/data/models] [--source TEXT]

Reads kvprof_breakdown.py's per-kernel CSVs (one iteration of transformers' decode or prefill
replayed from a CUDA graph: the replay's time `graph_us` and, per kernel, its CUDA time and
launches per iteration under torch.profiler) and writes one row per measured point:

    model, kind, batch, context, tokens, graph_us, kernel_us, launches, layers,
    kernels_per_layer, gap_per_kernel_us, gap_us

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
        "layers", "kernels_per_layer", "method", "idle_us", "gap_per_kernel_us", "gap_us"]


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
    ap.add_argument("breakdowns", nargs="+", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=ROOT / "sim" / "data" / "models")
    ap.add_argument("--grid", type=Path, help="the validation grid: its points are refused")
    ap.add_argument("--source", default="", help="provenance line (device, date, command)")
    a = ap.parse_args(argv)
    try:
        pts: dict[tuple, dict] = {}
        for p in a.breakdowns:
            for k, v in read_points(p).items():
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
                         f"{idle / L:.3f}"])
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
        f.write("# inputs: " + " ".join(str(p) for p in a.breakdowns) + "\n")
        w = csv.writer(f)
        w.writerow(COLS)
        w.writerows(rows)
    os.replace(tmp, a.out)
    for r in rows:
        print(f"{r[0]} {r[1]} B{r[2]} L{r[3]} T{r[4]}: graph {r[5]} us, kernels {r[6]} us, "
              f"{r[7]} launches; idle {r[11]} us ({r[10]}) -> {r[12]} us per kernel, {r[13]} us "
              f"per layer")
    print(f"kvprof_gap: {a.out}: {len(rows)} points ({clamped} by difference with the kernels "
          f"summing above the replay: gap 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
