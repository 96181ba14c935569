#!/usr/bin/env python3
"""kvprof_breakdown.py - where the time of a validation iteration goes, kernel by kernel.

    python3 sim/profiling/kvprof_breakdown.py --out DIR [--model llama-2-7b]
            [--points 4x1024,4x16384,1x32768] [--prefill 1024,8192] [--reps 5]

For each decode point (batch x context) of transformers' static-cache decode (the validation's
`decode hf` rows), captures the iteration in a CUDA graph as kvprof_validate does, replays it
under torch.profiler and writes DIR/breakdown.csv: one row per (model, batch, context, kernel
class, kernel name) with the summed CUDA time per iteration (us) and the launch count per
iteration. Kernel classes are coarse (gemm, attention, elementwise, copy, other) from the kernel
name; the CSV keeps the full name so that nothing depends on the classes being right.
Purpose (issue 15): the measured cost model under-predicts these rows by 4-21%, more at long
context (7B B4 L16K: 14.4 ms predicted, 18.4 ms measured); the per-kernel sums say which operator
the operator profile misses. Per point also (since 2026-12-03 18:40 UTC; replay_gaps): single
replays timed by events without and with the profiler (`t0_us`, `t1_us`), the profiled replay's
device span and idle time (`span_us`, `idle_us`: span minus the union of its kernels'
intervals), its kernel count, and `idle_est_us` = idle_us minus the profiler's inflation
t1_us - t0_us: the gaps between dependent kernels that per-operator timings do not see
(kvprof_gap.py can turn them into a launch_gap.csv; on the H200 the profiler perturbs them too
much, and the installed gaps come from kvprof_layers.py instead: docs/sim.md). --prefill T,...: the same for transformers' prefill of T
tokens (batch 1, the validation's `prefill hf` rows; rows with context 0 and batch 1, `kind`
prefill; prefill is 1-10% under the prediction, growing with T). Also prints the top kernels per point.
GPU only; exit 2 without one.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402
import kvprof_llama as LL  # noqa: E402


def kclass(name: str) -> str:
    n = name.lower()
    if any(t in n for t in ("gemm", "gemv", "cutlass", "sm90_xmma", "nvjet", "cublas")):
        return "gemm"
    if any(t in n for t in ("fmha", "flash", "attention", "sdpa", "cudnn")):
        return "attention"
    if any(t in n for t in ("copy", "memcpy", "memset", "index", "scatter", "cat")):
        return "copy"
    if "elementwise" in n or "reduce" in n or "vectorized" in n:
        return "elementwise"
    return "other"


def idle_in_span(iv: list[tuple[float, float]]) -> tuple[float, float]:
    """(span, idle) of one replay's device intervals (start, end in us): span from the first
    start to the last end, idle = span minus the union of the intervals (overlapping kernels
    count once, so idle is never negative)."""
    if not iv:
        return 0.0, 0.0
    iv = sorted(iv)
    busy, cur_s, cur_e = 0.0, iv[0][0], iv[0][1]
    for s, e in iv[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    span = max(e for _, e in iv) - iv[0][0]
    return span, span - busy


def replay_gaps(it, g, dev, reps: int, profile, activity) -> dict:
    """Single replays from an idle device (sync, cache reset, then one replay between two
    events), alternating unprofiled and profiled, `reps` of each; medians of: t0_us (the
    unprofiled replay's event time), t1_us (the profiled one's), span_us and idle_us (the
    profiled replay's device span and the idle time in it: span minus the union of its device
    intervals) and kernels. The profiler's own cost per kernel inflates idle_us; t1_us - t0_us
    measures that inflation, so idle_est_us = max(0, idle_us - max(0, t1_us - t0_us)) is the
    idle time of an unprofiled replay."""
    from torch.autograd import DeviceType  # noqa: PLC0415

    t0s, t1s, spans, idles, counts = [], [], [], [], []

    def one(timed: list) -> None:
        torch.cuda.synchronize(dev)
        it.reset()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        timed.append(s.elapsed_time(e) * 1e3)

    for _ in range(reps):
        one(t0s)
        with profile(activities=[activity]) as p1:
            one(t1s)
        iv = [(e.time_range.start, e.time_range.end) for e in p1.events()
              if getattr(e, "device_type", None) == DeviceType.CUDA
              and e.time_range.end > e.time_range.start]
        sp, idle = idle_in_span(iv)
        spans.append(sp)
        idles.append(idle)
        counts.append(len(iv))

    med = statistics.median
    r = {"t0_us": med(t0s), "t1_us": med(t1s), "span_us": med(spans), "idle_us": med(idles),
         "kernels": med(counts)}
    r["idle_est_us"] = max(0.0, r["idle_us"] - max(0.0, r["t1_us"] - r["t0_us"]))
    return r


def parse_count(opt: str, text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise SystemExit(f"kvprof_breakdown: {opt}: '{text}' is not a positive integer")
    return n


def parse_point(text: str) -> tuple[int, int]:
    """'BxL' of --points: batch x context."""
    b, sep, l = text.partition("x")
    if not sep:
        raise SystemExit(f"kvprof_breakdown: --points: '{text}' is not BATCHxCONTEXT (e.g. 4x16384)")
    return parse_count("--points batch", b), parse_count("--points context", l)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--points", default="4x1024,4x16384,1x32768")
    ap.add_argument("--prefill", default="", help="prefill token counts, e.g. 1024,8192")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    todo = [("decode", *parse_point(pt)) for pt in a.points.split(",") if pt]
    todo += [("prefill", 1, parse_count("--prefill", t)) for t in a.prefill.split(",") if t]
    got = LL.gpu_model("kvprof_breakdown", a.model)
    if got is None:
        return 2
    dev, model = got
    a.out.mkdir(parents=True, exist_ok=True)
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    path = a.out / "breakdown.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        gcols = ["t0_us", "t1_us", "span_us", "idle_us", "kernels", "idle_est_us"]
        w.writerow(["model", "kind", "batch", "tokens", "context", "graph_us", *gcols, "class",
                    "kernel", "us_per_iter", "launches_per_iter"])
        for kind, B, L in todo:
            t0 = time.time()
            T, ctx = (1, L) if kind == "decode" else (L, 0)
            try:
                it = (LL.HFDecode(model, B, L, dev) if kind == "decode"
                      else LL.HFPrefill(model, B, L, dev))
                r = LL.time_iteration(it, dev, reps=a.reps, warmup=2, graph=True)
                # the same capture again, replayed under the profiler
                with torch.inference_mode():
                    g = LL.capture(it, dev)
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(a.reps):
                            it.reset()
                            g.replay()
                        torch.cuda.synchronize(dev)
                    gp = replay_gaps(it, g, dev, max(a.reps, 7), profile, ProfilerActivity.CUDA)
                    del g
            except Exception as ex:  # noqa: BLE001 - report, go on with the next point
                print(f"{a.model} {kind} B{B} L{L}: FAILED {type(ex).__name__}: {str(ex)[:200]}",
                      flush=True)
                C.free_memory(dev)
                continue
            rows = []
            for e in prof.key_averages():
                dt = getattr(e, "device_time_total", None)
                if dt is None:
                    dt = getattr(e, "cuda_time_total", 0.0)
                if not dt or e.key.startswith("cuda") or "Activity" in e.key:
                    continue
                rows.append((dt / a.reps, e.count / a.reps, e.key))
            rows.sort(reverse=True)
            tot = sum(x[0] for x in rows)
            cls: dict[str, float] = {}
            for us, n, name in rows:
                c = kclass(name)
                cls[c] = cls.get(c, 0.0) + us
                w.writerow([a.model, kind, B, T, ctx, f"{r['us']:.1f}",
                            *(f"{gp[k]:g}" if k == "kernels" else f"{gp[k]:.1f}" for k in gcols),
                            c, name, f"{us:.2f}", f"{n:g}"])
            f.flush()
            print(f"{a.model} {kind} B{B} L{L}: graph {r['us']:.0f} us; single replays "
                  f"{gp['t0_us']:.0f} us, profiled {gp['t1_us']:.0f} us (span {gp['span_us']:.0f}, "
                  f"idle {gp['idle_us']:.0f} between {gp['kernels']} kernels, without the "
                  f"profiler's cost {gp['idle_est_us']:.0f}); kernels {tot:.0f} us/iter "
                  f"({time.time() - t0:.0f} s); by class: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cls.items(), key=lambda x: -x[1])),
                  flush=True)
            for us, n, name in rows[:8]:
                print(f"   {us:9.1f} us  x{n:5g}  {kclass(name):11s} {name[:110]}", flush=True)
            del it
            C.free_memory(dev)
    print(f"kvprof_breakdown: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
