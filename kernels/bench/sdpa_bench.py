#!/usr/bin/env python3
"""PyTorch SDPA decode time on the shapes kvbench measures, in the same device run.

Writes CSV rows "B,L,Hq,Hkv,D,dtype,us,backend" (median of --reps event-timed calls after a
warm-up, L2 flushed before each by READING a buffer larger than L2) that kvbench --sdpa reads.
q [B, Hq, 1, D], k/v [B, Hkv, L, D], GQA through enable_gqa=True, random normal data. Short
contexts (512-4096) at B 1/8/32 are the reference for top-k ("SDPA at context k"). The backend
that ran is read from the profiler's kernel names once per dtype and printed.
Every row is written (and flushed) as soon as it is measured, so a failure or a timeout later in
the run keeps what was measured; a shape that fails (e.g. out of memory) is reported and skipped.
Usage: sdpa_bench.py OUT.csv [--quick] [--reps N]
"""
import sys
import traceback

import torch
import torch.nn.functional as F


def backend_of(q, k, v):
    """Names the SDPA backend from the CUDA kernels one call launches. cuDNN's kernel names
    contain "flash" too ("cudnn_generated_..._flash_fprop_..."), so cuDNN is tested first."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    kern = [n for n in names if not n.startswith("cuda") and "Activity" not in n]
    low = " ".join(kern).lower()
    for tag, name in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient"),
                      ("efficient", "efficient"), ("cutlass", "efficient")):
        if tag in low:
            return name, kern
    return "math", kern


def main():
    out = sys.argv[1]
    quick = "--quick" in sys.argv
    reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 20
    hq, hkv, d = 32, 8, 128
    dev = torch.cuda.get_device_properties(0)
    print(f"sdpa: torch {torch.__version__}, {dev.name}, "
          f"flash {torch.backends.cuda.flash_sdp_enabled()}, "
          f"efficient {torch.backends.cuda.mem_efficient_sdp_enabled()}, "
          f"cudnn {torch.backends.cuda.cudnn_sdp_enabled()}, math {torch.backends.cuda.math_sdp_enabled()}",
          flush=True)
    flush = torch.ones(256 << 18, dtype=torch.float32, device="cuda")  # 256 MB, read to flush L2
    sink = torch.empty((), dtype=torch.float32, device="cuda")
    shapes = []
    for b in (1, 8, 16, 32, 64):
        for l in (512, 1024, 2048, 4096, 16384, 32768, 131072):
            if l < 4096 and b not in (1, 8, 32):
                continue
            if b * l * hkv * d * 4 > 36e9 or (quick and (l in (1024, 16384) or b == 16 or (l == 131072 and b != 64))):
                continue
            shapes.append((b, l))
    seen_backend = {}
    n_ok = 0
    with open(out, "w") as f:
        f.write("B,L,Hq,Hkv,D,dtype,us,backend\n")
        f.flush()
        for b, l in shapes:
            for dt, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
                if name == "fp16" and not (l == 32768 and b in (1, 8)):
                    continue
                try:
                    q = torch.randn(b, hq, 1, d, device="cuda", dtype=dt)
                    k = torch.randn(b, hkv, l, d, device="cuda", dtype=dt)
                    v = torch.randn(b, hkv, l, d, device="cuda", dtype=dt)
                    for _ in range(3):
                        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    if name not in seen_backend:
                        be, kern = backend_of(q, k, v)
                        seen_backend[name] = be
                        print(f"sdpa backend ({name}, B {b} L {l}): {be}; kernels: {kern[:4]}", flush=True)
                    ts = []
                    for _ in range(reps):
                        sink.copy_(flush.sum())  # reads 256 MB: evicts K/V from L2, writes 4 bytes
                        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        s.record()
                        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                        e.record()
                        torch.cuda.synchronize()
                        ts.append(s.elapsed_time(e) * 1e3)
                    ts.sort()
                    us = ts[len(ts) // 2]
                    f.write(f"{b},{l},{hq},{hkv},{d},{name},{us:.3f},{seen_backend[name]}\n")
                    f.flush()
                    n_ok += 1
                    print(f"sdpa B {b:3d} L {l:7d} {name}: {us:10.1f} us", flush=True)
                except Exception:  # noqa: BLE001 - report, keep the other shapes
                    print(f"sdpa B {b} L {l} {name}: FAILED", flush=True)
                    traceback.print_exc()
                finally:
                    q = k = v = None
                    torch.cuda.empty_cache()
    print(f"sdpa: {n_ok} shapes measured", flush=True)
    sys.exit(0 if n_ok > 0 else 1)


if __name__ == "__main__":
    main()
