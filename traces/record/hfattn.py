"""Hooks into a transformers causal LM's attention, shared by the recorder and the quality harness.

The model is loaded with attn_implementation="sdpa"; its attention modules call
ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, mask, scaling=..., ...) with
  query [batch, n_heads, T, head_dim]   after RoPE
  key   [batch, n_kv_heads, T, head_dim] after RoPE (before the GQA repeat)
  value [batch, n_kv_heads, T, head_dim]
and get back (out [batch, T, n_heads, head_dim], weights). `patched_sdpa(fn)` swaps that entry
for `fn(orig, module, query, key, value, mask, **kw)` for the duration of a with-block. This works
for every model family that dispatches through the interface (Llama, Mistral, Qwen2/3, ...);
models that add soft-capping or sliding windows are refused by `check_model`.
"""
import contextlib

import torch


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


def attention_modules(model):
    """[(layer_index, module)] of the modules that own a layer_idx and q/k projections."""
    out = []
    for _, m in model.named_modules():
        if hasattr(m, "layer_idx") and (hasattr(m, "q_proj") or hasattr(m, "qkv_proj")):
            out.append((int(m.layer_idx), m))
    out.sort(key=lambda x: x[0])
    return out


def model_shape(model):
    cfg = text_config(model)
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        theta = rp.get("rope_theta", 10000.0)
    return {"n_layers": cfg.num_hidden_layers, "n_heads": n_heads, "n_kv_heads": n_kv,
            "head_dim": head_dim, "rope_theta": float(theta)}


def check_model(model, n_tokens):
    """Refuses features the Q/K/V schema cannot express."""
    cfg = text_config(model)
    for key in ("attn_logit_softcapping",):
        if getattr(cfg, key, None):
            raise ValueError("model uses %s; the Q/K/V schema has no soft-capping" % key)
    sw = getattr(cfg, "sliding_window", None)
    if sw and getattr(cfg, "use_sliding_window", True) and sw < n_tokens:
        raise ValueError("model uses a sliding window of %d < %d tokens; the schema assumes "
                         "full causal attention" % (sw, n_tokens))


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
    k [T, n_kv_heads, D], cos/sin [T, D]: rotating by the opposite angle."""
    c, s = cos[:, None, :], sin[:, None, :]
    return k * c - rotate_half(k) * s
