#!/usr/bin/env python3
"""kvprof_validate.py - the `validate` step: whole iterations of Llama-architecture models with
random bf16 weights, timed on the GPU, for comparison with the simulator's predictions.

    python3 sim/profiling/kvprof_validate.py --out DIR [--budget S] [--smoke] [--resume]
                                             [--stages a,b,...]

Writes DIR/{meta.ini, grid.csv, stages.csv}. grid.csv has one row per measured iteration
(docs/sim.md, "Validation grid"):
  model       model file stem in sim/data/models (llama-2-7b, llama-2-13b)
  kind        prefill | decode | mixed | preload | resident | sync
  impl        hf (transformers' forward) | manual (the same ops in a layer loop: kvprof_llama.py)
  mode        eager (as a Python server launches it) | graph (one CUDA-graph replay)
  batch       prefill, preload*: sequences (1); decode: sequences; mixed: decode sequences
  tokens      prefill: new tokens per sequence; decode: 1; mixed: prefill tokens (one sequence);
              preload*: new tokens
  context     prefill: 0; decode, mixed: tokens cached per decode sequence before the step;
              preload*: history tokens
  read_buffer preload: layers resident when the prefill starts; else empty
  measured_us median of `reps` iterations; p10_us, p90_us beside it
Stages: llama-2-7b (prefill, decode, mixed, cross-checks), llama-2-13b (the same), preload
(13B: history 1K, 100 new tokens, read buffer 0..15 layers, all-resident, load-then-compute).
--smoke: CPU, a tiny model, a handful of points (flow test; numbers labelled smoke = true).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kvprof_common as C  # noqa: E402
import kvprof_llama as LL  # noqa: E402

STAGES = ["llama-2-7b", "llama-2-13b", "preload"]
SHARE = {"llama-2-7b": 0.36, "llama-2-13b": 0.40, "preload": 0.25}
COLS = ["model", "kind", "impl", "mode", "batch", "tokens", "context", "read_buffer",
        "measured_us", "p10_us", "p90_us", "reps", "method", "note", "host_us", "attn"]


def grids(smoke: bool, stem: str) -> dict:
    if smoke:
        return {"prefill": [8, 32], "decode": [(1, 16), (2, 64)], "mixed": [(8, 2, 16)],
                "manual_prefill": [32], "manual_decode": [(2, 64)], "kv_cap": 1 << 20}
    cap = 131072 if stem == "llama-2-7b" else 65536  # decode tokens in cache (B x context)
    dec = [(b, c) for b in (1, 4, 16, 64) for c in (1024, 4096, 16384, 32768) if b * c <= cap]
    return {
        "prefill": [128, 256, 512, 1024, 2048, 4096, 8192],
        "decode": dec,
        # (prefill tokens, decode sequences, decode context)
        "mixed": [(128, 64, 1024), (512, 16, 1024), (512, 16, 4096), (2048, 4, 4096),
                  (1024, 1, 16384), (4096, 16, 1024)],
        "manual_prefill": [512, 2048],
        "manual_decode": [(16, 4096), (1, 16384)],
        "kv_cap": cap,
    }


def model_shape(stem: str, smoke: bool):
    return C.load_models([stem], smoke=smoke)[0]


def emit(out, stem, kind, impl, mode, batch, tokens, context, rb, r, note=""):
    out.row(model=stem, kind=kind, impl=impl, mode=mode, batch=batch, tokens=tokens,
            context=context, read_buffer=rb, measured_us=r["us"], p10_us=r["p10_us"],
            p90_us=r["p90_us"], reps=r["reps"], method=r["method"], note=note,
            host_us=r.get("host_us", ""), attn=r.get("attn", ""))
    C.log(f"  {stem} {kind:8s} {impl:6s} {mode:5s} B={batch} tok={tokens} ctx={context}"
          f"{' rb=' + str(rb) if rb != '' else ''}: {LL.fmt_us(r['us'])} us")


# (impl, kind) whose CUDA-graph capture failed once: not tried again in this process
NO_GRAPH: set[tuple[str, str]] = set()


def both_modes(run, out, it, stem, kind, impl, batch, tokens, context, reps, note=""):
    """Eager, then graph. A capture failure is logged and that (impl, kind) runs eager only
    from then on; if it left the CUDA context unusable, a fatal error ends the step (the
    driver resumes in a fresh process)."""
    r = LL.time_iteration(it, run.dev, reps=reps, warmup=2, graph=False)
    emit(out, stem, kind, impl, "eager", batch, tokens, context, "", r, note or it.note)
    if run.dev.type != "cuda" or (impl, kind) in NO_GRAPH:
        return
    try:
        r = LL.time_iteration(it, run.dev, reps=reps, warmup=2, graph=True)
        emit(out, stem, kind, impl, "graph", batch, tokens, context, "", r, note or it.note)
    except Exception as ex:  # noqa: BLE001
        if C.is_fatal_cuda(ex):
            raise
        NO_GRAPH.add((impl, kind))
        C.log(f"  {stem} {kind} {impl}: graph capture failed, eager only from now on: "
              f"{type(ex).__name__}: {str(ex).splitlines()[0][:160] if str(ex) else ''}")
        if not C.cuda_alive(run.dev):
            raise C.FatalCuda("the CUDA context is unusable after a failed capture") from ex


def stage_model(run: C.Run, stem: str, a) -> str:
    dev = run.dev
    out = run.csv("grid.csv", COLS)
    shape = model_shape(stem, a.smoke)
    stem = shape.stem  # --smoke: the tiny stand-in's name, so predictions read its shapes
    g = grids(a.smoke, stem)
    model = LL.build_model(shape, dev)
    C.log(f"{stem}: built ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters)")
    reps = 5 if not a.smoke else 2
    n = skipped = 0
    failures = []
    chk = run.csv("checks.csv", ["model", "what", "relerr", "verdict"])
    try:
        for what, e, verdict in LL.run_checks(model, dev):
            chk.row(model=stem, what=what, relerr=e, verdict=verdict)
            C.log(f"  check {what}: relative error {e:.2e}"
                  f"{'  MISMATCH' if verdict == 'MISMATCH' else ''}")
            if verdict == "MISMATCH":
                failures.append(f"check {what}: {e:.1e}")
    except Exception as ex:  # noqa: BLE001 - the timings are still worth having
        if C.is_fatal_cuda(ex):
            raise
        traceback.print_exc()
        chk.row(model=stem, what="equivalence checks", relerr=float("nan"),
                verdict=f"FAILED {type(ex).__name__}")
        failures.append(f"checks: {type(ex).__name__}")
    C.free_memory(dev)

    def attempt(label, fn):
        nonlocal n, skipped
        if run.over():
            skipped += 1
            return
        try:
            fn()
            n += 1
        except torch.cuda.OutOfMemoryError:
            C.free_memory(dev)
            failures.append(f"{label}: out of memory")
        except Exception as ex:  # noqa: BLE001
            if C.is_fatal_cuda(ex):
                raise
            traceback.print_exc()
            failures.append(f"{label}: {type(ex).__name__}")
            C.free_memory(dev)

    for t in g["prefill"]:
        attempt(f"prefill {t}", lambda t=t: both_modes(
            run, out, LL.HFPrefill(model, 1, t, dev), stem, "prefill", "hf", 1, t, 0, reps))
    hf_decode_ok = True
    for b, c in g["decode"]:
        def dec(b=b, c=c):
            nonlocal hf_decode_ok
            it = None
            if hf_decode_ok:
                try:
                    it = LL.HFDecode(model, b, c, dev)
                except Exception as ex:  # noqa: BLE001 - this transformers' cache API differs
                    if C.is_fatal_cuda(ex):
                        raise
                    hf_decode_ok = False
                    C.log(f"  transformers static-cache decode unavailable ({type(ex).__name__}: "
                          f"{str(ex)[:160]}); decode rows use the manual loop")
            if it is not None:
                both_modes(run, out, it, stem, "decode", "hf", b, 1, c, reps)
            else:
                both_modes(run, out, LL.Manual(model, 0, b, c, dev), stem, "decode", "manual",
                           b, 1, c, reps, note="transformers decode failed")
            del it
            C.free_memory(dev)
        attempt(f"decode {b}x{c}", dec)
    for p, b, c in g["mixed"]:
        if b * c > g["kv_cap"]:
            continue
        attempt(f"mixed {p}+{b}x{c}", lambda p=p, b=b, c=c: (
            both_modes(run, out, LL.Manual(model, p, b, c, dev), stem, "mixed", "manual", b, p, c,
                       reps), C.free_memory(dev)))
    for p in g["manual_prefill"]:
        attempt(f"manual prefill {p}", lambda p=p: both_modes(
            run, out, LL.Manual(model, p, 0, 0, dev), stem, "prefill", "manual", 1, p, 0, reps))
    for b, c in g["manual_decode"]:
        attempt(f"manual decode {b}x{c}", lambda b=b, c=c: (
            both_modes(run, out, LL.Manual(model, 0, b, c, dev), stem, "decode", "manual", b, 1, c,
                       reps), C.free_memory(dev)))
    del model
    C.free_memory(dev)
    st = f"{n} points"
    if skipped:
        st += f", {skipped} skipped (budget)"
    if failures:
        st += f", {len(failures)} failed: " + "; ".join(failures[:4])
    return ("ok " if not failures and not skipped else "partial ") + st


def stage_preload(run: C.Run, a) -> str:
    """CachedAttention's pre-loading ablation on the LLaMA-2-13B shape: 1K history + 100 new
    tokens, read buffer 0..15 layers, against all-resident and load-then-compute."""
    dev = run.dev
    out = run.csv("grid.csv", COLS)
    shape = model_shape("llama-2-13b", a.smoke)
    stem = shape.stem
    hist, new = (1024, 100) if not a.smoke else (64, 8)
    model = LL.build_model(shape, dev)
    pl = LL.Preload(model, hist, new, dev, a.smoke)
    reps = 9 if not a.smoke else 2
    L = pl.L
    done = 0
    # each variant eager (the Python host launching, as the ablation ran before commit 9397e7d)
    # and, on a GPU, replayed from a CUDA graph (GPU and copy engine alone)
    modes = ["eager", "graph"] if dev.type == "cuda" else ["eager"]
    failed = []

    def one(variant: str, rb: int, note: str) -> None:
        for mode in modes:
            try:
                r = (pl.run_graph if mode == "graph" else pl.run)(variant, rb, reps, 2)
            except Exception as ex:  # noqa: BLE001 - report it, keep the eager rows
                failed.append(f"{variant} r{rb} {mode}: {type(ex).__name__}: {str(ex)[:120]}")
                C.log(f"preload: {failed[-1]}")
                C.free_memory(dev)
                continue
            emit(out, stem, variant, "manual", mode, 1, new, hist, rb, r, note)

    one("resident", L, "all history in HBM")
    one("sync", 0, "load all, then compute")
    for rb in range(0, min(16, L + 1)):
        if run.over():
            break
        one("preload", rb, f"{pl.layer_bytes} bytes per layer")
        done += 1
    del pl, model
    C.free_memory(dev)
    st = f"{done} buffer sizes + resident + sync, modes {'+'.join(modes)}"
    if failed:
        return f"partial {st}; {len(failed)} failed: " + "; ".join(failed[:3])
    return "ok " + st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=100.0, help="soft budget of the step, s")
    ap.add_argument("--smoke", action="store_true", help="CPU, a tiny model (flow test)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--stages", default=",".join(STAGES))
    a = ap.parse_args()
    dev = C.pick_device(a.smoke, "kvprof_validate")
    if dev is None:
        return 2
    run = C.Run(a.out, "validate", dev, a.smoke, a.budget)
    if a.smoke:
        C.write_smoke_models(a.out)
    C.log(f"validate on {run.meta['device']} (torch {torch.__version__}, transformers "
          f"{run.meta.get('transformers')}), out {a.out}")
    return C.run_stages(run, a.stages.split(","), SHARE,
                        lambda st: stage_preload(run, a) if st == "preload"
                        else stage_model(run, st, a), a.resume)


if __name__ == "__main__":
    sys.exit(main())
