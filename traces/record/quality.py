#!/usr/bin/env python3
"""Step 5: quality at equal KV budget — the change in next-token loss (delta NLL) when decode-time
attention is computed by the project's attention library (dense, fixed top-k, PSA), against the
KV each method reads.

  quality.py --model DIR --tok TOKDIR --seq-len 4096 --prefix 3840 --kinds prose:2,code:2 \
             --methods dense,topk:256,psa:0.95,... --out-json q.json --out-md q.md

For every held-out sequence (heldout.py chooses them) the model runs once with its own attention
(the reference) and once per method. In a method's run, every layer's attention output at the
decode positions p = prefix .. seq_len-2 is replaced by attn_decode() of build/lib/libkvlab_attn.so
(ctypes, traces/record/kvattn.py) for the query at p over keys 0..p; earlier positions keep the
model's dense attention (the prompt). The block metadata is built over the prompt and appended one
token at a time, as a decoder would. Because every layer at every decode position uses the method,
the K/V of decode positions already carry the method's errors, as in real sparse decoding with a
KV cache. delta NLL = mean over the predictions made at decode positions (token p+1 from position
p) of NLL(method) - NLL(reference). KV read = tokens and bytes (attn_bytes_read, 2-byte elements,
block metadata included) summed over layers, KV heads and decode positions, relative to dense.

Method "dense" runs through the C library as well: its delta NLL only measures the difference
between the C reference (double accumulation) and the model's own attention, and should be ~0.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvrec_common import die, log, machine_description, utc_now, write_json  # noqa: E402

DEFAULT_METHODS = ("dense,topk:128,topk:256,topk:512,topk:1024,psa:0.8,psa:0.9,psa:0.95,psa:0.99,"
                   "psa:0.9:lognormal,psa:0.95:lognormal,psa:0.99:lognormal,oracle:0.95,psa:1")


def nll_of(model, tokens, lo, hi):
    """NLL (nats) of token t+1 given tokens 0..t, for t in [lo, hi)."""
    import torch
    import torch.nn.functional as F
    dev = next(model.parameters()).device
    x = torch.as_tensor(tokens, dtype=torch.long, device=dev)[None]
    with torch.no_grad():
        logits = model(input_ids=x, use_cache=False).logits[0].float()
    return F.cross_entropy(logits[lo:hi], x[0, lo + 1:hi + 1], reduction="none").cpu().numpy()


def run_method(model, lib, spec, tokens, prefix, dense_layers):
    """NLL at decode positions with `spec` at every layer >= dense_layers; and KV-read counters."""
    import torch
    from hfattn import patched_sdpa
    from kvattn import Decoder
    T = len(tokens)
    stats = {"tokens_read": 0, "keys": 0, "bytes": 0, "dense_bytes": 0, "calls": 0}

    def attn_fn(orig, module, query, key, value, mask, *a, **kw):
        out, w = orig(module, query, key, value, mask, *a, **kw)
        l = module.layer_idx
        if l < dense_layers or query.shape[2] != T:
            return out, w
        D = query.shape[-1]
        scaling = kw.get("scaling", None)
        fold = 1.0 if scaling is None else float(scaling) * np.sqrt(D)
        Q = (query[0].transpose(0, 1).float() * fold).cpu().numpy()  # [T, H, D]
        K = key[0].transpose(0, 1).float().cpu().numpy()              # [T, KV, D]
        V = value[0].transpose(0, 1).float().cpu().numpy()
        H = Q.shape[1]
        dec = Decoder(lib, spec, K, V, H, elem_bytes=2)
        try:
            dec.start(prefix + 1)
            new = out.clone()
            for p in range(prefix, T - 1):
                o, toks, nbytes = dec.step(Q[p], p + 1)
                new[0, p] = torch.from_numpy(o).to(out.dtype)
                stats["tokens_read"] += int(toks.sum())
                stats["keys"] += (p + 1) * K.shape[1]
                stats["bytes"] += nbytes
                stats["dense_bytes"] += dec.dense_bytes(p + 1)
                stats["calls"] += 1
        finally:
            dec.close()
        return new, w

    with patched_sdpa(attn_fn):
        nll = nll_of(model, tokens, prefix, T - 1)
    return nll, stats


_W = {}


def _init_worker(model_path, model_dtype, lib_path, threads):
    import torch
    from hfattn import load_model
    from kvattn import Lib
    if threads:
        torch.set_num_threads(threads)
    _W["model"], _ = load_model(model_path, model_dtype, "cpu")
    _W["lib"] = Lib(lib_path)


def _task(t):
    """t = (sequence index, method or None for the reference, tokens, prefix, dense_layers)."""
    si, m, tokens, prefix, dense_layers = t
    t0 = time.time()
    if m is None:
        return si, m, nll_of(_W["model"], tokens, prefix, len(tokens) - 1), None, time.time() - t0
    nll, st = run_method(_W["model"], _W["lib"], m, tokens, prefix, dense_layers)
    return si, m, nll, st, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tok", required=True, help="tokenize_corpus.py output (held-out documents)")
    ap.add_argument("--kinds", default="prose:2,code:2")
    ap.add_argument("--part", choices=["calib", "eval"], default=None,
                    help="held-out documents of this partition only (heldout.py)")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--prefix", type=int, default=3840,
                    help="prompt length; decode positions are prefix .. seq_len-2")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--dense-layers", type=int, default=0,
                    help="the first N layers stay dense (as Quest does); default 0: all sparse")
    ap.add_argument("--lib", default=None, help="libkvlab_attn.so (default build/lib/)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes (each runs whole (sequence, method) tasks on the CPU "
                         "with --threads torch threads)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: default)")
    ap.add_argument("--model-dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--command", default=None, help="command line to print in the report")
    args = ap.parse_args()
    if not 0 < args.prefix < args.seq_len - 1:
        die("--prefix must be in (0, seq_len - 1)")

    import torch
    from heldout import heldout_sequences
    from hfattn import check_model, load_model, model_shape
    from kvattn import Lib
    torch.manual_seed(0)
    lib = Lib(args.lib)
    model, _ = load_model(args.model, args.model_dtype, "cpu")
    check_model(model, args.seq_len)
    shape = model_shape(model)
    del model
    seqs = []
    for item in args.kinds.split(","):
        kind, cnt = item.split(":")
        seqs.extend(heldout_sequences(args.tok, kind, args.seq_len, int(cnt), part=args.part))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    labels = {m: lib.label(lib.method(m)) for m in methods}
    log("%d sequences of %d tokens, %d decode positions each, %d methods, library %s" %
        (len(seqs), args.seq_len, args.seq_len - 1 - args.prefix, len(methods), lib.path))

    t0 = time.time()
    per = {}   # method -> kind -> list of arrays of delta NLL
    ref_nll = {}
    agg = {m: {"tokens_read": 0, "keys": 0, "bytes": 0, "dense_bytes": 0, "calls": 0}
           for m in methods}
    tasks = [(si, m, s["tokens"], args.prefix, args.dense_layers)
             for si, s in enumerate(seqs) for m in [None] + methods]
    initargs = (args.model, args.model_dtype, lib.path, args.threads)
    if args.jobs > 1:
        import multiprocessing as mp
        pool = mp.get_context("spawn").Pool(args.jobs, _init_worker, initargs)
        results = pool.imap(_task, tasks)
    else:
        pool = None
        _init_worker(*initargs)
        results = map(_task, tasks)
    raw = {}
    for si, m, nll, st, dt in results:
        raw[(si, m)] = (nll, st)
        if m is not None:
            log("%s %-22s tokens read %.3f of keys (%.1fs)" %
                (seqs[si]["name"], labels[m], st["tokens_read"] / max(1, st["keys"]), dt))
    if pool is not None:
        pool.close()
        pool.join()
    for si, s in enumerate(seqs):
        ref = raw[(si, None)][0]
        ref_nll.setdefault(s["kind"], []).append(ref)
        for m in methods:
            nll, st = raw[(si, m)]
            per.setdefault(m, {}).setdefault(s["kind"], []).append(nll - ref)
            for k in st:
                agg[m][k] += st[k]
            log("%s %-22s delta NLL %+.4f" % (s["name"], labels[m], float(np.mean(nll - ref))))

    rows = []
    for m in methods:
        allv = np.concatenate([x for v in per[m].values() for x in v])
        n = max(1, agg[m]["calls"])
        row = {"method": m, "label": labels[m],
               "delta_nll": float(allv.mean()),
               "delta_nll_se": float(allv.std(ddof=1) / np.sqrt(allv.size)) if allv.size > 1
               else 0.0,
               "delta_nll_by_kind": {k: float(np.concatenate(v).mean())
                                     for k, v in sorted(per[m].items())},
               "tokens_read_per_query_kvhead": agg[m]["tokens_read"] / n / shape["n_kv_heads"],
               "keys_per_query_kvhead": agg[m]["keys"] / n / shape["n_kv_heads"],
               "kv_read_fraction": agg[m]["tokens_read"] / max(1, agg[m]["keys"]),
               "bytes_read_fraction": agg[m]["bytes"] / max(1, agg[m]["dense_bytes"]),
               "predictions": int(allv.size)}
        rows.append(row)
    ref_all = {k: float(np.concatenate(v).mean()) for k, v in ref_nll.items()}
    res = {"created": utc_now(), "model": os.path.basename(os.path.normpath(args.model)),
           "shape": shape, "seq_len": args.seq_len, "prefix": args.prefix,
           "dense_layers": args.dense_layers, "sequences": [
               {"name": s["name"], "kind": s["kind"], "source": s["source"]} for s in seqs],
           "reference_nll_by_kind": ref_all, "rows": rows, "library": lib.path,
           "library_version": lib.version(), "wall_s": round(time.time() - t0, 1),
           "jobs": args.jobs,
           "machine": machine_description(), "command": args.command or " ".join(sys.argv)}
    write_json(args.out_json, res)

    lines = ["# Delta NLL vs KV read: %s" % res["model"], "",
             "Date %s; machine: %s, %s cores; torch %s; %.0f s." %
             (res["created"], res["machine"].get("gpu") or res["machine"].get("cpu", "?"),
              res["machine"].get("cpu_count"), res["machine"].get("torch"), res["wall_s"]), "",
             "Command: `%s`" % res["command"], "",
             "%d held-out sequences (%s) of %d tokens; prompt %d tokens (dense), decode positions "
             "%d..%d (%d predictions per sequence) use the method at every layer from layer %d "
             "on (KV read counts those layers only). Reference NLL (model's own attention) at "
             "those positions: %s." %
             (len(seqs), ", ".join("%s %s" % (s["kind"], s["source"]) for s in seqs),
              args.seq_len, args.prefix, args.prefix, args.seq_len - 2,
              args.seq_len - 1 - args.prefix, args.dense_layers,
              ", ".join("%s %.3f" % kv for kv in sorted(ref_all.items()))), "",
             "| method | tokens read / query / KV head | of keys | KV bytes vs dense | delta NLL "
             "(± s.e.) | " + " | ".join("delta %s" % k for k in sorted(ref_all)) + " |",
             "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in ref_all) + " |"]
    for r in rows:
        lines.append("| %s | %.0f | %.3f | %.3f | %+.4f ± %.4f | %s |" % (
            r["label"], r["tokens_read_per_query_kvhead"], r["kv_read_fraction"],
            r["bytes_read_fraction"], r["delta_nll"], r["delta_nll_se"],
            " | ".join("%+.4f" % r["delta_nll_by_kind"].get(k, float("nan"))
                       for k in sorted(ref_all))))
    lines.append("")
    with open(args.out_md + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(args.out_md + ".tmp", args.out_md)
    log("wrote %s and %s" % (args.out_json, args.out_md))


if __name__ == "__main__":
    main()
