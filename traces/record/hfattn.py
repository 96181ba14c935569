"""Hooks into a transformers causal LM's attention, shared by the recorder and the quality harness.

The model is loaded with attn_implementation="sdpa"; its attention modules call
ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, mask, scaling=..., ...) with
  query [batch, n_heads, T, head_dim]   after RoPE
  key   [batch, n_kv_heads, T, head_dim] after RoPE (before the GQA repeat)
  value [batch, n_kv_heads, T, head_dim]
and get back (out [batch, T, n_heads, head_dim], weights). `patched_sdpa(fn)` swaps that entry
for `fn(orig, module, query, key, value, mask, **kw)` for the duration of a with-block.

Architectures. ARCHITECTURES says, per transformers model_type, where a family keeps what the
recorder needs: its Q/K/V projection (three, or one fused projection and how its output is laid
out), its output projection (whose input is the attention output that --verify compares with),
whether a norm sits between the key projection and RoPE, and whether it has RoPE at all.
`check_config` runs on config.json alone, before any weight is loaded, and refuses every other
architecture, and every configuration the Q/K/V schema cannot express (attention logit
soft-capping, a sliding window shorter than the recording), with a message naming the
architecture and what is missing.
"""
import contextlib

import torch

# model_type -> layout. proj: "separate" (q_proj, k_proj, v_proj) or (attribute, layout) of a
# fused projection: "qkv" = [q heads | k heads | v heads] along the last dimension (GPT-2's c_attn,
# Phi-3's qkv_proj), "per_head" = [q | k | v] within each head (GPT-NeoX's query_key_value).
# out: the output projection. k_norm: a norm between the key projection and RoPE (OLMo-2, Qwen3),
# so the projection's output is not the pre-RoPE key. rope: False for learned absolute positions.
ARCHITECTURES = {
    "llama": {"proj": "separate", "out": "o_proj"},
    "mistral": {"proj": "separate", "out": "o_proj"},
    "qwen2": {"proj": "separate", "out": "o_proj"},
    "qwen3": {"proj": "separate", "out": "o_proj", "k_norm": True},
    "olmo2": {"proj": "separate", "out": "o_proj", "k_norm": True},
    "phi3": {"proj": ("qkv_proj", "qkv"), "out": "o_proj"},
    "gpt_neox": {"proj": ("query_key_value", "per_head"), "out": "dense"},
    "gpt2": {"proj": ("c_attn", "qkv"), "out": "c_proj", "rope": False},
}

# Families that are known and refused, with what the schema lacks.
REFUSED = {
    "gemma2": "attention logit soft-capping (attn_logit_softcapping), which the Q/K/V schema "
              "cannot express (recomputed attention would not be the model's)",
    "gemma3": "sliding-window layers interleaved with global ones and QK norms with soft-capping "
              "in some variants; the Q/K/V schema assumes full causal attention in every layer",
    "cohere2": "sliding-window layers interleaved with global ones; the Q/K/V schema assumes full "
               "causal attention in every layer",
}


def adapter(cfg):
    """The ARCHITECTURES entry of a (text) config, or ValueError naming what is missing."""
    mt = getattr(cfg, "model_type", None) or "(none)"
    arch = ",".join(getattr(cfg, "architectures", None) or []) or mt
    if mt in REFUSED:
        raise ValueError("%s (model_type %s) is not supported: it uses %s" % (arch, mt, REFUSED[mt]))
    if mt not in ARCHITECTURES:
        raise ValueError("%s (model_type %s) is not supported: the recorder does not know where this "
                         "architecture keeps its query/key/value projections, its attention output "
                         "projection and its position encoding (supported: %s; add an entry to "
                         "ARCHITECTURES in traces/record/hfattn.py after checking the family with "
                         "tests/record/test_record_torch.py)" % (arch, mt, ", ".join(sorted(ARCHITECTURES))))
    a = {"k_norm": False, "rope": True}
    a.update(ARCHITECTURES[mt])
    return a


def check_config(path, n_tokens):
    """Reads config.json only (no weights) and refuses what the recorder cannot record."""
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(path)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    adapter(cfg)
    check_attention_config(cfg, n_tokens)
    return cfg


def check_attention_config(cfg, n_tokens):
    mt = getattr(cfg, "model_type", "?")
    for key in ("attn_logit_softcapping",):
        if getattr(cfg, key, None):
            raise ValueError("model_type %s uses %s; the Q/K/V schema has no soft-capping" % (mt, key))
    sw = getattr(cfg, "sliding_window", None)
    if sw and getattr(cfg, "use_sliding_window", True) and sw < n_tokens:
        raise ValueError("model_type %s uses a sliding window of %d < %d tokens; the schema assumes "
                         "full causal attention" % (mt, sw, n_tokens))


def load_model(path, dtype="fp32", device="cpu"):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    td = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    # transformers 4.56 renamed torch_dtype to dtype.
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **{key: td})
    model.to(device).eval()
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - a model without tokenizer files still records token ids
        tok = None
    return model, tok


def text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def model_adapter(model):
    return adapter(text_config(model))


def attention_modules(model):
    """[(layer_index, module)] of the attention modules: they own a layer_idx and the
    architecture's query/key/value projection(s)."""
    a = model_adapter(model)
    need = ("q_proj", "k_proj", "v_proj") if a["proj"] == "separate" else (a["proj"][0],)
    out = []
    for _, m in model.named_modules():
        if hasattr(m, "layer_idx") and all(hasattr(m, n) for n in need):
            out.append((int(m.layer_idx), m))
    out.sort(key=lambda x: x[0])
    return out


def key_projection(model, module):
    """(submodule, split) where split(output [T, out_features]) -> K [T, n_kv_heads, head_dim]
    as the projection computes it, before any norm or RoPE: the key projection itself, or the
    fused projection split by the config's head layout."""
    a = model_adapter(model)
    s = model_shape(model)
    H, KV, D = s["n_heads"], s["n_kv_heads"], s["head_dim"]
    if a["proj"] == "separate":
        return module.k_proj, lambda o: o.reshape(o.shape[0], KV, D)
    name, layout = a["proj"]
    if layout == "qkv":
        return getattr(module, name), lambda o: o[:, H * D:(H + KV) * D].reshape(o.shape[0], KV, D)
    if layout == "per_head":  # GPT-NeoX: view(T, heads, 3 * D), then q, k, v = chunk(3, dim=-1)
        return getattr(module, name), lambda o: o.reshape(o.shape[0], H, 3 * D)[:, :, D:2 * D]
    raise ValueError("unknown projection layout %r" % (layout,))


def output_projection(model, module):
    return getattr(module, model_adapter(model)["out"], None)


def model_shape(model):
    cfg = text_config(model)
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        theta = rp.get("rope_theta", None) or getattr(cfg, "rotary_emb_base", None) or 10000.0
    if not adapter(cfg)["rope"]:
        theta = 0.0  # the schema's "no RoPE"
    return {"n_layers": cfg.num_hidden_layers, "n_heads": n_heads, "n_kv_heads": n_kv,
            "head_dim": head_dim, "rope_theta": float(theta)}


def check_model(model, n_tokens):
    """Refuses a loaded model the recorder cannot record (check_config before loading)."""
    cfg = text_config(model)
    adapter(cfg)
    check_attention_config(cfg, n_tokens)


@contextlib.contextmanager
def patched_sdpa(fn):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    orig = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def wrapper(module, query, key, value, attention_mask, *args, **kw):
        return fn(orig, module, query, key, value, attention_mask, *args, **kw)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = wrapper
    try:
        yield
    finally:
        ALL_ATTENTION_FUNCTIONS["sdpa"] = orig


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def unrope(k, cos, sin):
    """Inverse of transformers' apply_rotary_pos_emb (k' = k cos + rotate_half(k) sin) for
    k [T, n_kv_heads, D], cos/sin [T, R]: rotating by the opposite angle. R < D is a partial
    rotary embedding (GPT-NeoX, Phi partial_rotary_factor): only the first R dimensions were
    rotated, the rest pass through."""
    R = cos.shape[-1]
    c, s = cos[:, None, :], sin[:, None, :]
    rot = k[..., :R]
    back = rot * c - rotate_half(rot) * s
    return back if R == k.shape[-1] else torch.cat((back, k[..., R:]), dim=-1)
