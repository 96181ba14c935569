"""The recorder on every architecture traces/record/README.md names: tiny random checkpoints of
Llama, Mistral, Qwen2, Qwen3, OLMo-2, Phi-3 (fused qkv_proj), GPT-NeoX (fused query_key_value,
per-head layout, partial RoPE) and GPT-2 (fused c_attn, no RoPE), each with a small byte-level BPE
tokenizer, recorded by record.py as a user runs it (--text, --pre-rope, --verify). Attention
recomputed from the file must equal the model's own output, and the pre-RoPE K the model's key
projection (split out of the fused projection by the config's head layout) where no norm sits in
between. Gemma-2 and an architecture without an adapter are refused from config.json alone,
before any weight is loaded.

Skips when torch / transformers / tokenizers / h5py are absent (CI has no torch). On this
project's 2-core machine the whole file takes about a minute.
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "traces", "record"))

try:
    import h5py
    import numpy as np
    import tokenizers  # noqa: F401
    import torch
    import transformers  # noqa: F401
    HAVE = True
except ImportError:
    HAVE = False

VOCAB = 300
TEXT = ("The quick brown fox jumps over the lazy dog. Attention reads keys and values of every "
        "earlier token; sparse attention reads only the blocks that matter. ") * 40


def tiny_tokenizer(folder, text_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast
    bpe = ByteLevelBPETokenizer()
    bpe.train([text_path], vocab_size=VOCAB, min_frequency=1, show_progress=False)
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer).save_pretrained(folder)


def tiny_config(arch):
    import transformers as tf
    common = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, pad_token_id=0)
    gqa = dict(common, num_key_value_heads=2, intermediate_size=96)
    if arch == "llama":
        return tf.LlamaConfig(head_dim=16, rope_theta=500.0, **gqa)
    if arch == "mistral":
        return tf.MistralConfig(head_dim=16, sliding_window=None, rope_theta=500.0, **gqa)
    if arch == "qwen2":
        return tf.Qwen2Config(rope_theta=500.0, **gqa)
    if arch == "qwen3":
        return tf.Qwen3Config(head_dim=16, rope_theta=500.0, **gqa)
    if arch == "olmo2":
        return tf.Olmo2Config(rope_theta=500.0, **gqa)
    if arch == "phi3":
        return tf.Phi3Config(rope_theta=500.0, **gqa)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(intermediate_size=96, **common)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                             bos_token_id=1, eos_token_id=2)
    if arch == "gemma2":
        return tf.Gemma2Config(head_dim=16, **gqa)
    if arch == "falcon":
        return tf.FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=4)
    raise ValueError(arch)


def tiny_model(arch, folder, text_path, weights=True):
    """A random checkpoint of `arch` in folder (config only when weights is False)."""
    from transformers import AutoModelForCausalLM
    cfg = tiny_config(arch)
    if not weights:
        cfg.save_pretrained(folder)
        return folder
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    # Larger-than-default query/key weights so that attention is far from uniform.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(("q_proj.weight", "k_proj.weight", "qkv_proj.weight",
                           "query_key_value.weight", "c_attn.weight")):
                p.mul_(8.0)
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer(folder, text_path)
    return folder


def run_record(argv):
    """record.main() in this process (torch is imported once): (exit code, stderr)."""
    import record
    err = io.StringIO()
    code = 0
    old = sys.argv
    sys.argv = ["record.py"] + argv
    try:
        with contextlib.redirect_stderr(err):
            record.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, err.getvalue()


@unittest.skipUnless(HAVE, "torch, transformers, tokenizers, h5py and numpy are needed")
class TestRecordArchitectures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.text = os.path.join(cls.tmp.name, "text.txt")
        with open(cls.text, "w") as f:
            f.write(TEXT)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def record(self, arch):
        folder = tiny_model(arch, os.path.join(self.tmp.name, arch), self.text)
        out = os.path.join(self.tmp.name, arch + ".h5")
        vj = os.path.join(self.tmp.name, arch + ".json")
        code, err = run_record(["--model", folder, "--text", "prose=" + self.text,
                                "--n-tokens", "160", "--layers", "all", "--n-positions", "6",
                                "--dtype", "fp32", "--pre-rope", "--verify", "--verify-json", vj,
                                "--out", out, "--device", "cpu"])
        self.assertEqual(code, 0, err)
        with open(vj) as f:
            v = json.load(f)["max_rel_err"]
        if os.environ.get("KVLAB_RECORD_VERBOSE"):
            print("\n  %s: %s" % (arch, {l: {k: "%.1e" % x for k, x in e.items()
                                           if k != "q_scale_folded"}
                                       for l, e in v["prose-0"].items()}), file=sys.stderr)
        layers = v["prose-0"]
        self.assertEqual(sorted(layers), ["0", "1"], arch)
        for l, e in layers.items():
            self.assertLess(e["captured_fp32"], 1e-4, (arch, l, e))
            self.assertLess(e["as_stored_fp32"], 1e-4, (arch, l, e))
        from qkvh5 import read_layer
        with h5py.File(out, "r") as h:
            theta = float(h.attrs["rope_theta"])
        r = read_layer(out, 0, 1)
        return layers, theta, r["K"], r["K_pre_rope"]

    def check_projection(self, arch, layers):
        for l, e in layers.items():
            self.assertIn("k_pre_rope_vs_projection", e, (arch, l))
            self.assertLess(e["k_pre_rope_vs_projection"], 1e-4, (arch, l, e))

    def test_separate_projections(self):
        for arch in ("llama", "mistral", "qwen2"):
            with self.subTest(arch=arch):
                layers, theta, K, Kp = self.record(arch)
                self.assertEqual(theta, 500.0)
                self.check_projection(arch, layers)
                self.assertGreater(np.max(np.abs(K[1:] - Kp[1:])), 1e-3)  # RoPE rotated K

    def test_key_norm_families(self):
        # OLMo-2 and Qwen3 normalise keys after the projection: K before RoPE is not the
        # projection's output, so that comparison is (rightly) absent.
        for arch in ("olmo2", "qwen3"):
            with self.subTest(arch=arch):
                layers, theta, K, Kp = self.record(arch)
                for e in layers.values():
                    self.assertNotIn("k_pre_rope_vs_projection", e)
                self.assertLess(np.max(np.abs(K[0] - Kp[0])), 1e-5)  # position 0: no rotation

    def test_fused_projections(self):
        for arch in ("phi3", "gpt_neox", "gpt2"):
            with self.subTest(arch=arch):
                layers, theta, K, Kp = self.record(arch)
                self.check_projection(arch, layers)
                if arch == "gpt2":
                    self.assertEqual(theta, 0.0)  # the schema's "no RoPE"
                    self.assertTrue(np.array_equal(K, Kp))
                else:
                    self.assertGreater(theta, 0.0)
                if arch == "gpt_neox":
                    # partial rotary (a quarter of each head's 16 dims): the rest is untouched
                    self.assertTrue(np.array_equal(K[:, :, 4:], Kp[:, :, 4:]))
                    self.assertGreater(np.max(np.abs(K[1:, :, :4] - Kp[1:, :, :4])), 1e-3)

    def test_refused_before_loading_weights(self):
        for arch, want in (("gemma2", "soft-capping"), ("falcon", "not supported")):
            with self.subTest(arch=arch):
                folder = tiny_model(arch, os.path.join(self.tmp.name, "cfg-" + arch), self.text,
                                    weights=False)  # no weights: loading them would fail
                code, err = run_record(["--model", folder, "--text", "prose=" + self.text,
                                        "--n-tokens", "160", "--out",
                                        os.path.join(self.tmp.name, arch + ".h5")])
                self.assertNotEqual(code, 0)
                self.assertIn("model_type %s" % arch, err)
                self.assertIn(want, err)
                self.assertNotIn("Traceback", err)
                self.assertFalse(os.path.exists(os.path.join(self.tmp.name, arch + ".h5")))

    def test_split_layouts_by_hand(self):
        """The fused layouts on a projection output whose values say where they come from."""
        from hfattn import key_projection
        import types
        H, KV, D, T = 4, 2, 3, 2
        for arch, kv in (("phi3", KV), ("gpt_neox", H), ("gpt2", H)):
            cfg = tiny_config(arch)
            model = types.SimpleNamespace(config=cfg)
            cfg.num_attention_heads, cfg.hidden_size = H, H * D
            if hasattr(cfg, "num_key_value_heads"):
                cfg.num_key_value_heads = kv
            if hasattr(cfg, "head_dim"):
                cfg.head_dim = D
            name = {"phi3": "qkv_proj", "gpt_neox": "query_key_value", "gpt2": "c_attn"}[arch]
            module = types.SimpleNamespace(**{name: "the projection"})
            proj, split = key_projection(model, module)
            self.assertEqual(proj, "the projection")
            width = (H + 2 * kv) * D
            o = torch.arange(T * width).reshape(T, width)
            k = split(o)
            self.assertEqual(tuple(k.shape), (T, kv, D), arch)
            if arch == "gpt_neox":  # per head: [q | k | v], D each
                want = [[[t * width + h * 3 * D + D + d for d in range(D)] for h in range(H)]
                        for t in range(T)]
            else:  # [q heads | k heads | v heads]
                want = [[[t * width + H * D + h * D + d for d in range(D)] for h in range(kv)]
                        for t in range(T)]
            self.assertEqual(k.tolist(), want, arch)


if __name__ == "__main__":
    unittest.main()
