#!/usr/bin/env python3
"""kvprof_hostnoise.py - how steady is the host's launch speed? (issue 15, eager rows)

    python3 sim/profiling/kvprof_hostnoise.py --out DIR [--model llama-2-7b] [--batch 1]
            [--context 1024] [--block-s 5] [--blocks 10]

Runs transformers' eager static-cache decode step (the validation's `decode hf eager` rows) back
to back for `blocks` blocks of `block-s` seconds, alternating two conditions: `free` (the process
as started) and `pinned` (os.sched_setaffinity to one CPU, the launching thread's). Every step is
timed from an idle device: host_us = time until step() returns (launches, before any
synchronisation), total_us = until the device is done. Writes DIR/hostnoise.csv (one row per
step: block, condition, t_s since start, host_us, total_us, cpu_mhz of the pinned CPU where
/proc/cpuinfo says) and prints per block the median and p10/p90 of host_us.
Purpose: on 2026-12-03 the validation's eager rows of one model took 21-34 ms for the same host
work, each row steady within a few percent: the question is whether the host drifts on a scale of
seconds and whether pinning steadies it. GPU only; exit 2 without one.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402
import kvprof_llama as LL  # noqa: E402


def cpu_mhz(cpu: int) -> str:
    """The 'cpu MHz' line of one CPU in /proc/cpuinfo ('' when absent)."""
    try:
        cur = -1
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("processor"):
                    cur = int(ln.split(":")[1])
                elif ln.startswith("cpu MHz") and cur == cpu:
                    return ln.split(":")[1].strip()
    except (OSError, ValueError):
        pass
    return ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--block-s", type=float, default=5.0)
    ap.add_argument("--blocks", type=int, default=10)
    a = ap.parse_args()
    if a.batch < 1 or a.context < 1 or a.block_s <= 0 or a.blocks < 1:
        print("kvprof_hostnoise: --batch, --context, --blocks >= 1 and --block-s > 0", file=sys.stderr)
        return 2
    got = LL.gpu_model("kvprof_hostnoise", a.model)
    if got is None:
        return 2
    dev, model = got
    a.out.mkdir(parents=True, exist_ok=True)
    it = LL.HFDecode(model, a.batch, a.context, dev)
    every = os.sched_getaffinity(0)
    pin = {max(every)}
    t0 = time.perf_counter()
    path = a.out / "hostnoise.csv"
    with open(path, "w", newline="") as f, torch.inference_mode():
        w = csv.writer(f)
        w.writerow(["block", "condition", "t_s", "host_us", "total_us", "cpu_mhz"])
        for _ in range(3):  # warm-up
            it.reset()
            it.step()
        torch.cuda.synchronize(dev)
        for b in range(a.blocks):
            cond = "free" if b % 2 == 0 else "pinned"
            os.sched_setaffinity(0, every if cond == "free" else pin)
            end = time.perf_counter() + a.block_s
            hs = []
            while time.perf_counter() < end:
                torch.cuda.synchronize(dev)
                it.reset()
                torch.cuda.synchronize(dev)
                h0 = time.perf_counter()
                it.step()
                h1 = time.perf_counter()
                torch.cuda.synchronize(dev)
                h2 = time.perf_counter()
                hs.append((h1 - h0) * 1e6)
                w.writerow([b, cond, f"{h0 - t0:.3f}", f"{(h1 - h0) * 1e6:.1f}",
                            f"{(h2 - h0) * 1e6:.1f}", cpu_mhz(min(pin))])
            f.flush()
            st = C.summarize(hs)
            print(f"block {b} {cond:6s}: {len(hs)} steps, host median {st['us']:8.0f} us "
                  f"(p10 {st['p10_us']:8.0f}, p90 {st['p90_us']:8.0f})", flush=True)
    os.sched_setaffinity(0, every)
    print(f"kvprof_hostnoise: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
