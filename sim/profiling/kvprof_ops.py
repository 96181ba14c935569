#!/usr/bin/env python3
"""kvprof_ops.py - the `profile` step: operator times on one GPU for the simulator's cost model.

    python3 sim/profiling/kvprof_ops.py --out DIR [--budget S] [--smoke] [--resume]
                                        [--stages a,b,...] [--models stem,...]

Writes DIR/{meta.ini, gemm.csv, attn_prefill.csv, attn_decode.csv, elementwise.csv, host.csv,
copy.csv, overlap.csv, ceilings.csv, stages.csv} (docs/sim.md, "GPU profile"). Every time is
the median per call in microseconds (us) with p10/p90 beside it; bf16 data drawn at random on
the device; inputs rotate over sets covering 3 x L2; CUDA events around CUDA-graph replays
(kvprof_common.Timer). Stages, in order (each its share of --budget seconds; a stage that runs
out of time stops between grid points and says how many it did):

  ceilings      device-to-device copy (bytes read + written / time) and an 8192^3 bf16 GEMM
  gemm          y = x W^T (torch.nn.functional.linear) for every projection shape (n, k) of every
                model in sim/data/models at tp = 1, then tp = 2 and 4 shards; m = 1..16384 on a
                log grid (powers of two and the 1.5x points); LM head shapes for m = 1..512
  attn_prefill  SDPA (flash where torch picks it) for each head layout (heads, kv_heads,
                head_dim): new tokens 16..16384 x history 0, 1K, 4K, 16K (at most 32K keys);
                causal, aligned to the bottom right when there is history
  attn_decode   SDPA with one query per sequence: batch 1..256 x context 128..64K, at most
                4 GiB of K+V per point (after repeat_kv for the masked source); source 'sdpa' (no mask: a serving engine's dense decode)
                and 'sdpa_masked' (what transformers' static-cache decode runs: repeat_kv for
                GQA, a boolean mask, context + 1 keys: the cache's slots). A `kvbench` source is reserved for the project's kernels.
  elementwise   transformers' own RMSNorm and rotary embedding, SiLU(gate) * up, GELU, the
                residual add, the embedding lookup, a StaticCache-style KV write: tokens
                1..16384
  host          launch overhead of transformers' eager Llama forward: tiny models of 2 and 8
                layers (the GPU work is negligible), wall time per forward: per layer and fixed,
                for the prefill, static-cache decode and manual layer-loop paths
  copy          pinned host <-> device copies, 1 MiB..1 GiB: h2d, d2h, and both at once
  overlap       layer-wise loading overlapped with compute: 40 layers of LLaMA-2-13B-shaped
                GEMMs (m tokens) while each layer's history KV is copied host -> device on a
                second stream, layer i+1 loading while layer i computes
  sustain       the same work short (as every stage above times it: a few ms after a pause)
                and sustained (after HEAT_S seconds of back-to-back replays, as a loaded server
                runs it): a layer's projections at m tokens and causal prefill attention of m
                tokens, for the validation models, with the SM clock and power read by
                nvidia-smi while it runs. On 2026-12-03 an 8K-token prefill drove the H200 to its
                700 W cap and the SM clock from 1,980 to 1,590-1,785 MHz: the short profile
                under-predicted long prefills by up to 10% (docs/sim.md).
--smoke runs all of it on the CPU with tiny shapes in seconds (flow test only: the numbers
mean nothing and are labelled smoke = true).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402

# host first after the ceilings: a few seconds, and the eager predictions need all three paths
# at two layer counts (on 2026-12-03 it ran after the big stages and got hf_decode's 2-layer
# point only)
STAGES = ["ceilings", "host", "gemm", "attn_prefill", "attn_decode", "elementwise", "copy",
          "overlap", "sustain"]
# share of the step budget per stage (the sum may exceed 1: a fast stage leaves time to later ones)
SHARE = {"ceilings": 0.04, "gemm": 0.30, "attn_prefill": 0.15, "attn_decode": 0.20,
         "elementwise": 0.08, "host": 0.08, "copy": 0.08, "overlap": 0.08, "sustain": 0.35}
# the validation models first: their rows matter most if the budget runs out
PRIORITY = ["llama-2-7b", "llama-2-13b"]


def ordered_models(a) -> list[C.ModelShape]:
    ms = C.load_models(a.models, smoke=a.smoke)
    return sorted(ms, key=lambda m: (PRIORITY.index(m.stem) if m.stem in PRIORITY else 99,
                                     m.stem))


# ---- stages ----------------------------------------------------------------------------------

def point_failed(dev, what: str, ex: Exception, fails: list[str]) -> None:
    """One grid point failed: out of memory or another non-fatal error is logged (the first
    three with a traceback) and the stage goes on; a fatal CUDA error ends the stage."""
    if C.is_fatal_cuda(ex):
        raise ex
    fails.append(f"{what}: {type(ex).__name__}")
    if len(fails) <= 3 and not isinstance(ex, torch.cuda.OutOfMemoryError):
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    C.log(f"{what}: {type(ex).__name__}: {str(ex).splitlines()[0][:160] if str(ex) else ''}")
    C.free_memory(dev)


def status(done: int, total: int, fails: list[str]) -> str:
    st = (f"ok {done}/{total} points" if done + len(fails) == total
          else f"partial {done}/{total} points (budget)")
    if fails:
        st += f", {len(fails)} failed (first: {fails[0]})"
    return st


def stage_ceilings(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("ceilings.csv", ["what", "bytes", "flops", "us", "p10_us", "p90_us",
                                   "rate", "rate_unit", "method"])
    nb = (1 << 30) if not a.smoke else (1 << 22)
    src = C.randn((nb // 2,), dev)
    dst = torch.empty_like(src)
    r = tm.time(lambda: dst.copy_(src), reps=9)
    out.row(what="d2d_copy", bytes=2 * nb, flops=0, **r,
            rate=2 * nb / (r["us"] * 1e-6) / 1e9, rate_unit="GB/s (read+write)")
    # a read-only stream too: torch's copy_ reached 2.7 TB/s on the H200 (2026-12-03) where the
    # kernel benchmark's copy kernel reached 4.2 TB/s and SDPA read K/V at 4.5 TB/s in the same
    # hour, so the copy alone understates what HBM delivers to a reading kernel
    r = tm.time(lambda: src.sum(dtype=torch.float32), reps=9)
    out.row(what="d2d_read", bytes=nb, flops=0, **r,
            rate=nb / (r["us"] * 1e-6) / 1e9, rate_unit="GB/s (read)")
    del src, dst
    n = 8192 if not a.smoke else 128
    A, B = C.randn((n, n), dev), C.randn((n, n), dev)
    r = tm.time(lambda: A @ B, reps=9)
    fl = 2 * n ** 3
    out.row(what=f"gemm_bf16_{n}", bytes=3 * n * n * 2, flops=fl, **r,
            rate=fl / (r["us"] * 1e-6) / 1e12, rate_unit="TFLOP/s")
    return "ok"


def gemm_jobs(a) -> list[tuple[int, int, int, str]]:
    """(n, k, tp, models) per unique shape, tp = 1 shapes first (validation models first)."""
    seen: dict[tuple[int, int], tuple[int, list[str]]] = {}
    order: list[tuple[int, int]] = []
    models = ordered_models(a)
    for tp in (1, 2, 4) if not a.smoke else (1, 2):
        for m in models:
            ops = C.gemm_shapes(m, tp)
            if not ops:
                continue
            for _, n, k in ops:
                if (n, k) not in seen:
                    seen[(n, k)] = (tp, [])
                    order.append((n, k))
                if m.stem not in seen[(n, k)][1]:
                    seen[(n, k)][1].append(m.stem)
    return [(n, k, seen[(n, k)][0], "+".join(seen[(n, k)][1])) for n, k in order]


def head_jobs(a) -> list[tuple[int, int, str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for m in ordered_models(a):
        for tp in (1, 2, 4) if not a.smoke else (1,):
            if m.vocab % tp == 0:
                out.setdefault((m.vocab // tp, m.hidden), []).append(f"{m.stem}/tp{tp}")
    return [(n, k, "+".join(v)) for (n, k), v in out.items()]


def time_gemm(tm: C.Timer, dev, m: int, n: int, k: int) -> dict:
    w_bytes = n * k * 2
    x_bytes = m * k * 2
    sets = C.n_sets(w_bytes + x_bytes, dev)
    sets = max(1, min(sets, int((8 << 30) // max(1, w_bytes + x_bytes + m * n * 2))))
    W = [C.randn((n, k), dev, scale=0.02) for _ in range(sets)]
    X = [C.randn((m, k), dev) for _ in range(sets)]
    fns = [lambda i=i: F.linear(X[i], W[i]) for i in range(sets)]
    reps = 7 if 2 * m * n * k < 2e12 else 4
    return tm.time(fns, reps=reps)


def stage_gemm(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("gemm.csv", ["n", "k", "m", "us", "p10_us", "p90_us", "tflops", "reps",
                               "inner", "method", "op", "tp", "models"])
    grid = C.log_grid(1, 16384) if not a.smoke else [1, 4, 16, 64]
    jobs = [("proj", n, k, tp, ms, grid) for n, k, tp, ms in gemm_jobs(a)]
    proj = {(n, k) for _, n, k, _, _, _ in jobs}  # a head of a projection's shape is measured
    jobs += [("lm_head", n, k, 0, ms, C.log_grid(1, 512) if not a.smoke else [1, 4, 16])
             for n, k, ms in head_jobs(a) if (n, k) not in proj]
    done = total = 0
    fails: list[str] = []
    for op, n, k, tp, ms, g in jobs:
        for m in g:
            total += 1
            if run.over():
                continue
            try:
                r = time_gemm(tm, dev, m, n, k)
            except Exception as ex:  # noqa: BLE001
                point_failed(dev, f"gemm n={n} k={k} m={m}", ex, fails)
                continue
            out.row(n=n, k=k, m=m, **r, tflops=2 * m * n * k / (r["us"] * 1e-6) / 1e12, op=op,
                    tp=tp if tp else "", models=ms)
            done += 1
        C.free_memory(dev)
    return status(done, total, fails)


def layouts(a) -> list[tuple[int, int, int, str]]:
    seen: dict[tuple[int, int, int], list[str]] = {}
    order = []
    for tp in (1, 2, 4) if not a.smoke else (1,):
        for m in ordered_models(a):
            lo = C.layout(m, tp)
            if lo is None:
                continue
            if lo not in seen:
                seen[lo] = []
                order.append(lo)
            seen[lo].append(f"{m.stem}/tp{tp}")
    return [(h, hk, d, "+".join(seen[(h, hk, d)])) for h, hk, d in order]


def sdpa_prefill(q, k, v, hist: int, gqa: bool):
    """Causal attention of n new queries over hist + n keys (bottom-right aligned)."""
    if hist == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    from torch.nn.attention.bias import causal_lower_right  # noqa: PLC0415

    bias = causal_lower_right(q.shape[-2], k.shape[-2])
    if gqa and not _NO_GQA_BIAS:
        try:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)
        except (TypeError, RuntimeError):  # this torch's CausalBias does not take it
            _NO_GQA_BIAS.append(True)
    if gqa:  # expand the KV heads instead
        r = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(r, dim=1)
        v = v.repeat_interleave(r, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


_NO_GQA_BIAS: list[bool] = []


def stage_attn_prefill(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("attn_prefill.csv", ["heads", "kv_heads", "head_dim", "hist", "new", "us",
                                       "p10_us", "p90_us", "reps", "inner", "method", "models"])
    news = [16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384] if not a.smoke else [4, 16, 64]
    hists = [0, 1024, 4096, 16384] if not a.smoke else [0, 32, 128]
    done = total = 0
    fails: list[str] = []
    for H, Hk, D, ms in layouts(a):
        for hist in hists:
            for n in news:
                if hist + n > 32768:
                    continue
                total += 1
                if run.over():
                    continue
                try:
                    qb, kb = H * n * D * 2, 2 * Hk * (hist + n) * D * 2
                    sets = C.n_sets(qb + kb, dev, hi=16)
                    Q = [C.randn((1, H, n, D), dev) for _ in range(sets)]
                    K = [C.randn((1, Hk, hist + n, D), dev) for _ in range(sets)]
                    V = [C.randn((1, Hk, hist + n, D), dev) for _ in range(sets)]
                    gqa = H != Hk
                    fns = [lambda i=i: sdpa_prefill(Q[i], K[i], V[i], hist, gqa)
                           for i in range(sets)]
                    r = tm.time(fns, reps=5)
                except Exception as ex:  # noqa: BLE001
                    point_failed(dev, f"attn_prefill {H}/{Hk}/{D} hist={hist} new={n}", ex, fails)
                    continue
                out.row(heads=H, kv_heads=Hk, head_dim=D, hist=hist, new=n, **r, models=ms)
                done += 1
                del Q, K, V
        C.free_memory(dev)
    return status(done, total, fails)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """transformers' repeat_kv (modeling_llama.py): (B, Hk, L, D) -> (B, Hk * n_rep, L, D)."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def sdpa_decode(q, k, v, masked: bool, mask=None):
    """One query per sequence over the whole cache. masked: transformers' static-cache path."""
    if not masked:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=q.shape[1] != k.shape[1])
    r = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, r), repeat_kv(v, r), attn_mask=mask)


def stage_attn_decode(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("attn_decode.csv", ["heads", "kv_heads", "head_dim", "batch", "context", "us",
                                      "p10_us", "p90_us", "source", "reps", "inner", "method",
                                      "models"])
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256] if not a.smoke else [1, 4]
    ctxs = [128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] if not a.smoke else [16, 128]
    cap = (4 << 30) if not a.smoke else (64 << 20)
    # order: both sources for the layouts of the validation models ('sdpa_masked' is
    # transformers' static-cache decode: on 2026-12-03 the budget ran out before it), then
    # 'sdpa' for the other tp = 1 layouts, then the tp = 2 / 4 shards, then the rest masked
    lays = layouts(a)
    val = {lo[:3] for m in C.load_models(PRIORITY if not a.smoke else None, smoke=a.smoke)
           for lo in [C.layout(m, 1)] if lo}
    jobs = []
    for H, Hk, D, ms in lays:
        tp1 = "/tp1" in ms
        for source in ("sdpa", "sdpa_masked"):
            if (H, Hk, D) in val and tp1:
                pri = 0 if source == "sdpa" else 1
            else:
                pri = (2 if tp1 else 3) if source == "sdpa" else 4
            jobs.append((pri, source, H, Hk, D, ms))
    jobs.sort(key=lambda j: j[0])
    done = total = 0
    fails: list[str] = []
    for _, source, H, Hk, D, ms in jobs:
        for B in batches:
            for L in ctxs:
                kvb = 2 * B * Hk * L * D * 2
                if kvb * (H // Hk if source == "sdpa_masked" else 1) > cap:
                    continue  # (the masked path expands the KV heads: repeat_kv)
                total += 1
                if run.over():
                    continue
                try:
                    sets = C.n_sets(kvb, dev, hi=16)
                    masked = source == "sdpa_masked"
                    # the masked source is transformers' static-cache decode at `context` L: a
                    # cache of L + 1 slots (the new token's included), all attended under a
                    # boolean mask. The + 1 matters: with a mask, cuDNN's SDPA takes a slower
                    # path when the key length is not aligned (H200, kvprof_align_probe.py,
                    # 2026-12-03: B4 H32 D128 L16384 253 us, L16385 364 us; without a mask
                    # 244 / 245 us). Profiles before that measured L keys (meta.ini says which).
                    nk = L + 1 if masked else L
                    Q = [C.randn((B, H, 1, D), dev) for _ in range(sets)]
                    K = [C.randn((B, Hk, nk, D), dev) for _ in range(sets)]
                    V = [C.randn((B, Hk, nk, D), dev) for _ in range(sets)]
                    mask = torch.ones((B, 1, 1, nk), dtype=torch.bool, device=dev) if masked else None
                    fns = [lambda i=i: sdpa_decode(Q[i], K[i], V[i], masked, mask)
                           for i in range(sets)]
                    r = tm.time(fns, reps=5)
                except Exception as ex:  # noqa: BLE001
                    point_failed(dev, f"attn_decode {source} {H}/{Hk}/{D} B={B} L={L}", ex, fails)
                    continue
                out.row(heads=H, kv_heads=Hk, head_dim=D, batch=B, context=L, **r,
                        source=source, models=ms)
                done += 1
                del Q, K, V
        C.free_memory(dev)
    return status(done, total, fails)


def hf_elementwise():
    """transformers' LlamaRMSNorm and apply_rotary_pos_emb when importable (the code the
    validation runs), else local copies of the same arithmetic."""
    try:
        from transformers.models.llama.modeling_llama import (  # noqa: PLC0415
            LlamaRMSNorm, apply_rotary_pos_emb)
        return LlamaRMSNorm, apply_rotary_pos_emb, "transformers"
    except Exception:  # noqa: BLE001
        class RMSNorm(torch.nn.Module):
            def __init__(self, hidden, eps=1e-5):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.ones(hidden))
                self.variance_epsilon = eps

            def forward(self, x):
                dt = x.dtype
                x = x.to(torch.float32)
                var = x.pow(2).mean(-1, keepdim=True)
                x = x * torch.rsqrt(var + self.variance_epsilon)
                return self.weight * x.to(dt)

        def rot_half(x):
            x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
            return torch.cat((-x2, x1), dim=-1)

        def rope(q, k, cos, sin, unsqueeze_dim=1):
            cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
            return q * cos + rot_half(q) * sin, k * cos + rot_half(k) * sin

        return RMSNorm, rope, "local copy"


def stage_elementwise(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("elementwise.csv", ["op", "width", "tokens", "us", "p10_us", "p90_us", "reps",
                                      "inner", "method", "impl", "models"])
    RMSNorm, rope, impl = hf_elementwise()
    toks = C.log_grid(1, 16384, halves=False) if not a.smoke else [1, 4, 16, 64]
    jobs: dict[tuple[str, int], list[str]] = {}
    rope_layout: dict[int, tuple[int, int, int]] = {}
    kv_layout: dict[int, tuple[int, int]] = {}
    for tp in (1, 2, 4) if not a.smoke else (1,):
        for m in ordered_models(a):
            lo = C.layout(m, tp)
            if lo is None or m.ffn % tp:
                continue
            tag = f"{m.stem}/tp{tp}"
            jobs.setdefault(("rmsnorm", m.hidden), []).append(tag)
            jobs.setdefault(("add", m.hidden), []).append(tag)
            jobs.setdefault(("embed", m.hidden), []).append(tag)
            w = (lo[0] + lo[1]) * lo[2]
            rope_layout[w] = lo
            jobs.setdefault(("rope", w), []).append(tag)
            act = "silu_mul" if m.ffn_matrices == 3 else "gelu"
            jobs.setdefault((act, m.ffn // tp), []).append(tag)
            kv_layout[2 * lo[1] * lo[2]] = (lo[1], lo[2])
            jobs.setdefault(("kv_update", 2 * lo[1] * lo[2]), []).append(tag)
    done = total = 0
    fails: list[str] = []
    for (op, w), tags in jobs.items():
        for T in toks:
            total += 1
            if run.over():
                continue
            by = T * w * 2 * (3 if op in ("silu_mul", "add") else 2)
            sets = C.n_sets(by, dev, hi=32)
            if op == "rmsnorm":
                norm = RMSNorm(w, eps=1e-5).to(device=dev, dtype=torch.bfloat16)
                X = [C.randn((1, T, w), dev) for _ in range(sets)]
                fns = [lambda i=i: norm(X[i]) for i in range(sets)]
            elif op == "add":
                X = [C.randn((1, T, w), dev) for _ in range(sets)]
                Y = [C.randn((1, T, w), dev) for _ in range(sets)]
                fns = [lambda i=i: X[i] + Y[i] for i in range(sets)]
            elif op == "embed":
                table = C.randn((32000, w), dev, scale=0.02)
                ids = [torch.randint(0, 32000, (1, T), device=dev) for _ in range(sets)]
                fns = [lambda i=i: F.embedding(ids[i], table) for i in range(sets)]
            elif op == "rope":
                H, Hk, D = rope_layout[w]
                # as transformers: projections (1, T, H*D) viewed (1, T, H, D) and transposed
                Qp = [C.randn((1, T, H * D), dev) for _ in range(sets)]
                Kp = [C.randn((1, T, Hk * D), dev) for _ in range(sets)]
                cos = C.randn((1, T, D), dev)
                sin = C.randn((1, T, D), dev)
                fns = [lambda i=i: rope(Qp[i].view(1, T, H, D).transpose(1, 2),
                                        Kp[i].view(1, T, Hk, D).transpose(1, 2), cos, sin)
                       for i in range(sets)]
            elif op == "kv_update":
                # transformers' StaticLayer.update for T new tokens (one per sequence):
                # positions = arange + length, length += n, index_copy_ of K and V along the
                # sequence axis (here into 2 slots, and += 0 keeps the index in range)
                Hk, D = kv_layout[w]
                Kc = [C.randn((T, Hk, 2, D), dev) for _ in range(sets)]
                Vc = [C.randn((T, Hk, 2, D), dev) for _ in range(sets)]
                kn, vn = C.randn((T, Hk, 1, D), dev), C.randn((T, Hk, 1, D), dev)
                length = torch.ones((), dtype=torch.long, device=dev)

                def kv_update(i, Kc=Kc, Vc=Vc, kn=kn, vn=vn, length=length):
                    pos = torch.arange(1, device=dev) + length
                    length.add_(0)
                    Kc[i].index_copy_(2, pos, kn)
                    Vc[i].index_copy_(2, pos, vn)

                fns = [lambda i=i: kv_update(i) for i in range(sets)]
            elif op == "silu_mul":
                G = [C.randn((1, T, w), dev) for _ in range(sets)]
                U = [C.randn((1, T, w), dev) for _ in range(sets)]
                fns = [lambda i=i: F.silu(G[i]) * U[i] for i in range(sets)]
            else:  # gelu
                X = [C.randn((1, T, w), dev) for _ in range(sets)]
                fns = [lambda i=i: F.gelu(X[i]) for i in range(sets)]
            try:
                r = tm.time(fns, reps=7)
            except Exception as ex:  # noqa: BLE001
                point_failed(dev, f"elementwise {op} {w} T={T}", ex, fails)
                continue
            out.row(op=op, width=w, tokens=T, **r, impl=impl, models="+".join(tags))
            done += 1
        C.free_memory(dev)
    return status(done, total, fails)


def stage_host(run: C.Run, tm: C.Timer, a) -> str:
    """Launch overhead (host) of the three execution paths of the validation, on tiny models."""
    import kvprof_llama as LL  # noqa: PLC0415 - needs transformers

    dev = run.dev
    out = run.csv("host.csv", ["path", "layers", "us", "p10_us", "p90_us", "reps", "method",
                               "fixed_us", "per_layer_us", "impl"])
    res = {}
    for path in ("hf_prefill", "hf_decode", "manual"):
        per = {}
        impl = ""
        for L in (2, 8):
            if run.over():
                break
            model = LL.build_model(LL.tiny_shape(L), dev)
            try:
                fn, impl = LL.host_probe(model, path, dev)
                r = C.wall_time(dev, fn, reps=30 if not a.smoke else 5, warmup=5)
            finally:
                del model
                C.free_memory(dev)
            per[L] = r
            out.row(path=path, layers=L, **r, fixed_us="", per_layer_us="", impl=impl)
        if 2 in per and 8 in per:
            pl = (per[8]["us"] - per[2]["us"]) / 6
            fx = per[2]["us"] - 2 * pl
            res[path] = (fx, pl)
            out.row(path=path, layers="fit", us="", p10_us="", p90_us="", reps="", method="fit",
                    fixed_us=fx, per_layer_us=pl, impl=impl)
    return "ok " + "; ".join(f"{p}: {v[1]:.1f} us/layer + {v[0]:.1f} us" for p, v in res.items())


def pinned(nbytes: int, dev, smoke: bool) -> torch.Tensor:
    return C.pinned_random((nbytes // 2,), dev, smoke)


def stage_copy(run: C.Run, tm: C.Timer, a) -> str:
    dev = run.dev
    out = run.csv("copy.csv", ["direction", "bytes", "us", "p10_us", "p90_us", "gbs", "reps",
                               "method", "pinned"])
    big = (1 << 30) if not a.smoke else (1 << 24)
    sizes = [1 << s for s in range(20, 31)] if not a.smoke else [1 << 20, 1 << 24]
    host_a = pinned(big, dev, a.smoke)  # h2d source
    host_b = pinned(big, dev, a.smoke)  # d2h destination
    dev_a = C.randn((big // 2,), dev)   # h2d destination
    dev_b = C.randn((big // 2,), dev)   # d2h source
    s1 = torch.cuda.Stream(dev) if dev.type == "cuda" else None
    s2 = torch.cuda.Stream(dev) if dev.type == "cuda" else None
    done = 0
    for nb in sizes:
        if run.over():
            break
        n = nb // 2
        h2d = lambda: dev_a[:n].copy_(host_a[:n], non_blocking=True)  # noqa: E731
        d2h = lambda: host_b[:n].copy_(dev_b[:n], non_blocking=True)  # noqa: E731
        reps = 9 if nb <= (256 << 20) else 5
        for direction, fn in (("h2d", h2d), ("d2h", d2h)):
            r = tm.time(fn, reps=reps, graph=False)  # eager: copies are timed one by one
            out.row(direction=direction, bytes=nb, **r, gbs=nb / (r["us"] * 1e-6) / 1e9,
                    pinned=not a.smoke)
        # both at once: h2d on s1 and d2h on s2 between two events of the current stream
        r = both_directions(dev, h2d, d2h, s1, s2, reps)
        out.row(direction="both", bytes=nb, **r, gbs=2 * nb / (r["us"] * 1e-6) / 1e9,
                pinned=not a.smoke)
        done += 1
    del host_a, host_b, dev_a, dev_b
    C.free_memory(dev)
    return f"ok {done}/{len(sizes)} sizes" + ("" if done == len(sizes) else " (budget)")


def both_directions(dev, h2d, d2h, s1, s2, reps: int) -> dict:
    """Wall time (events) of one h2d and one d2h copy of the same size issued on two streams at
    once; 'gbs' of the row counts both copies' bytes."""
    if dev.type != "cuda":
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            h2d()
            d2h()
            t.append((time.perf_counter() - t0) * 1e6)
        return C.summarize(t, method="timer (sequential on cpu)")
    cur = torch.cuda.current_stream(dev)
    out = []
    for i in range(reps + 2):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(cur)
        s1.wait_stream(cur)
        s2.wait_stream(cur)
        with torch.cuda.stream(s1):
            h2d()
        with torch.cuda.stream(s2):
            d2h()
        cur.wait_stream(s1)
        cur.wait_stream(s2)
        e.record(cur)
        e.synchronize()
        if i >= 2:
            out.append(s.elapsed_time(e) * 1e3)
    return C.summarize(out, method="events, two streams")


def stage_overlap(run: C.Run, tm: C.Timer, a) -> str:
    """Achieved overlap of a layer-wise KV load (copy stream) with per-layer compute.

    Per point: L layers; compute of a layer = the 7 projection GEMMs of LLaMA-2-13B at m tokens
    (the prefill's bulk); load of a layer = hist tokens of its K and V (pinned host -> device,
    one copy per layer). Measured: compute alone (C), loads alone back to back (X), and both:
    all loads issued on the copy stream at t = 0, layer i's compute waits for layer i's load
    event (so layer i+1 loads while layer i computes). Achieved overlap =
    (C + X - both) / min(C, X): 1 = the shorter one fully hidden, 0 = serialised. The ideal
    time of the recurrence the simulator assumes (layer i starts at max(end of layer i-1,
    arrival of its KV), with per-layer compute C / L and load X / L) is `ideal_us`;
    both_over_ideal = both / ideal (1: the simulator's assumption holds)."""
    dev = run.dev
    out = run.csv("overlap.csv", ["layers", "m", "hist", "layer_bytes", "compute_us", "copy_us",
                                  "both_us", "ideal_us", "overlap", "both_over_ideal",
                                  "copy_during_us", "reps", "method"])
    m13 = C.load_models(["llama-2-13b"], smoke=a.smoke)[0]
    L = m13.layers
    ops = C.gemm_shapes(m13, 1)
    W = [[C.randn((n, k), dev, scale=0.02) for _, n, k in ops] for _ in range(2)]  # 2 sets > L2
    points = [(100, 1024), (1024, 1024), (100, 4096), (1024, 4096)]
    if a.smoke:
        points = [(8, 64)]
    cur = torch.cuda.current_stream(dev) if dev.type == "cuda" else None
    cs = torch.cuda.Stream(dev) if dev.type == "cuda" else None
    done = 0
    top = max(h for _, h in points) * m13.kv_bytes_per_token_layer()  # one layer's bytes, largest
    host_all = [pinned(top, dev, a.smoke) for _ in range(L)]
    kv_all = [torch.empty(top // 2, dtype=torch.bfloat16, device=dev) for _ in range(L)]
    for m, hist in points:
        if run.over():
            break
        lb = hist * m13.kv_bytes_per_token_layer()
        host = [t[: lb // 2] for t in host_all]
        kv = [t[: lb // 2] for t in kv_all]

        # precompute activations of the right widths so compute is only GEMMs
        acts = {k: C.randn((m, k), dev) for _, _, k in ops}

        def layer(i):
            w = W[i % 2]
            for (_, n, k), wt in zip(ops, w):
                F.linear(acts[k], wt)

        def compute_all():
            for i in range(L):
                layer(i)

        def copy_all():
            for i in range(L):
                kv[i].copy_(host[i], non_blocking=True)

        if dev.type != "cuda":
            rc = C.wall_time(dev, compute_all, reps=3)
            rx = C.wall_time(dev, copy_all, reps=3)
            rb = C.wall_time(dev, lambda: (copy_all(), compute_all()), reps=3)
            cd = rx["us"]
            method = "cpu wall (sequential)"
        else:
            rc = tm.time(compute_all, reps=5, graph=False)
            rx = tm.time(copy_all, reps=5, graph=False)
            both, during = [], []
            for rep in range(7):
                ev = [torch.cuda.Event() for _ in range(L)]
                s0, e0 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                c0, c1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(dev)
                s0.record(cur)
                cs.wait_stream(cur)
                with torch.cuda.stream(cs):
                    c0.record(cs)
                    for i in range(L):
                        kv[i].copy_(host[i], non_blocking=True)
                        ev[i].record(cs)
                    c1.record(cs)
                for i in range(L):
                    cur.wait_event(ev[i])
                    layer(i)
                e0.record(cur)
                torch.cuda.synchronize(dev)
                if rep >= 2:
                    both.append(s0.elapsed_time(e0) * 1e3)
                    during.append(c0.elapsed_time(c1) * 1e3)
            rb = C.summarize(both, method="events, copy stream")
            cd = C.summarize(during)["us"]
            method = "events; compute and copy alone eager"
        Cu, Xu, Bu = rc["us"], rx["us"], rb["us"]
        # ideal recurrence with per-layer compute c and per-layer load x
        c, x = Cu / L, Xu / L
        t_end = 0.0
        for i in range(L):
            t_end = max(t_end, (i + 1) * x) + c
        ov = (Cu + Xu - Bu) / min(Cu, Xu) if min(Cu, Xu) > 0 else float("nan")
        out.row(layers=L, m=m, hist=hist, layer_bytes=lb, compute_us=Cu, copy_us=Xu, both_us=Bu,
                ideal_us=t_end, overlap=ov, both_over_ideal=Bu / t_end, copy_during_us=cd,
                reps=rb["reps"], method=method)
        done += 1
        del host, kv, acts
        C.free_memory(dev)
    del host_all, kv_all
    return f"ok {done}/{len(points)} points"


HEAT_S = 1.0  # seconds of back-to-back replays before a sustained timing


def smi_sample():
    """Starts one nvidia-smi query (SM clock, power, throttle reasons) without waiting; None
    where nvidia-smi is absent."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    return subprocess.Popen([exe, "--query-gpu=clocks.sm,power.draw,clocks_event_reasons.active",
                             "--format=csv,noheader,nounits"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def smi_read(proc) -> list[str]:
    """[SM MHz, power W, throttle reasons] of a smi_sample(), '' where unknown."""
    if proc is None:
        return ["", "", ""]
    try:
        out, _ = proc.communicate(timeout=10)
        f = [x.strip() for x in out.strip().splitlines()[0].split(",")]
        return (f + ["", "", ""])[:3]
    except Exception:  # noqa: BLE001 - a sample is information only
        return ["", "", ""]


def sustained_time(dev, fn, reps: int = 7) -> dict:
    """fn (one call) captured in a CUDA graph of `inner` calls (one replay >= 2 ms), replayed
    back to back for HEAT_S seconds (synchronising every ~50 ms so the queue stays short), then
    `reps` replays timed with events while nvidia-smi samples clock and power. Per-call times."""
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    e.synchronize()
    est_us = max(1.0, s.elapsed_time(e) * 1e3)
    inner = int(min(256, max(1, math.ceil(2000.0 / est_us))))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(inner):
            fn()
    per = max(1, int(50_000 / (est_us * inner)))
    t_end = time.monotonic() + HEAT_S
    while time.monotonic() < t_end:
        for _ in range(per):
            g.replay()
        torch.cuda.synchronize(dev)
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(reps)]
    for _ in range(per):  # keep the load on while nvidia-smi starts
        g.replay()
    proc = smi_sample()
    for a, b in ev:
        a.record()
        g.replay()
        b.record()
    for _ in range(per):
        g.replay()
    torch.cuda.synchronize(dev)
    clk, pw, why = smi_read(proc)
    r = C.summarize([a.elapsed_time(b) * 1e3 / inner for a, b in ev], inner=inner,
                    method="graph, sustained")
    r.update(sm_mhz=clk, power_w=pw, throttle=why)
    del g
    return r


def layer_fn(mdl: C.ModelShape, T: int, dev, W: dict, RMSNorm, rope):
    """One decoder layer's prefill of T tokens (batch 1, no history), composed of the operators
    the cost model sums (the profile's own: transformers' RMSNorm and rotary, nn.Linear
    projections, causal SDPA, SiLU(gate) * up, residual adds)."""
    H, Hk, D = C.layout(mdl, 1)
    n1 = RMSNorm(mdl.hidden, eps=1e-5).to(device=dev, dtype=torch.bfloat16)
    n2 = RMSNorm(mdl.hidden, eps=1e-5).to(device=dev, dtype=torch.bfloat16)
    x = C.randn((1, T, mdl.hidden), dev)
    cos, sin = C.randn((1, T, D), dev), C.randn((1, T, D), dev)
    gated = mdl.ffn_matrices == 3

    def fn():
        h = n1(x)
        q = F.linear(h, W["q"]).view(1, T, H, D).transpose(1, 2)
        k = F.linear(h, W["k"]).view(1, T, Hk, D).transpose(1, 2)
        v = F.linear(h, W["v"]).view(1, T, Hk, D).transpose(1, 2)
        q, k = rope(q, k, cos, sin)
        o = sdpa_prefill(q, k, v, 0, H != Hk).transpose(1, 2).reshape(1, T, H * D)
        y = x + F.linear(o, W["o"])
        h = n2(y)
        u = F.silu(F.linear(h, W["gate"])) * F.linear(h, W["up"]) if gated else \
            F.gelu(F.linear(h, W["up"]))
        return y + F.linear(u, W["down"])

    return fn


def stage_sustain(run: C.Run, tm: C.Timer, a) -> str:
    """Short vs sustained time of the prefill's compute-bound work (sustain.csv; the cost
    model scales its GEMM and prefill-attention lookups by the measured ratio, docs/sim.md)."""
    dev = run.dev
    out = run.csv("sustain.csv", ["model", "op", "tokens", "short_us", "sustained_us", "ratio",
                                  "sm_mhz_short", "sm_mhz", "power_w", "throttle", "inner",
                                  "heat_s"])
    # (op, tokens): whole layers first (what the cost model scales), then their parts
    toks = [16, 128, 512, 1024, 2048, 4096, 8192, 16384] if not a.smoke else [4, 16]
    jobs = [("layer", T) for T in toks] + [(op, T) for T in toks[3::2]
                                           for op in ("gemm", "attn_prefill")]
    RMSNorm, rope, _ = hf_elementwise()
    models = [m for m in ordered_models(a) if m.stem in PRIORITY or a.smoke]
    done = total = 0
    fails: list[str] = []
    for mdl in models[:2]:
        lo = C.layout(mdl, 1)
        shapes = C.gemm_shapes(mdl, 1)
        if lo is None or not shapes:
            continue
        H, Hk, D = lo
        W = {op: C.randn((n, k), dev, scale=0.02) for op, n, k in shapes}
        for op, T in jobs:
            total += 1
            if run.over():
                continue
            try:
                if op == "layer":
                    fn = layer_fn(mdl, T, dev, W, RMSNorm, rope)
                elif op == "gemm":  # the layer's projections, each on an input of its width
                    X = {k: C.randn((T, k), dev) for _, _, k in shapes}

                    def fn(X=X):
                        for name, _, k in shapes:
                            F.linear(X[k], W[name])
                else:
                    q = C.randn((1, H, T, D), dev)
                    kk, vv = C.randn((1, Hk, T, D), dev), C.randn((1, Hk, T, D), dev)

                    def fn(q=q, kk=kk, vv=vv):
                        sdpa_prefill(q, kk, vv, 0, H != Hk)
                if a.smoke or dev.type != "cuda":  # flow test: both timings short
                    short = tm.time([fn], reps=3)
                    sus, clk0 = dict(short, sm_mhz="", power_w="", throttle=""), ""
                else:
                    time.sleep(0.3)  # a pause, as between the profile's grid points
                    proc = smi_sample()
                    short = tm.time([fn], reps=7)
                    clk0 = smi_read(proc)[0]
                    sus = sustained_time(dev, fn)
            except Exception as ex:  # noqa: BLE001
                point_failed(dev, f"sustain {mdl.stem} {op} T={T}", ex, fails)
                continue
            out.row(model=mdl.stem, op=op, tokens=T, short_us=short["us"],
                    sustained_us=sus["us"], ratio=sus["us"] / short["us"],
                    sm_mhz_short=clk0, sm_mhz=sus["sm_mhz"], power_w=sus["power_w"],
                    throttle=sus["throttle"], inner=sus["inner"],
                    heat_s=0 if a.smoke else HEAT_S)
            done += 1
        del W
        C.free_memory(dev)
    return status(done, total, fails)


FUNCS = {"ceilings": stage_ceilings, "gemm": stage_gemm, "attn_prefill": stage_attn_prefill,
         "attn_decode": stage_attn_decode, "elementwise": stage_elementwise, "host": stage_host,
         "copy": stage_copy, "overlap": stage_overlap, "sustain": stage_sustain}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=100.0, help="soft budget of the step, s")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes (flow test)")
    ap.add_argument("--resume", action="store_true",
                    help="skip stages already done or started (a restart after a crash)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--models", default="", help="model stems (default: every model file)")
    a = ap.parse_args()
    a.models = [s for s in a.models.split(",") if s] or None
    dev = C.pick_device(a.smoke, "kvprof_ops")
    if dev is None:
        return 2
    if not a.smoke:
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True  # the default
    run = C.Run(a.out, "profile", dev, a.smoke, a.budget)
    if a.smoke:
        C.write_smoke_models(a.out)
    tm = C.Timer(dev, a.smoke)
    C.log(f"profile on {run.meta['device']} (torch {torch.__version__}), out {a.out}")
    t0 = time.monotonic()
    try:  # once, here, so that no stage's budget pays for it
        import transformers.models.llama.modeling_llama  # noqa: F401, PLC0415
        C.log(f"transformers imported in {time.monotonic() - t0:.1f} s")
    except Exception as ex:  # noqa: BLE001 - the elementwise stage uses local copies then
        C.log(f"transformers not importable ({type(ex).__name__}): local RMSNorm / rope copies")
    return C.run_stages(run, a.stages.split(","), SHARE, lambda st: FUNCS[st](run, tm, a),
                        a.resume)


if __name__ == "__main__":
    sys.exit(main())
