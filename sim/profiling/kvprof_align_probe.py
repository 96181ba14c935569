#!/usr/bin/env python3
"""kvprof_align_probe.py - SDPA decode time at a cache length L vs L + 1 (issue 15 diagnosis).

    python3 sim/profiling/kvprof_align_probe.py [--out DIR]

transformers' static-cache decode attends over context + 1 slots with a boolean mask; the
operator profile measured SDPA at round lengths. kvprof_breakdown.py found the attention kernel
inside the 7B B4 L16K iteration at 356 us per layer where the profile has 250. This times SDPA
(q [B, H, 1, D], k/v [B, Hkv, L, D], bf16, L2 flushed by a read, CUDA graph replay, median of 10)
for L in {n, n + 1} with no mask, a boolean mask (B, 1, 1, L) and an additive bf16 mask, and
prints the backend kernel of each. Writes DIR/align.csv when --out is given.
"""
import argparse
import sys

import torch
import torch.nn.functional as F


def timed(fn, flush, sink, reps=10):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    ts = []
    for _ in range(reps):
        sink.copy_(flush.sum())
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def kernel_of(fn):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ks = [e.key for e in prof.key_averages() if not e.key.startswith("cuda")]
    return ";".join(k[:60] for k in ks)[:160]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no GPU", file=sys.stderr)
        return 2
    flush = torch.ones(256 << 18, dtype=torch.float32, device="cuda")
    sink = torch.empty((), dtype=torch.float32, device="cuda")
    rows = []
    for (B, H, Hk, D) in ((4, 32, 32, 128), (1, 32, 32, 128), (16, 40, 40, 128)):
        for n in (1024, 4096, 16384, 32768):
            if B * Hk * n * D * 4 > 8e9:
                continue
            for L in (n, n + 1):
                q = torch.randn(B, H, 1, D, device="cuda", dtype=torch.bfloat16)
                k = torch.randn(B, Hk, L, D, device="cuda", dtype=torch.bfloat16)
                v = torch.randn(B, Hk, L, D, device="cuda", dtype=torch.bfloat16)
                mb = torch.ones(B, 1, 1, L, device="cuda", dtype=torch.bool)
                ma = torch.zeros(B, 1, 1, L, device="cuda", dtype=torch.bfloat16)
                for name, fn in (("none", lambda: F.scaled_dot_product_attention(q, k, v)),
                                 ("bool", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mb)),
                                 ("additive", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=ma))):
                    try:
                        us = timed(fn, flush, sink)
                        kn = kernel_of(fn)
                    except Exception as ex:  # noqa: BLE001
                        us, kn = float("nan"), f"FAILED {type(ex).__name__}"
                    rows.append((B, H, Hk, D, L, name, us, kn))
                    print(f"B{B} H{H}/{Hk} D{D} L{L:6d} mask {name:8s}: {us:9.1f} us  {kn[:100]}", flush=True)
                del q, k, v, mb, ma
                torch.cuda.empty_cache()
    if a.out:
        import os
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "align.csv"), "w") as f:
            f.write("B,H,Hkv,D,L,mask,us,kernels\n")
            for r in rows:
                f.write(",".join(str(x) for x in r[:7]) + ',"' + r[7].replace('"', "'") + '"\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
