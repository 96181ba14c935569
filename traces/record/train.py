#!/usr/bin/env python3
"""Step 3: train a Llama-style decoder (transformers' LlamaForCausalLM: RMSNorm, RoPE, SwiGLU,
grouped-query attention) on the tokenized corpus, evaluate held-out loss per text kind and save a
standard checkpoint (config.json + model.safetensors + tokenizer files).

  train.py --tok work/tok --out work/model --preset cpu|gpu|tiny [--minutes-scale X]

Deterministic: torch, numpy and the batch sampler are seeded (--seed); the learning-rate schedule
is fixed by the preset's step count. A stage that runs past its time cap (presets.py) is cut and
the cut is logged and recorded in training.json. Writes into --out: the checkpoint, train_log.jsonl (one line per log step),
heldout_loss.json (mean next-token loss per kind on held-out documents) and training.json
(preset, tokens, wall time, machine).
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvrec_common import (die, git_describe, log, machine_description, read_json,  # noqa: E402
                          utc_now, write_json)
from presets import PRESETS  # noqa: E402


def build_model(p, vocab, eot, seed):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=p["hidden_size"],
                      intermediate_size=p["intermediate_size"],
                      num_hidden_layers=p["num_hidden_layers"],
                      num_attention_heads=p["num_attention_heads"],
                      num_key_value_heads=p["num_key_value_heads"], head_dim=p["head_dim"],
                      max_position_embeddings=p["max_position_embeddings"],
                      rope_theta=p["rope_theta"], rms_norm_eps=1e-5, tie_word_embeddings=True,
                      bos_token_id=eot, eos_token_id=eot, attention_bias=False, mlp_bias=False,
                      initializer_range=0.02)
    try:
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")
    except (TypeError, ValueError):
        model = LlamaForCausalLM(cfg)
    # rope_theta may live under rope_parameters in newer transformers; record what was used.
    return model


def pad_vocab(v, multiple=64):
    return (v + multiple - 1) // multiple * multiple


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def heldout_streams(tok_dir, eot):
    idx = read_json(os.path.join(tok_dir, "heldout.json"))
    man = read_json(os.path.join(tok_dir, "tok-manifest.json"))
    data = np.fromfile(os.path.join(tok_dir, "heldout.bin"), dtype=man["dtype"])
    streams = {}
    for d in idx:
        s = streams.setdefault(d["kind"], [])
        s.append(data[d["offset"]:d["offset"] + d["n_tokens"]].astype(np.int64))
        s.append(np.array([eot], dtype=np.int64))
    return {k: np.concatenate(v) for k, v in streams.items()}


def evaluate(model, streams, ctx, max_tokens, device, amp):
    """Mean next-token loss (nats) per kind over non-overlapping windows of ctx+1 tokens of the
    kind's held-out stream (documents joined by end-of-text), up to max_tokens per kind; also the
    loss over the second half of each window's positions (long-context part)."""
    import torch
    import torch.nn.functional as F
    model.eval()
    res = {}
    with torch.no_grad():
        for kind, s in sorted(streams.items()):
            n_win = min(len(s) // (ctx + 1), max(1, max_tokens // ctx))
            if n_win == 0:
                continue
            tot, tot2, n, n2 = 0.0, 0.0, 0, 0
            for w in range(n_win):
                x = torch.from_numpy(s[w * (ctx + 1):(w + 1) * (ctx + 1)]).to(device)[None]
                with amp():
                    logits = model(input_ids=x[:, :-1]).logits.float()
                nll = F.cross_entropy(logits[0], x[0, 1:], reduction="none")
                tot += nll.sum().item()
                n += nll.numel()
                tot2 += nll[ctx // 2:].sum().item()
                n2 += nll[ctx // 2:].numel()
            res[kind] = {"loss": tot / n, "loss_second_half": tot2 / n2, "tokens": n,
                         "windows": n_win, "ctx": ctx}
    model.train()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tok", required=True, help="output folder of tokenize_corpus.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--minutes-scale", type=float, default=1.0,
                    help="multiplies every stage's max_minutes")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    ap.add_argument("--export-bf16", metavar="DIR",
                    help="also save a bf16 copy of the checkpoint in <= 15 MB shards to DIR")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    p = dict(PRESETS[args.preset])
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if p["dtype"] == "bf16" and device == "cuda":
        def amp():
            return torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        import contextlib

        def amp():
            return contextlib.nullcontext()
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    man = read_json(os.path.join(args.tok, "tok-manifest.json"))
    eot = man["eot_id"]
    train = np.memmap(os.path.join(args.tok, "train.bin"), dtype=man["dtype"], mode="r")
    need = max(s[1] for s in p["stages"]) + 1
    if len(train) < need * 4:
        die("%s/train.bin: %d tokens, too few for context %d" % (args.tok, len(train), need - 1))
    vocab = pad_vocab(man["vocab_size"])
    model = build_model(p, vocab, eot, args.seed).to(device)
    n_params = sum(t.numel() for t in model.parameters())
    log("preset %s: %.2fM parameters (vocabulary %d), device %s, %d threads" %
        (args.preset, n_params / 1e6, vocab, device, torch.get_num_threads()))
    decay = [t for n, t in model.named_parameters() if t.dim() >= 2]
    no_decay = [t for n, t in model.named_parameters() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": p["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=p["lr"], betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if device == "cuda" else {}))
    fwd = torch.compile(model) if args.compile else model
    rng = np.random.default_rng(args.seed)
    total_steps = sum(s[0] for s in p["stages"])
    # "schedule": "time" -- the learning rate follows the elapsed fraction of the summed stage
    # minutes (after the step-counted warm-up), so the decay completes when the time runs out.
    time_sched = p.get("schedule") == "time"
    total_min = sum(s[3] for s in p["stages"]) * args.minutes_scale
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train_log.jsonl"), "w")
    t0 = time.time()
    step, tokens, stopped_early = 0, 0, False
    loss_ema = None
    cuts = []
    for (n_steps, ctx, batch, max_min) in p["stages"]:
        max_min *= args.minutes_scale
        log("stage: %d steps at context %d, batch %d (at most %.1f minutes)" %
            (n_steps, ctx, batch, max_min))
        ts, done = time.time(), 0
        for _ in range(n_steps):
            if (time.time() - ts) / 60.0 > max_min:
                stopped_early = True
                cuts.append({"ctx": ctx, "steps_done": done, "steps_planned": n_steps})
                log("stage at context %d cut after %d of %d steps (%.1f minutes)" %
                    (ctx, done, n_steps, max_min))
                break
            done += 1
            starts = rng.integers(0, len(train) - ctx - 1, size=batch)
            xb = np.stack([np.asarray(train[s:s + ctx + 1], dtype=np.int64) for s in starts])
            x = torch.from_numpy(xb).to(device, non_blocking=True)
            if time_sched and step >= p["warmup"]:
                frac = min(1.0, (time.time() - t0) / 60.0 / total_min)
                lr = lr_at(p["warmup"] + int(frac * 1e6), p["warmup"] + 1000000, p["lr"],
                           p["warmup"])
            else:
                lr = lr_at(step, total_steps, p["lr"], p["warmup"])
            for g in opt.param_groups:
                g["lr"] = lr
            with amp():
                logits = fwd(input_ids=x[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                   x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tokens += batch * ctx
            lv = loss.item()
            loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
            if step % args.log_every == 0 or step == total_steps:
                el = time.time() - t0
                rec = {"step": step, "tokens": tokens, "loss": round(lv, 4),
                       "loss_ema": round(loss_ema, 4), "lr": lr, "grad_norm": round(gn.item(), 3),
                       "ctx": ctx, "batch": batch, "elapsed_s": round(el, 1),
                       "tokens_per_s": round(tokens / el, 1)}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log("step %d/%d loss %.3f (ema %.3f) lr %.2e ctx %d  %.0f tok/s" %
                    (step, total_steps, lv, loss_ema, lr, ctx, tokens / el))
    train_s = time.time() - t0
    logf.close()

    model.config.use_cache = True
    model.save_pretrained(args.out, safe_serialization=True)
    if args.export_bf16:
        # A bf16 copy in shards small enough to travel (the GPU machine returns files <= 16 MiB).
        import copy
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(
            args.export_bf16, safe_serialization=True, max_shard_size="15MB")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(args.tok, name), os.path.join(args.export_bf16, name))
        log("bf16 checkpoint in %s" % args.export_bf16)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(args.tok, name), os.path.join(args.out, name))
    log("saved checkpoint to %s; evaluating held-out loss" % args.out)

    streams = heldout_streams(args.tok, eot)
    t1 = time.time()
    ev = evaluate(model, streams, p["eval_ctx"], p["eval_tokens_per_kind"], device, amp)
    for k, v in ev.items():
        log("held-out %s: loss %.3f nats/token (second half of windows %.3f) over %d tokens" %
            (k, v["loss"], v["loss_second_half"], v["tokens"]))
    write_json(os.path.join(args.out, "heldout_loss.json"),
               {"created": utc_now(), "per_kind": ev, "eval_s": round(time.time() - t1, 1),
                "bytes_per_token": man.get("bytes_per_token_heldout")})
    write_json(os.path.join(args.out, "training.json"),
               {"created": utc_now(), "preset": args.preset, "preset_params": p,
                "seed": args.seed, "parameters": n_params, "vocab_size": vocab,
                "tokenizer": man["tokenizer"], "steps": step, "planned_steps": total_steps,
                "tokens": tokens, "train_wall_s": round(train_s, 1),
                "stopped_early": stopped_early, "stage_cuts": cuts, "device": device,
                "schedule": "time" if time_sched else "steps",
                "machine": machine_description(), "git": git_describe(),
                "train_tokens_available": int(len(train))})
    log("done: %d steps, %d tokens in %.1f minutes" % (step, tokens, train_s / 60.0))


if __name__ == "__main__":
    main()
