#!/usr/bin/env python3
"""PyTorch SDPA decode time on the shapes kvbench measures, in the same device run.

Writes CSV rows "B,L,Hq,Hkv,D,dtype,us" (median of --reps event-timed calls after a warm-up, L2
flushed before each) that kvbench --sdpa reads. q [B, Hq, 1, D], k/v [B, Hkv, L, D], GQA through
enable_gqa=True. Usage: sdpa_bench.py OUT.csv [--quick] [--reps N]
"""
import sys

import torch
import torch.nn.functional as F


def main():
    out = sys.argv[1]
    quick = "--quick" in sys.argv
    reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 20
    hq, hkv, d = 32, 8, 128
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    rows = []
    for b in (1, 8, 16, 32, 64):
        for l in (4096, 16384, 32768, 131072):
            if b * l * hkv * d * 4 > 36e9 or (quick and (l == 131072 or b == 16)):
                continue
            for dt, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
                if name == "fp16" and not (l == 32768 and b in (1, 8)):
                    continue
                q = torch.randn(b, hq, 1, d, device="cuda", dtype=dt)
                k = torch.randn(b, hkv, l, d, device="cuda", dtype=dt)
                v = torch.randn(b, hkv, l, d, device="cuda", dtype=dt)
                for _ in range(3):
                    F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                ts = []
                for _ in range(reps):
                    flush.zero_()
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    e.record()
                    torch.cuda.synchronize()
                    ts.append(s.elapsed_time(e) * 1e3)
                ts.sort()
                us = ts[len(ts) // 2]
                rows.append(f"{b},{l},{hq},{hkv},{d},{name},{us:.3f}")
                print(f"sdpa B {b:3d} L {l:7d} {name}: {us:10.1f} us", flush=True)
                del q, k, v
                torch.cuda.empty_cache()
    with open(out, "w") as f:
        f.write("B,L,Hq,Hkv,D,dtype,us\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
