#!/usr/bin/env python3
"""Step 4: record a transformers causal LM's attention into the project's Q/K/V HDF5 schema.

  record.py --model DIR --out FILE.h5 --n-tokens 4096 --layers 0,2,3 --n-positions 48 \
            (--tok TOKDIR --kinds prose:1,code:1 | --text prose=a.txt --text code=b.c)

For every sequence and recorded layer: K and V of all tokens (K after RoPE, as attention uses it),
Q after RoPE at the chosen decode positions (--n-positions spread evenly over the second half of
the sequence, the last token included) and, with --pre-rope, K before RoPE (recovered by the
inverse rotation, exact up to rounding; a partial rotary embedding leaves the other dimensions as
they are). Works for the pipeline's own checkpoint and for any local checkpoint of the families in
hfattn.ARCHITECTURES: Llama, Mistral, Qwen2, Qwen3, OLMo-2, Phi-3 (fused qkv_proj), GPT-NeoX
(fused query_key_value, partial RoPE) and GPT-2 (fused c_attn, no RoPE: rope_theta 0). MODEL may be
any folder that AutoModelForCausalLM loads; nothing is downloaded. Any other architecture, and
Gemma-2 (logit soft-capping), is refused from config.json alone, before weights are loaded.

--verify recomputes, in float64 numpy, attention from the recorded Q, K, V at every recorded
position and head and compares it with the model's own attention output (the input of the layer's
o_proj, captured by a hook) — once with the captured fp32 tensors and once with the tensors as
stored in the file (fp16/bf16). With --pre-rope it also compares the recorded pre-RoPE K with the
model's own key projection (split out of a fused projection by the config's head layout), where
no norm sits between the two. The maximum relative L2 errors per layer are printed and written to
--verify-json.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvrec_common import die, log, machine_description, utc_now, write_json  # noqa: E402


def decode_positions(n_tokens, n_pos):
    """n_pos positions evenly spread over [n_tokens/2, n_tokens-1], the last token included."""
    lo = n_tokens // 2
    pos = np.unique(np.round(np.linspace(lo, n_tokens - 1, n_pos)).astype(np.int64))
    return pos


def cut(s, n=255):
    b = s.encode("utf-8")
    return s if len(b) <= n else b[:n - 3].decode("utf-8", "ignore") + "..."


def attention_reference(Q, K, V, positions, n_heads):
    """float64 causal attention: Q [P,H,D] at positions, K/V [T,KV,D]; key p itself included."""
    P, H, D = Q.shape
    G = n_heads // K.shape[1]
    out = np.zeros((P, H, D))
    for i, p in enumerate(positions):
        k = K[:p + 1].astype(np.float64)
        v = V[:p + 1].astype(np.float64)
        for h in range(H):
            s = k[:, h // G, :] @ Q[i, h].astype(np.float64) / np.sqrt(D)
            w = np.exp(s - s.max())
            w /= w.sum()
            out[i, h] = w @ v[:, h // G, :]
    return out


def max_rel_err(a, b):
    """max over (position, head) of ||a - b|| / ||b||."""
    num = np.linalg.norm(a - b, axis=-1)
    den = np.maximum(np.linalg.norm(b, axis=-1), 1e-30)
    return float(np.max(num / den))


def run_sequence(model, tokens, layers, positions, want_pre_rope):
    """One forward pass; returns {layer: dict(K, V, Q, K_pre_rope, K_proj, out)} as float32
    numpy (K_proj: the key projection's output where it is the pre-RoPE key, else None)."""
    import torch
    from hfattn import (attention_modules, key_projection, model_adapter, output_projection,
                        patched_sdpa, unrope)
    arch = model_adapter(model)
    mods = dict(attention_modules(model))
    for l in layers:
        if l not in mods:
            die("layer %d: no attention module found (model_type %s)" %
                (l, getattr(model.config, "model_type", "?")))
    cap = {l: {} for l in layers}
    pos_t = torch.as_tensor(positions)
    rope = {}

    def attn_fn(orig, module, query, key, value, mask, *a, **kw):
        l = getattr(module, "layer_idx", None)
        if l in cap:
            scaling = kw.get("scaling", None)
            D = query.shape[-1]
            fold = 1.0 if scaling is None else float(scaling) * np.sqrt(D)
            c = cap[l]
            c["Q"] = (query[0][:, pos_t, :].transpose(0, 1).float() * fold).cpu().numpy()
            c["K"] = key[0].transpose(0, 1).float().cpu().numpy()
            c["V"] = value[0].transpose(0, 1).float().cpu().numpy()
            c["fold"] = fold
        return orig(module, query, key, value, mask, *a, **kw)

    hooks = []
    for l in layers:
        m = mods[l]
        op = output_projection(model, m)
        if op is not None:
            def pre(mod, args, l=l):
                cap[l]["out"] = args[0][0][pos_t].float().cpu().numpy()
            hooks.append(op.register_forward_pre_hook(pre))
        if want_pre_rope and not arch["k_norm"]:
            proj, split = key_projection(model, m)

            def khook(mod, args, output, l=l, split=split):
                cap[l]["K_proj"] = split(output[0]).float().cpu().numpy()
            hooks.append(proj.register_forward_hook(khook))
    if want_pre_rope and arch["rope"]:
        rot = [m for _, m in model.named_modules() if type(m).__name__.endswith("RotaryEmbedding")]
        if not rot:
            die("--pre-rope: no RotaryEmbedding module found in the model")

        def rhook(mod, args, output):
            rope["cos"], rope["sin"] = output[0][0].float(), output[1][0].float()
        hooks.append(rot[0].register_forward_hook(rhook))
    try:
        with torch.no_grad(), patched_sdpa(attn_fn):
            dev = next(model.parameters()).device
            model(input_ids=torch.as_tensor(tokens, dtype=torch.long, device=dev)[None],
                  use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for l in layers:
        if "K" not in cap[l]:
            die("layer %d: attention was not captured (does the model dispatch through "
                "ALL_ATTENTION_FUNCTIONS['sdpa']?)" % l)
        if want_pre_rope and not arch["rope"]:
            cap[l]["K_pre_rope"] = cap[l]["K"].copy()  # learned absolute positions: K is K
        elif want_pre_rope:
            cos, sin = rope["cos"].cpu(), rope["sin"].cpu()
            if cos.shape[-1] > cap[l]["K"].shape[-1]:
                die("--pre-rope: rotary embedding of %d dims for heads of %d" %
                    (cos.shape[-1], cap[l]["K"].shape[-1]))
            cap[l]["K_pre_rope"] = unrope(torch.from_numpy(cap[l]["K"]), cos, sin).numpy()
        else:
            cap[l]["K_pre_rope"] = None
        cap[l].setdefault("K_proj", None)
        if cap[l].get("out") is not None:
            H = cap[l]["Q"].shape[1]
            cap[l]["out"] = cap[l]["out"].reshape(len(positions), H, -1)
    return cap


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint folder (config.json + weights)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tok", help="tokenize_corpus.py output: held-out sequences come from it")
    ap.add_argument("--kinds", default="prose:1,code:1",
                    help="kind:count list of held-out sequences (with --tok)")
    ap.add_argument("--text", action="append", default=[], metavar="KIND=PATH",
                    help="a text file to record, tokenized by the model's tokenizer")
    ap.add_argument("--part", choices=["calib", "eval"], default=None,
                    help="with --tok: take held-out documents of this partition only "
                         "(heldout.py: calibration and evaluation sequences share no text)")
    ap.add_argument("--n-tokens", type=int, default=8192)
    ap.add_argument("--layers", default="all", help="comma list of layer indices or 'all'")
    ap.add_argument("--n-positions", type=int, default=64)
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16",
                    help="storage type of the tensors")
    ap.add_argument("--model-dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pre-rope", action="store_true", help="also store K before RoPE")
    ap.add_argument("--compress", type=int, default=0, metavar="LEVEL",
                    help="gzip level (1-9) with byte shuffle for K/V/Q; 0: uncompressed")
    ap.add_argument("--model-name", default=None)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--verify-json", default=None)
    args = ap.parse_args()

    import torch
    from hfattn import check_config, check_model, load_model, model_shape
    from qkvh5 import QKVWriter, read_layer
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        check_config(args.model, args.n_tokens)  # before any weight is loaded
    except (ValueError, OSError) as e:
        die("%s: %s" % (args.model, e))
    model, tok = load_model(args.model, args.model_dtype, device)
    shape = model_shape(model)
    check_model(model, args.n_tokens)
    layers = list(range(shape["n_layers"])) if args.layers == "all" else \
        sorted({int(x) for x in args.layers.split(",")})
    for l in layers:
        if not 0 <= l < shape["n_layers"]:
            die("--layers: %d outside [0, %d)" % (l, shape["n_layers"]))
    seqs = []
    if args.tok:
        from heldout import heldout_sequences
        for item in args.kinds.split(","):
            kind, cnt = item.split(":")
            seqs.extend(heldout_sequences(args.tok, kind, args.n_tokens, int(cnt),
                                          part=args.part))
    for item in args.text:
        if "=" not in item:
            die("--text wants KIND=PATH, got %r" % item)
        kind, path = item.split("=", 1)
        if tok is None:
            die("%s: the model folder has no tokenizer to tokenize %s" % (args.model, path))
        with open(path, encoding="utf-8", errors="replace") as f:
            ids = tok(f.read(), add_special_tokens=False)["input_ids"]
        if len(ids) < args.n_tokens:
            die("%s: %d tokens, fewer than --n-tokens %d" % (path, len(ids), args.n_tokens))
        seqs.append({"name": "%s-%d" % (kind, len(seqs)), "kind": kind,
                     "tokens": np.asarray(ids[:args.n_tokens], dtype=np.int64),
                     "source": os.path.basename(path)})
    if not seqs:
        die("nothing to record: give --tok or --text")
    positions = decode_positions(args.n_tokens, args.n_positions)
    name = args.model_name or os.path.basename(os.path.normpath(args.model))
    tok_name = ""
    tok_json = os.path.join(args.model, "tokenizer.json")
    if os.path.exists(tok_json) and args.tok:
        from kvrec_common import read_json
        tok_name = read_json(os.path.join(args.tok, "tok-manifest.json"))["tokenizer"]
    elif tok is not None:
        tok_name = type(tok).__name__ + " from " + name
    log("model %s: %s; %d sequences of %d tokens, layers %s, %d positions" %
        (name, shape, len(seqs), args.n_tokens, layers, len(positions)))

    verify, outs = {}, {}
    if os.path.islink(args.out) or (os.path.lexists(args.out) and not os.path.isfile(args.out)):
        die("%s: not a regular file; an output replaces only a regular file or nothing" % args.out)
    tmp = "%s.tmp.%d" % (args.out, os.getpid())
    try:
        with QKVWriter(tmp, cut(name), shape["n_layers"], shape["n_heads"], shape["n_kv_heads"],
                       shape["head_dim"], shape["rope_theta"], k_post_rope=True, tokenizer=cut(tok_name),
                       creator="kvlab traces/record/record.py", compress=args.compress) as w:
            for s in seqs:
                cap = run_sequence(model, s["tokens"], layers, positions, args.pre_rope)
                i = w.add_seq(cut(s["name"]), s["kind"], len(s["tokens"]), s["tokens"],
                              cut(s["source"]))
                for l in layers:
                    c = cap[l]
                    w.add_layer(i, l, c["K"], c["V"], c["Q"], positions, args.dtype, c["K_pre_rope"])
                    if args.verify and c.get("out") is not None:
                        outs[(s["name"], l)] = c["out"]
                        ref = attention_reference(c["Q"], c["K"], c["V"], positions, shape["n_heads"])
                        verify.setdefault(s["name"], {})[l] = {
                            "captured_fp32": max_rel_err(ref, c["out"]), "q_scale_folded": c["fold"]}
                        if c["K_pre_rope"] is not None and c["K_proj"] is not None:
                            verify[s["name"]][l]["k_pre_rope_vs_projection"] = max_rel_err(
                                c["K_pre_rope"], c["K_proj"])
                log("%s (%s, %s): recorded" % (s["name"], s["kind"], s["source"][:80]))
        os.replace(tmp, args.out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if args.verify:
        for si, s in enumerate(seqs):
            for l in layers:
                if l not in verify.get(s["name"], {}):
                    continue
                r = read_layer(args.out, si, l)
                ref = attention_reference(r["Q"], r["K"], r["V"], r["positions"],
                                          shape["n_heads"])
                verify[s["name"]][l]["as_stored_" + args.dtype] = max_rel_err(
                    ref, outs[(s["name"], l)])
                v = verify[s["name"]][l]
                log("verify %s layer %d: max relative error of attention recomputed from the "
                    "recorded Q,K,V vs the model's attention output: %.2e (fp32 capture), %.2e "
                    "(as stored, %s)%s" % (s["name"], l, v["captured_fp32"],
                                           v["as_stored_" + args.dtype], args.dtype,
                                           "; pre-RoPE K vs the key projection: %.2e" %
                                           v["k_pre_rope_vs_projection"]
                                           if "k_pre_rope_vs_projection" in v else ""))
        if args.verify_json:
            write_json(args.verify_json, {"created": utc_now(), "file": os.path.basename(args.out),
                                          "model": name, "model_dtype": args.model_dtype,
                                          "max_rel_err": verify, "machine": machine_description()})
    log("wrote %s (%.2f MiB)" % (args.out, os.path.getsize(args.out) / 1048576.0))


if __name__ == "__main__":
    main()
