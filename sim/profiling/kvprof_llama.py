"""kvprof_llama.py - Llama-architecture models with random bf16 weights through transformers,
and the iterations the validation times (used by kvprof_validate.py and the `host` stage of
kvprof_ops.py).

Three execution paths, named in every output row (`impl`):
  hf      transformers' LlamaForCausalLM.forward, attention 'sdpa'. Prefill: one call without a
          cache (causal flash attention), logits of the last token only (logits_to_keep = 1,
          as a server computes them). Decode: one call with a StaticCache of exactly
          context + 1 slots whose K/V hold random data, so the timed call is one decode step
          (transformers' static-cache decode runs masked SDPA and repeat_kv for GQA).
  manual  the same modules' weights and the same torch ops in a Python loop over the layers,
          for what transformers cannot express in one call: a mixed batch (one prefill packed
          with decode tokens, as continuous batching does), prefill with cached history and
          the layer-wise pre-loading of that history from pinned host memory.
Shapes: (B, H, L, D) = (sequences, heads, tokens, head_dim) for attention tensors; hidden states
(1, T, hidden) with the T tokens of an iteration packed (prefill tokens first, then one token per
decode sequence).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
import types

import torch
import torch.nn.functional as F

import kvprof_common as C


def tiny_shape(layers: int) -> types.SimpleNamespace:
    """A small Llama for host-overhead probes and --smoke: GPU work negligible."""
    return types.SimpleNamespace(stem=f"tiny-{layers}", name=f"tiny-{layers}", layers=layers,
                                 heads=4, kv_heads=4, head_dim=32, hidden=128, ffn=256,
                                 ffn_matrices=3, vocab=512, context_window=4096)


def build_model(shape, dev: torch.device, max_pos: int = 65536):
    """LlamaForCausalLM with shape's dimensions, bf16, weights drawn at random ON the device
    (never on the CPU: 13B would take minutes there). Checks that the weights are not zero."""
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    if shape.ffn_matrices != 3:
        raise ValueError(f"{shape.stem}: not a gated (SwiGLU) Llama FFN")
    cfg = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden,
                      intermediate_size=shape.ffn, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      head_dim=shape.head_dim, max_position_embeddings=max_pos,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, use_cache=True)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1234)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(dev):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model.eval().requires_grad_(False)
    w = model.model.layers[0].self_attn.q_proj.weight
    if w.device.type != dev.type or w.dtype != torch.bfloat16:
        raise RuntimeError(f"weights on {w.device} / {w.dtype}, wanted {dev} / bf16")
    if float(w.float().std()) == 0.0:  # transformers skipped its init: draw them ourselves
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return model


def _fwd_kwargs(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


# ---- transformers: prefill -------------------------------------------------------------------

class HFPrefill:
    """One forward of B sequences of n tokens, no cache; logits of the last token only."""

    def __init__(self, model, batch: int, tokens: int, dev: torch.device):
        self.model = model
        self.ids = torch.randint(0, model.config.vocab_size, (batch, tokens), device=dev)
        self.kw = {"use_cache": False}
        if "logits_to_keep" in _fwd_kwargs(model):
            self.kw["logits_to_keep"] = 1
        self.note = "" if "logits_to_keep" in self.kw else "logits of every token"

    def reset(self) -> None:
        pass

    def step(self) -> None:
        self.model(input_ids=self.ids, **self.kw)


# ---- transformers: one decode step with a static cache --------------------------------------

def _cache_layers_kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(ly.keys, ly.values) for ly in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # older transformers


class HFDecode:
    """B sequences, each with `context` tokens in a StaticCache of context + 1 slots holding
    random K/V; step() = one decode token per sequence at position `context`. reset() puts the
    cache's write position back (the timed step advances it) and must run before every step;
    it is not part of the timed region."""

    def __init__(self, model, batch: int, context: int, dev: torch.device):
        from transformers import StaticCache  # noqa: PLC0415

        self.model = model
        cfg = model.config
        try:
            self.cache = StaticCache(config=cfg, max_cache_len=context + 1)
        except TypeError:  # older signature
            self.cache = StaticCache(config=cfg, max_batch_size=batch, max_cache_len=context + 1,
                                     device=dev, dtype=torch.bfloat16)
        kw = _fwd_kwargs(model)
        self.has_cache_position = "cache_position" in kw
        self.cache_arg = "past_key_values" if "past_key_values" in kw else "cache"
        V = cfg.vocab_size
        # first call at position 0 initialises the cache's tensors (lazy in transformers 5)
        ids0 = torch.randint(0, V, (batch, 1), device=dev)
        kw0 = {self.cache_arg: self.cache, "use_cache": True,
               "position_ids": torch.zeros((batch, 1), dtype=torch.long, device=dev)}
        if self.has_cache_position:
            kw0["cache_position"] = torch.zeros((1,), dtype=torch.long, device=dev)
        with torch.inference_mode():  # the cache's tensors are inference tensors from here on
            model(input_ids=ids0, **kw0)
            kv = _cache_layers_kv(self.cache)
            if len(kv) != cfg.num_hidden_layers or kv[0][0].shape[0] != batch or \
                    kv[0][0].shape[2] != context + 1:
                raise RuntimeError(f"unexpected StaticCache layout {tuple(kv[0][0].shape)}")
            for k, v in kv:  # random history (never zeros)
                k.normal_()
                v.normal_()
        self.lengths = [getattr(ly, "cumulative_length", None)
                        for ly in getattr(self.cache, "layers", [])]
        if not self.has_cache_position and not all(t is not None for t in self.lengths):
            raise RuntimeError("StaticCache keeps its write position in no known place")
        self.context = context
        self.ids = torch.randint(0, V, (batch, 1), device=dev)
        self.kw = {self.cache_arg: self.cache, "use_cache": True,
                   "position_ids": torch.full((batch, 1), context, dtype=torch.long, device=dev)}
        if self.has_cache_position:
            self.kw["cache_position"] = torch.full((1,), context, dtype=torch.long, device=dev)
        if "logits_to_keep" in kw:
            self.kw["logits_to_keep"] = 1
        self.note = "static cache"

    def reset(self) -> None:
        for t in self.lengths:
            if t is not None:
                t.fill_(self.context)

    def step(self) -> None:
        self.model(input_ids=self.ids, **self.kw)


# ---- the manual layer loop -------------------------------------------------------------------

def _rope_fn():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # noqa: PLC0415

    return apply_rotary_pos_emb


def _sdpa_prefill(q, k, v, hist: int, gqa: bool):
    if hist == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    from torch.nn.attention.bias import causal_lower_right  # noqa: PLC0415

    if gqa:
        r = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[-2],
                                                                                 k.shape[-2]))


class Manual:
    """One iteration run layer by layer with the model's own modules and weights:
    `prefill` tokens of one sequence (after `hist` cached tokens) packed with `batch` decode
    tokens (each after `context` cached tokens). Projections, norms and the MLP run once on all
    T = prefill + batch tokens; attention runs per part (prefill: causal SDPA, bottom-right
    aligned over hist + prefill keys; decode: SDPA of one query per sequence over context + 1
    keys, no mask). Caches are pre-allocated, random, written in place.

    History layout for pre-loading: per layer one device buffer (hist + prefill, 2, Hk, D)
    (token-major), whose first hist tokens are what a host copy fills (one contiguous copy per
    layer); the new tokens' K/V are written behind them."""

    def __init__(self, model, prefill: int, batch: int, context: int, dev: torch.device,
                 hist: int = 0):
        cfg = model.config
        self.model, self.dev = model, dev
        self.P, self.B, self.Cx, self.hist = prefill, batch, context, hist
        self.H, self.Hk = cfg.num_attention_heads, cfg.num_key_value_heads
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.gqa = self.H != self.Hk
        self.L = cfg.num_hidden_layers
        self.dtype = next(model.parameters()).dtype  # caches in the model's dtype (checks: fp32)
        self.rope = _rope_fn()
        T = prefill + batch
        self.T = T
        self.ids = torch.randint(0, cfg.vocab_size, (1, T), device=dev)
        pos = [hist + i for i in range(prefill)] + [context] * batch
        self.pos = torch.tensor([pos], dtype=torch.long, device=dev)
        # logits of each sequence's last token
        last = ([prefill - 1] if prefill else []) + [prefill + i for i in range(batch)]
        self.last = torch.tensor(last, dtype=torch.long, device=dev)
        self.kc = self.vc = None
        if batch:
            shp = (batch, self.Hk, context + 1, self.D)
            self.kc = [C.randn(shp, dev, dtype=self.dtype) for _ in range(self.L)]
            self.vc = [C.randn(shp, dev, dtype=self.dtype) for _ in range(self.L)]
        self.hbuf = None
        if hist:
            self.hbuf = [C.randn((hist + prefill, 2, self.Hk, self.D), dev, dtype=self.dtype)
                         for _ in range(self.L)]
        self.note = ""

    def reset(self) -> None:
        pass

    def layer(self, i: int, x: torch.Tensor, cos, sin) -> torch.Tensor:
        ly = self.model.model.layers[i]
        at = ly.self_attn
        P, B, T, H, Hk, D = self.P, self.B, self.T, self.H, self.Hk, self.D
        res = x
        h = ly.input_layernorm(x)
        q = at.q_proj(h).view(1, T, H, D).transpose(1, 2)
        k = at.k_proj(h).view(1, T, Hk, D).transpose(1, 2)
        v = at.v_proj(h).view(1, T, Hk, D).transpose(1, 2)
        q, k = self.rope(q, k, cos, sin)
        outs = []
        if P:
            qp, kp, vp = q[:, :, :P], k[:, :, :P], v[:, :, :P]
            if self.hist:
                buf = self.hbuf[i]                                  # (hist + P, 2, Hk, D)
                buf[self.hist:, 0] = kp[0].transpose(0, 1)
                buf[self.hist:, 1] = vp[0].transpose(0, 1)
                kk = buf[:, 0].permute(1, 0, 2).unsqueeze(0)        # (1, Hk, hist + P, D)
                vv = buf[:, 1].permute(1, 0, 2).unsqueeze(0)
                op = _sdpa_prefill(qp, kk, vv, self.hist, self.gqa)
            else:
                op = _sdpa_prefill(qp, kp, vp, 0, self.gqa)
            outs.append(op.transpose(1, 2).reshape(1, P, H * D))
        if B:
            qd = q[0, :, P:].transpose(0, 1).unsqueeze(2)           # (B, H, 1, D)
            kd = k[0, :, P:].transpose(0, 1).unsqueeze(2)           # (B, Hk, 1, D)
            vd = v[0, :, P:].transpose(0, 1).unsqueeze(2)
            kc, vc = self.kc[i], self.vc[i]
            kc[:, :, self.Cx:self.Cx + 1] = kd
            vc[:, :, self.Cx:self.Cx + 1] = vd
            od = F.scaled_dot_product_attention(qd, kc, vc, enable_gqa=self.gqa)
            outs.append(od.reshape(1, B, H * D))
        o = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        x = res + at.o_proj(o)
        res = x
        x = res + ly.mlp(ly.post_attention_layernorm(x))
        return x

    def embed(self):
        x = self.model.model.embed_tokens(self.ids)
        cos, sin = self.model.model.rotary_emb(x, self.pos)
        return x, cos, sin

    def head(self, x):
        x = self.model.model.norm(x)
        return self.model.lm_head(x[:, self.last])

    def step(self, wait=None) -> torch.Tensor:
        """wait(i), when given, is called before layer i (the pre-loading hook)."""
        x, cos, sin = self.embed()
        for i in range(self.L):
            if wait is not None:
                wait(i)
            x = self.layer(i, x, cos, sin)
        return self.head(x)


# ---- which attention ran, and the same attention under CUDA-graph capture ---------------------

class AttnTrace:
    """Counts the SDPA calls of a step by kind: 'causal' (is_causal, no mask: flash), 'mask'
    (an explicit attn_mask) and 'plain' (neither: one query, or full attention). A row's note
    carries it, so a prediction can be matched with the kernel that ran."""

    def __init__(self):
        self.n = {}

    def __enter__(self):
        self.orig = F.scaled_dot_product_attention

        def wrapped(q, k, v, attn_mask=None, *a, is_causal=False, **kw):
            kind = "mask" if attn_mask is not None else ("causal" if is_causal else "plain")
            self.n[kind] = self.n.get(kind, 0) + 1
            return self.orig(q, k, v, attn_mask, *a, is_causal=is_causal, **kw)

        F.scaled_dot_product_attention = wrapped
        torch.nn.functional.scaled_dot_product_attention = wrapped
        return self

    def __exit__(self, *exc):
        F.scaled_dot_product_attention = self.orig
        torch.nn.functional.scaled_dot_product_attention = self.orig
        return False

    def summary(self) -> str:
        return "+".join(f"{k}:{v}" for k, v in sorted(self.n.items())) or "none"


class EagerMasks:
    """During CUDA-graph capture, let transformers build the attention mask it builds eagerly.

    transformers (5.17 on the GPU machine) treats stream capture as tracing and then never
    skips the causal mask (masking_utils._ignore_causal_mask_sdpa): a captured prefill runs SDPA
    with an explicit (T x T) mask on the memory-efficient kernel over all T^2 pairs, while the
    eager prefill runs the causal flash kernel over half of them. Measured on the H200 the graph
    rows were then up to 31% slower than eager at 8K tokens, timing a kernel the profile does
    not have. The skip only reads the padding mask, which these prefills do not have (no
    attention_mask is passed), so nothing needs a host read during capture. Only the capture
    check is bypassed; torch.compile / jit / fx tracing still count as tracing."""

    def __enter__(self):
        self.undo = []
        try:
            import transformers.utils.import_utils as iu  # noqa: PLC0415
        except Exception:  # noqa: BLE001
            return self
        for mod in (iu,):
            if hasattr(mod, "is_cuda_stream_capturing"):
                self.undo.append((mod, "is_cuda_stream_capturing", mod.is_cuda_stream_capturing))
                mod.is_cuda_stream_capturing = lambda: False
        # With the capture check bypassed, transformers' packed-sequence detection (called for
        # a prefill without cache or attention_mask) reads a device value on the host, which
        # capture forbids (H200, 2026-12-03: cudaErrorStreamCaptureUnsupported). The captured
        # iterations hold one sequence per batch row, the case where it returns None.
        try:
            import transformers.masking_utils as mu  # noqa: PLC0415
        except Exception:  # noqa: BLE001
            mu = None
        if mu is not None and hasattr(mu, "find_packed_sequence_indices"):
            self.undo.append((mu, "find_packed_sequence_indices", mu.find_packed_sequence_indices))
            mu.find_packed_sequence_indices = lambda position_ids: None
        return self

    def __exit__(self, *exc):
        for mod, name, fn in self.undo:
            setattr(mod, name, fn)
        return False


# ---- timing of whole iterations --------------------------------------------------------------

def capture(it, dev: torch.device, trace=None) -> "torch.cuda.CUDAGraph":
    """A CUDA graph of one it.step(): one warm-up step on a side stream (what capture needs),
    then the capture under EagerMasks (the graph runs the attention eager code runs), inside
    `trace` (an AttnTrace) when given. it.reset() runs before each step, outside the graph.
    Synchronises the device before returning. Call inside torch.inference_mode()."""
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        it.reset()
        it.step()
    torch.cuda.current_stream(dev).wait_stream(side)
    torch.cuda.synchronize(dev)
    it.reset()
    with EagerMasks(), (trace if trace is not None else contextlib.nullcontext()), \
            torch.cuda.graph(g):
        it.step()
    torch.cuda.synchronize(dev)
    return g


def time_iteration(it, dev: torch.device, reps: int, warmup: int, graph: bool) -> dict:
    """Median time of it.step() from an idle device: each repetition synchronises, runs
    it.reset() (untimed), then times one step between two events (eager: launch overhead
    included, as a Python server pays it) or one replay of a CUDA graph captured from step()
    (graph=True; captured under EagerMasks, so the graph runs the attention eager runs).
    Eager rows also carry host_us: the median time the host spends launching the step (from
    before step() to its return, before any synchronisation), the quantity the simulator's
    host model predicts. `attn` names the SDPA calls of the step (AttnTrace). CPU:
    perf_counter."""
    with torch.inference_mode():
        if dev.type != "cuda":
            out = []
            with AttnTrace() as tr:
                it.reset()
                it.step()
            for r in range(warmup + reps):
                it.reset()
                t = time.perf_counter()
                it.step()
                if r >= warmup:
                    out.append((time.perf_counter() - t) * 1e6)
            res = C.summarize(out, method="timer (cpu)")
            res["attn"] = tr.summary()
            res["host_us"] = res["us"]
            return res
        t0 = time.perf_counter()
        for _ in range(2):  # eager warm-up (also what capture needs first)
            it.reset()
            it.step()
        torch.cuda.synchronize(dev)
        if (time.perf_counter() - t0) / 2 > 0.05:  # long iterations: fewer repetitions
            reps, warmup = min(reps, 3), min(warmup, 1)
        g = None
        tr = AttnTrace()
        if graph:
            g = capture(it, dev, tr)
        else:
            torch.cuda.synchronize(dev)
            it.reset()
            with tr:
                it.step()
            torch.cuda.synchronize(dev)
        out, host = [], []
        for r in range(warmup + reps):
            torch.cuda.synchronize(dev)
            it.reset()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            h0 = time.perf_counter()
            if g is not None:
                g.replay()
            else:
                it.step()
            h1 = time.perf_counter()
            e.record()
            e.synchronize()
            if r >= warmup:
                out.append(s.elapsed_time(e) * 1e3)
                host.append((h1 - h0) * 1e6)
        del g
        res = C.summarize(out, method="graph" if graph else "eager")
        res["host_us"] = C.summarize(host)["us"]
        res["attn"] = tr.summary()
        return res


# ---- layer-wise pre-loading ------------------------------------------------------------------

class Preload:
    """Prefill of `new` tokens after `hist` history tokens whose KV lives in pinned host memory,
    one contiguous (hist, 2, Hk, D) block per layer. Variants (read_buffer r = layers already
    in HBM when the prefill starts, loaded during the previous job):
      preload  r < L: layers r..L-1 copied on a copy stream from t = 0, back to back; layer i
               (i >= r) waits for its copy's event before it starts
      sync     all L layers copied first, compute starts after the last copy (no overlap)
      resident every layer's history already in HBM (no copies)
    The host copies and the device buffers are the Manual iteration's history buffers."""

    def __init__(self, model, hist: int, new: int, dev: torch.device, smoke: bool):
        self.it = Manual(model, prefill=new, batch=0, context=0, dev=dev, hist=hist)
        self.L = self.it.L
        self.dev = dev
        self.hist = hist
        Hk, D = self.it.Hk, self.it.D
        self.host = [C.pinned_random((hist, 2, Hk, D), dev, smoke) for _ in range(self.L)]
        self.layer_bytes = hist * 2 * Hk * D * 2
        self.cs = torch.cuda.Stream(dev) if dev.type == "cuda" else None

    def _copy(self, i: int) -> None:
        self.it.hbuf[i][: self.hist].copy_(self.host[i], non_blocking=True)

    def _issue(self, variant: str, r: int) -> None:
        """The timed work on the current stream: the copies of layers outside the read buffer
        on the copy stream (an event per layer), the prefill waiting for each (preload) or for
        the last (sync), or no copies (resident). Capturable: the copy stream forks from the
        current stream and every copy's event is waited on by a later layer."""
        L, dev = self.L, self.dev
        cur = torch.cuda.current_stream(dev)
        ev: dict[int, torch.cuda.Event] = {}
        first = {"preload": r, "sync": 0}.get(variant, L)
        if first < L:
            self.cs.wait_stream(cur)
            with torch.cuda.stream(self.cs):
                for i in range(first, L):
                    self._copy(i)
                    ev[i] = torch.cuda.Event()
                    ev[i].record(self.cs)
        if variant == "sync":
            cur.wait_event(ev[L - 1])
            self.it.step()
        elif variant == "preload":
            self.it.step(wait=lambda i: cur.wait_event(ev[i]) if i in ev else None)
        else:
            self.it.step()

    def run_graph(self, variant: str, r: int, reps: int, warmup: int) -> dict:
        """As run(), the timed work replayed from a CUDA graph (copies, events and the layer
        loop captured together): the GPU's and the copy engine's time without the Python
        host's launches, which the eager rows include (docs/sim.md: the host's speed moves
        1.4-1.7x between calls). The read buffer is loaded before each replay, untimed."""
        pl = self

        class _Step:  # capture()'s iteration protocol
            def reset(self) -> None:
                pl.it.reset()

            def step(self) -> None:
                pl._issue(variant, r)

        dev = self.dev
        out = []
        with torch.inference_mode():
            g = capture(_Step(), dev)
            for rep in range(warmup + reps):
                if variant == "preload":
                    for i in range(r):
                        self._copy(i)
                torch.cuda.synchronize(dev)
                self.it.reset()
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                g.replay()
                e.record()
                e.synchronize()
                if rep >= warmup:
                    out.append(s.elapsed_time(e) * 1e3)
            del g
        return C.summarize(out, method="graph; copy stream")

    def run(self, variant: str, r: int, reps: int, warmup: int) -> dict:
        L, dev = self.L, self.dev
        out = []
        with torch.inference_mode():
            for rep in range(warmup + reps):
                if dev.type != "cuda":
                    t = time.perf_counter()
                    if variant != "resident":
                        for i in range(r if variant == "preload" else 0, L):
                            self._copy(i)
                    self.it.step()
                    if rep >= warmup:
                        out.append((time.perf_counter() - t) * 1e6)
                    continue
                cur = torch.cuda.current_stream(dev)
                # the read buffer: layers 0..r-1 loaded before the prefill starts (untimed)
                if variant == "preload":
                    for i in range(r):
                        self._copy(i)
                torch.cuda.synchronize(dev)
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record(cur)
                self._issue(variant, r)
                e.record(cur)
                e.synchronize()
                if rep >= warmup:
                    out.append(s.elapsed_time(e) * 1e3)
        return C.summarize(out, method="events, copy stream" if dev.type == "cuda" else "timer")


# ---- correctness of the manual loop ---------------------------------------------------------

def relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (NaN never passes: it compares false)."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def equivalence_checks(model, dev: torch.device, P: int = 24, B: int = 2, Cx: int = 48):
    """The manual loop computes what transformers computes: last-token logits of a prefill of
    P tokens, of one decode step of B sequences over transformers' own static cache (copied),
    of a prefill after Cx cached tokens (the manual history buffers given to transformers as a
    DynamicCache), and of the mixed batch of both against the two separately. Returns [(what, relerr)].
    The paths use different kernels (GEMMs at other m, masked vs lower-right attention), so in
    bf16 they differ by rounding, amplified through the layers of a random-weight model: 3-6%
    on the H200 at 32-40 layers (checks.csv of 2026-12-03), and on the CPU changing only the
    attention's rounding moves the logits by 1.7% at 8 layers and 3.1% at 40 (2048 wide). In
    float64 the four paths agree to 1e-15 (CPU): the logic is exact. The caller runs these
    checks in float32 (a bug shows as O(1), rounding as < 1e-4) and the bf16 ones for
    information (run_checks)."""
    out = []
    with torch.inference_mode():
        hp = HFPrefill(model, 1, P, dev)
        ref_p = model(input_ids=hp.ids, use_cache=False).logits[:, -1:]          # (1, 1, V)
        mp = Manual(model, P, 0, 0, dev)
        mp.ids = hp.ids.clone()
        got_p = mp.step()                                                         # (1, 1, V)
        out.append(("prefill: manual vs transformers", relerr(got_p, ref_p)))
        hd = HFDecode(model, B, Cx, dev)
        hd.reset()
        ref_d = model(input_ids=hd.ids, **hd.kw).logits                           # (B, 1, V)
        md = Manual(model, 0, B, Cx, dev)
        md.ids = hd.ids.view(1, B).clone()
        for i, (k, v) in enumerate(_cache_layers_kv(hd.cache)):
            md.kc[i][:, :, :Cx] = k[:, :, :Cx]
            md.vc[i][:, :, :Cx] = v[:, :, :Cx]
        got_d = md.step()                                                         # (1, B, V)
        out.append(("decode: manual vs transformers static cache",
                    relerr(got_d.reshape(B, -1), ref_d[:, -1].reshape(B, -1))))
        # prefill after cached history (the pre-loading path: token-major history buffers)
        mh = Manual(model, P, 0, 0, dev, hist=Cx)
        from transformers import DynamicCache  # noqa: PLC0415

        try:
            dc = DynamicCache(config=model.config)
        except TypeError:  # older signature
            dc = DynamicCache()
        for i in range(mh.L):
            dc.update(mh.hbuf[i][:Cx, 0].permute(1, 0, 2).unsqueeze(0).contiguous(),
                      mh.hbuf[i][:Cx, 1].permute(1, 0, 2).unsqueeze(0).contiguous(), i)
        ref_h = model(input_ids=mh.ids, position_ids=mh.pos, use_cache=True,
                      **{hd.cache_arg: dc}).logits[:, -1:]
        out.append(("prefill after history: manual vs transformers DynamicCache",
                    relerr(mh.step(), ref_h)))
        mm = Manual(model, P, B, Cx, dev)
        mm.ids = torch.cat([mp.ids, md.ids], dim=1)
        for i in range(mm.L):
            mm.kc[i].copy_(md.kc[i])
            mm.vc[i].copy_(md.vc[i])
        got_m = mm.step()                                                         # (1, 1 + B, V)
        out.append(("mixed: packed vs prefill and decode apart",
                    relerr(got_m, torch.cat([got_p, got_d], dim=1))))
    return out


CHECK_TOL = 1e-3  # float32 checks: rounding stays below 1e-4 at 40 layers; a wrong path is O(1)


def run_checks(model, dev: torch.device) -> list[tuple[str, float, str]]:
    """equivalence_checks in float32 (the model converted in place and back: bf16 -> fp32 ->
    bf16 is exact; 13B needs 52 GB for it), judged against CHECK_TOL, then in the model's own
    dtype for information. Returns [(what, relerr, verdict)], verdict ok | MISMATCH | info."""
    out = []
    dt = next(model.parameters()).dtype
    if dt != torch.float32:
        model.float()
        try:
            for what, e in equivalence_checks(model, dev):
                out.append((what + " (float32)", e, "ok" if e <= CHECK_TOL else "MISMATCH"))
        finally:
            model.to(dt)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    for what, e in equivalence_checks(model, dev):
        if dt == torch.float32:
            out.append((what + " (float32)", e, "ok" if e <= CHECK_TOL else "MISMATCH"))
        else:
            out.append((what + f" ({str(dt).replace('torch.', '')}, rounding)", e, "info"))
    return out


# ---- host-overhead probes (kvprof_ops.py, stage host) ----------------------------------------

def gpu_model(who: str, stem: str):
    """(device, model) of a GPU-only diagnosis script: the model file `stem` built with random
    bf16 weights on the first CUDA device; None (after saying so on stderr) without a GPU."""
    if not torch.cuda.is_available():
        print(f"{who}: no GPU", file=sys.stderr)
        return None
    dev = torch.device("cuda")
    return dev, build_model(C.load_models([stem], smoke=False)[0], dev)


def host_probe(model, path: str, dev: torch.device):
    """A callable running one iteration of `path` on a (tiny) model, for wall-clock timing of
    the launch overhead; reset work is done inside but is a handful of tiny kernels."""
    if path == "hf_prefill":
        it = HFPrefill(model, 1, 32, dev)
    elif path == "hf_decode":
        it = HFDecode(model, 1, 64, dev)
    else:
        it = Manual(model, prefill=16, batch=2, context=64, dev=dev)

    def fn():
        with torch.inference_mode():
            it.reset()
            it.step()

    return fn, path + (f" ({it.note})" if it.note else "")


def fmt_us(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "nan"
