#!/usr/bin/env python3
"""kvprof_layers.py - the time one decoder layer adds to a CUDA-graph iteration, by layer count.

    python3 sim/profiling/kvprof_layers.py --out DIR [--models llama-2-7b,llama-2-13b]
            [--layers 8,16,32] [--points 1x8192,2x2048,8x8192,32x2048,48x1024]
            [--prefill 192,768,3072] [--reps 7] [--rounds 2] [--budget S] [--smoke]

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
time) for the --ops prediction; both begin with '#' provenance lines (device, date, commit,
command, smoke). The third step of sim/profiling/device_run.sh (`layers`), whose results
kvprof_install.py turns into the profile's launch_gap.csv. --budget S: no new (round, model,
layer count) starts after S seconds (what was measured is written; a point needs two layer
counts). --resume is accepted for device_run.sh and starts again. --smoke: CPU, the tiny
stand-in models, small points (a flow test; numbers mean nothing). Without a GPU and without
--smoke: exit 2. A point that fails is reported and skipped.
"""
from __future__ import annotations

import argparse
import copy
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402
import kvprof_llama as LL  # noqa: E402
from kvprof_breakdown import parse_count, parse_point  # noqa: E402
from kvprof_gap import line_fit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", "--model", default="llama-2-7b,llama-2-13b")
    ap.add_argument("--layers", default="", help="layer counts (default: L/4, L/2, L)")
    ap.add_argument("--points", default="")
    ap.add_argument("--prefill", default="")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=float, default=0.0, help="soft budget, s (0: none)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny models (flow test)")
    ap.add_argument("--resume", action="store_true", help="accepted; starts again")
    a = ap.parse_args()
    t_start = time.time()
    dev = C.pick_device(a.smoke, "kvprof_layers")
    if dev is None:
        return 2
    points = a.points or ("1x48,2x32" if a.smoke else "1x8192,2x2048,8x8192,32x2048,48x1024")
    prefill = a.prefill or ("16,40" if a.smoke else "192,768,3072")
    reps = 2 if a.smoke else a.reps
    todo = [("decode", *parse_point(pt)) for pt in points.split(",") if pt]
    todo += [("prefill", 1, parse_count("--prefill", t)) for t in prefill.split(",") if t]
    shapes = C.load_models([m for m in a.models.split(",") if m], smoke=a.smoke)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.smoke:
        C.write_smoke_models(a.out)
    # med[(model, kind, B, X)][n]: each round's median; spread: the last round's p10, p90, reps
    med: dict[tuple, dict[int, list[float]]] = {}
    spread: dict[tuple, dict[int, tuple]] = {}
    over = False
    for rnd in range(a.rounds):
        for shape in shapes:
            counts = ([parse_count("--layers", t) for t in a.layers.split(",") if t]
                      if a.layers else sorted({max(1, shape.layers // 4),
                                               max(1, shape.layers // 2), shape.layers}))
            if len(counts) < 2:
                raise SystemExit("kvprof_layers: --layers needs two counts or more")
            for n in counts:
                if a.budget and time.time() - t_start > a.budget:
                    over = True
                    break
                t0 = time.time()
                s = copy.copy(shape)
                s.layers = n
                model = LL.build_model(s, dev)
                for kind, B, X in todo:
                    key = (shape.stem, kind, B, X)
                    try:
                        it = (LL.HFDecode(model, B, X, dev) if kind == "decode"
                              else LL.HFPrefill(model, B, X, dev))
                        r = LL.time_iteration(it, dev, reps=reps, warmup=2, graph=True)
                        del it
                    except Exception as ex:  # noqa: BLE001 - report, go on with the next point
                        print(f"{shape.stem}@{n} {kind} B{B} X{X}: FAILED "
                              f"{type(ex).__name__}: {str(ex)[:200]}", flush=True)
                        C.free_memory(dev)
                        continue
                    med.setdefault(key, {}).setdefault(n, []).append(r["us"])
                    spread.setdefault(key, {})[n] = (r["p10_us"], r["p90_us"], r["reps"])
                    C.free_memory(dev)
                del model
                C.free_memory(dev)
                print(f"round {rnd + 1}: {shape.stem} with {n} layers: {len(todo)} points in "
                      f"{time.time() - t0:.0f} s", flush=True)
            if over:
                break
        if over:
            print(f"kvprof_layers: soft budget {a.budget:g} s spent; writing what was measured",
                  flush=True)
            break
    path, gpath = a.out / "layers.csv", a.out / "layers-grid.csv"
    full = {sh.stem: sh.layers for sh in shapes}
    with open(path, "w", newline="") as f, open(gpath, "w", newline="") as g:
        meta = C.device_meta(dev)
        meta["smoke"] = "true" if a.smoke else "false"
        for k, v in meta.items():  # provenance: device, date, commit, command
            f.write(f"# {k}: {v}\n")
            g.write(f"# {k}: {v}\n")
        w, wg = csv.writer(f), csv.writer(g)
        w.writerow(["model", "kind", "batch", "tokens", "context", "layers", "graph_us",
                    "p10_us", "p90_us", "reps", "rounds"])
        wg.writerow(["model", "kind", "impl", "mode", "batch", "tokens", "context",
                     "read_buffer", "measured_us"])
        for (stem, kind, B, X), per in med.items():
            T, ctx = (1, X) if kind == "decode" else (X, 0)
            for n, vals in sorted(per.items()):
                p10, p90, nrep = spread[(stem, kind, B, X)][n]
                w.writerow([stem, kind, B, T, ctx, n, f"{statistics.median(vals):.1f}",
                            f"{p10:.1f}", f"{p90:.1f}", nrep, len(vals)])
            if full[stem] in per and len(per) >= 2:
                wg.writerow([stem, kind, "hf", "graph", B, T, ctx, "",
                             f"{statistics.median(per[full[stem]]):.1f}"])
            if len(per) >= 2:
                ys = {n: statistics.median(v) for n, v in per.items()}
                sl, ic = line_fit(ys)
                print(f"{stem} {kind} B{B} X{X}: " + ", ".join(
                    f"{n} layers {ys[n]:.0f} us" for n in sorted(ys))
                    + f"; slope {sl:.1f} us per layer, intercept {ic:.0f} us", flush=True)
    print(f"kvprof_layers: {path}, {gpath}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
