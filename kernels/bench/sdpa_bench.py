#!/usr/bin/env python3
"""PyTorch SDPA decode time on the shapes kvbench measures, in the same device run.

Writes CSV rows "B,L,Hq,Hkv,D,dtype,us,backend,eager_us,graph_us,flash_graph_us" that kvbench
--sdpa reads (its first seven columns). Each time is the median of --reps event-timed calls after a
warm-up, L2 flushed before each by READING a buffer larger than L2, in three ways: eager (one
Python call: on 2026-12-03 cuDNN's host launch, ~60-75 us, was longer than the GPU work at small
shapes, so eager times there measured the host), one replay of a CUDA graph holding the call
(the GPU's time, as kvbench times ours), and a graph of the call with the flash backend forced.
`us` is the fastest of the three and `backend` says which ("cudnn/graph", "flash/graph", ...).
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


def time_call(fn, reps, flush, sink, graph):
    """Median of reps event-timed runs of fn() in us, L2 flushed (by a read) before each; with
    graph=True fn is captured once in a CUDA graph and each run is one replay. None when fn or
    its capture fails (reported)."""
    try:
        run = fn
        if graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
            run = g.replay
        for _ in range(2):
            run()
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            sink.copy_(flush.sum())  # reads 256 MB: evicts K/V from L2, writes 4 bytes
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            run()
            e.record()
            torch.cuda.synchronize()
            ts.append(s.elapsed_time(e) * 1e3)
        ts.sort()
        return ts[len(ts) // 2]
    except Exception as exc:  # noqa: BLE001 - one way failing keeps the others
        print(f"sdpa: {'graph' if graph else 'eager'} timing failed: {type(exc).__name__}: "
              f"{str(exc)[:160]}", flush=True)
        torch.cuda.synchronize()
        return None


def flash_call(q, k, v):
    """SDPA with only the flash backend allowed (torch.nn.attention.sdpa_kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def fn():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    return fn


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
        f.write("B,L,Hq,Hkv,D,dtype,us,backend,eager_us,graph_us,flash_graph_us\n")
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
                    eager = time_call(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                                      reps, flush, sink, graph=False)
                    graph = time_call(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                                      reps, flush, sink, graph=True)
                    flash = time_call(flash_call(q, k, v), reps, flush, sink, graph=True)
                    cands = [(t, m) for t, m in ((eager, f"{seen_backend[name]}/eager"),
                                                 (graph, f"{seen_backend[name]}/graph"),
                                                 (flash, "flash/graph")) if t is not None]
                    us, how = min(cands)
                    cell = lambda t: "" if t is None else f"{t:.3f}"  # noqa: E731
                    f.write(f"{b},{l},{hq},{hkv},{d},{name},{us:.3f},{how},"
                            f"{cell(eager)},{cell(graph)},{cell(flash)}\n")
                    f.flush()
                    n_ok += 1
                    print(f"sdpa B {b:3d} L {l:7d} {name}: {us:10.1f} us ({how}; eager {cell(eager)}, "
                          f"graph {cell(graph)}, flash graph {cell(flash)})", flush=True)
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
