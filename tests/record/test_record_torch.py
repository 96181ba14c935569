"""Recorder and quality harness on tiny random transformers models (Llama and Qwen2 families).

Skips when torch / transformers / h5py are absent (CI has no torch). Run with the pipeline's venv:
  .venv/bin/python -m unittest discover -s tests/record -v
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "traces", "record"))

try:
    import h5py  # noqa: F401
    import numpy as np
    import torch
    import transformers  # noqa: F401
    HAVE = True
except ImportError:
    HAVE = False


def tiny_model(family, folder):
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rope_theta=500.0, tie_word_embeddings=False)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(head_dim=16, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    # Larger-than-default weights so that attention is far from uniform.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(8.0)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@unittest.skipUnless(HAVE, "torch, transformers, h5py and numpy are needed")
class TestRecordTorch(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def check_family(self, family):
        from hfattn import load_model, model_shape
        from qkvh5 import QKVWriter, read_layer
        from record import attention_reference, decode_positions, max_rel_err, run_sequence
        path = tiny_model(family, os.path.join(self.tmp.name, family))
        model, _ = load_model(path)
        shape = model_shape(model)
        self.assertEqual((shape["n_heads"], shape["n_kv_heads"], shape["head_dim"]), (4, 2, 16))
        self.assertEqual(shape["rope_theta"], 500.0)
        T = 200
        tokens = np.random.default_rng(1).integers(0, 97, T)
        pos = decode_positions(T, 12)
        self.assertEqual(pos[0], T // 2)
        self.assertEqual(pos[-1], T - 1)
        # Pre-RoPE K as the model computes it: k_proj output (Llama and Qwen2 have no k norm).
        kproj = {}
        hooks = [model.model.layers[l].self_attn.k_proj.register_forward_hook(
            lambda m, a, o, l=l: kproj.__setitem__(l, o[0].reshape(T, 2, 16).detach().numpy()))
            for l in range(3)]
        cap = run_sequence(model, tokens, [0, 2], pos, want_pre_rope=True)
        for h in hooks:
            h.remove()
        out_file = os.path.join(self.tmp.name, family + ".h5")
        with QKVWriter(out_file, family, 3, 4, 2, 16, 500.0) as w:
            i = w.add_seq("s", "synthetic", T, tokens)
            for l in (0, 2):
                c = cap[l]
                self.assertEqual(c["Q"].shape, (len(pos), 4, 16))
                self.assertEqual(c["K"].shape, (T, 2, 16))
                # Attention recomputed from the recorded tensors reproduces the model's o_proj
                # input: post-RoPE Q/K, GQA mapping h -> h // 2, key p included.
                ref = attention_reference(c["Q"], c["K"], c["V"], pos, 4)
                self.assertLess(max_rel_err(ref, c["out"]), 1e-4)
                # Without RoPE on K the recomputation must fail: the check has teeth.
                bad = attention_reference(c["Q"], c["K_pre_rope"], c["V"], pos, 4)
                self.assertGreater(max_rel_err(bad, c["out"]), 1e-2)
                self.assertLess(np.max(np.abs(c["K_pre_rope"] - kproj[l])), 1e-4)
                # Position 0 is unrotated: K equals pre-RoPE K there.
                self.assertLess(np.max(np.abs(c["K"][0] - c["K_pre_rope"][0])), 1e-5)
                w.add_layer(i, l, c["K"], c["V"], c["Q"], pos, "fp32", c["K_pre_rope"])
        r = read_layer(out_file, 0, 2)
        self.assertTrue(np.array_equal(r["K"], cap[2]["K"]))
        self.assertTrue(np.array_equal(r["positions"], pos))

    def test_llama(self):
        self.check_family("llama")

    def test_qwen2(self):
        self.check_family("qwen2")

    def test_quality_harness_dense_and_full_psa_equal_the_model(self):
        import kvattn
        if not os.path.exists(os.environ.get("KVLAB_ATTN_LIB", kvattn.default_lib_path())):
            self.skipTest("build/lib/libkvlab_attn.so is not built")
        from hfattn import load_model
        from quality import nll_of, run_method
        model, _ = load_model(tiny_model("llama", os.path.join(self.tmp.name, "q")))
        lib = kvattn.Lib()
        tokens = np.random.default_rng(2).integers(0, 97, 160)
        ref = nll_of(model, tokens, 100, 159)
        for spec in ("dense", "psa:1"):
            nll, st = run_method(model, lib, spec, tokens, 100, 0)
            self.assertLess(float(np.max(np.abs(nll - ref))), 1e-4, spec)
            self.assertEqual(st["tokens_read"], st["keys"], spec)
            self.assertEqual(st["calls"], 3 * 59)
        # A tiny top-k budget must change the loss (the hook really replaces attention).
        nll, st = run_method(model, lib, "topk:16", tokens, 100, 0)
        self.assertGreater(float(np.max(np.abs(nll - ref))), 1e-3)
        self.assertLess(st["tokens_read"], st["keys"] / 4)


if __name__ == "__main__":
    unittest.main()
