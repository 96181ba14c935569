#!/usr/bin/env python3
"""kvprof_layers.py - the time one decoder layer adds to a CUDA-graph iteration, by layer count.

    python3 sim/profiling/kvprof_layers.py --out DIR [--model llama-2-7b]
            [--layers 8,16,32] [--points 1x8192,2x2048,8x8192,32x2048,48x1024]
            [--prefill 192,768,3072] [--reps 7]

The same iterations as the validation's CUDA-graph rows (transformers' static-cache decode of
B sequences at context L, `decode hf graph`; prefill of T tokens, batch 1, `prefill hf graph`)
timed on models that differ only in their number of decoder layers (the model file's shape with
`layers` replaced; random bf16 weights as kvprof_validate.py). The slope of time against layer
count is the time one layer adds to a replay, *including* whatever the GPU spends between that
layer's kernels (launch and ramp of each dependent kernel), measured without a profiler
attached: torch.profiler perturbs that idle time on the H200 (docs/sim.md). The embedding, the
LM head and the graph's fixed cost are in the intercept. kvprof_gap.py --layers compares the
slope with the cost model's own price of one layer at the same point (kvsim-predict --ops) and
writes the difference as the profile's launch_gap.csv.

The points must lie outside the validation grid (kvprof_gap.py --grid refuses the grid's);
the defaults do for the H200 grid of 2026-12-03. Each point is timed at every layer count in
turn, the counts interleaved over `--rounds` passes (default 2) so that the device's drift over
the call (a few percent over minutes, docs/sim.md) falls on every count alike; the row's time
is the median over the passes' medians.

Writes DIR/layers.csv: model, kind, batch, tokens, context, layers, graph_us, p10_us, p90_us,
reps, rounds (graph_us: the median over rounds of each round's median replay), and
DIR/layers-grid.csv: the points in kvsim-predict's grid format (measured_us: the full model's
time) for the --ops prediction. GPU only (exit 2 without one); a point that fails is reported
and skipped.
"""
from __future__ import annotations

import argparse
import copy
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402
import kvprof_llama as LL  # noqa: E402
from kvprof_breakdown import parse_count, parse_point  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--layers", default="", help="layer counts (default: L/4, L/2, L)")
    ap.add_argument("--points", default="1x8192,2x2048,8x8192,32x2048,48x1024")
    ap.add_argument("--prefill", default="192,768,3072")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("kvprof_layers: no GPU", file=sys.stderr)
        return 2
    shape = C.load_models([a.model], smoke=False)[0]
    counts = ([parse_count("--layers", t) for t in a.layers.split(",") if t] if a.layers
              else sorted({max(1, shape.layers // 4), max(1, shape.layers // 2), shape.layers}))
    if len(counts) < 2:
        raise SystemExit("kvprof_layers: --layers needs two counts or more")
    todo = [("decode", *parse_point(pt)) for pt in a.points.split(",") if pt]
    todo += [("prefill", 1, parse_count("--prefill", t)) for t in a.prefill.split(",") if t]
    dev = torch.device("cuda")
    a.out.mkdir(parents=True, exist_ok=True)
    # samples[(kind, B, X)][n] = list of each round's median; p10/p90 of the last round
    med: dict[tuple, dict[int, list[float]]] = {}
    spread: dict[tuple, dict[int, tuple]] = {}
    for rnd in range(a.rounds):
        for n in counts:
            t0 = time.time()
            s = copy.copy(shape)
            s.layers = n
            model = LL.build_model(s, dev)
            for kind, B, X in todo:
                try:
                    it = (LL.HFDecode(model, B, X, dev) if kind == "decode"
                          else LL.HFPrefill(model, B, X, dev))
                    r = LL.time_iteration(it, dev, reps=a.reps, warmup=2, graph=True)
                    del it
                except Exception as ex:  # noqa: BLE001 - report, go on with the next point
                    print(f"{a.model}@{n} {kind} B{B} X{X}: FAILED {type(ex).__name__}: "
                          f"{str(ex)[:200]}", flush=True)
                    C.free_memory(dev)
                    continue
                med.setdefault((kind, B, X), {}).setdefault(n, []).append(r["us"])
                spread.setdefault((kind, B, X), {})[n] = (r["p10_us"], r["p90_us"], r["reps"])
                C.free_memory(dev)
            del model
            C.free_memory(dev)
            print(f"round {rnd + 1}: {a.model} with {n} layers: {len(todo)} points in "
                  f"{time.time() - t0:.0f} s", flush=True)
    path, gpath = a.out / "layers.csv", a.out / "layers-grid.csv"
    with open(path, "w", newline="") as f, open(gpath, "w", newline="") as g:
        for k, v in C.device_meta(dev).items():  # provenance: device, date, commit, command
            f.write(f"# {k}: {v}\n")
            g.write(f"# {k}: {v}\n")
        w, wg = csv.writer(f), csv.writer(g)
        w.writerow(["model", "kind", "batch", "tokens", "context", "layers", "graph_us",
                    "p10_us", "p90_us", "reps", "rounds"])
        wg.writerow(["model", "kind", "impl", "mode", "batch", "tokens", "context",
                     "read_buffer", "measured_us"])
        for (kind, B, X), per in med.items():
            T, ctx = (1, X) if kind == "decode" else (X, 0)
            for n, vals in sorted(per.items()):
                p10, p90, reps = spread[(kind, B, X)][n]
                w.writerow([a.model, kind, B, T, ctx, n, f"{statistics.median(vals):.1f}",
                            f"{p10:.1f}", f"{p90:.1f}", reps, len(vals)])
            if shape.layers in per:
                wg.writerow([a.model, kind, "hf", "graph", B, T, ctx, "",
                             f"{statistics.median(per[shape.layers]):.1f}"])
            xs = sorted(per)
            if len(xs) >= 2:
                ys = [statistics.median(per[n]) for n in xs]
                mx, my = statistics.fmean(xs), statistics.fmean(ys)
                slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
                         / sum((x - mx) ** 2 for x in xs))
                print(f"{a.model} {kind} B{B} X{X}: " + ", ".join(
                    f"{n} layers {y:.0f} us" for n, y in zip(xs, ys))
                    + f"; slope {slope:.1f} us per layer, intercept {my - slope * mx:.0f} us",
                    flush=True)
    print(f"kvprof_layers: {path}, {gpath}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
