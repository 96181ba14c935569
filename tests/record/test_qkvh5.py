"""Python side of the recording pipeline: the h5py writer of the Q/K/V schema (kernels/qkv.h).

Run: .venv/bin/python -m unittest discover -s tests/record -v
Skips when numpy or h5py is absent (CI has neither torch nor, necessarily, h5py).
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "traces", "record"))

try:
    import h5py
    import numpy as np
    HAVE = True
except ImportError:
    HAVE = False


@unittest.skipUnless(HAVE, "numpy and h5py are needed")
class TestWriter(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "t.h5")

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, dtype, pre=False, T=40, P=5):
        from qkvh5 import QKVWriter
        rng = np.random.default_rng(3)
        K = rng.standard_normal((T, 2, 8)).astype(np.float32)
        V = rng.standard_normal((T, 2, 8)).astype(np.float32)
        Q = rng.standard_normal((P, 4, 8)).astype(np.float32)
        pos = np.arange(T - P, T)
        with QKVWriter(self.path, "m", 3, 4, 2, 8, 10000.0, tokenizer="tok") as w:
            i = w.add_seq("s", "code", T, tokens=np.arange(T), source="src")
            w.add_layer(i, 2, K, V, Q, pos, dtype, K_pre_rope=K * 2 if pre else None)
        return K, V, Q, pos

    def test_root_and_group_attributes_follow_the_schema(self):
        self.write("fp16")
        with h5py.File(self.path, "r") as f:
            a = f.attrs
            self.assertEqual(a["format"], "kvlab-qkv")
            self.assertEqual(int(a["schema_version"]), 1)
            for k, v in (("n_layers", 3), ("n_heads", 4), ("n_kv_heads", 2), ("head_dim", 8),
                         ("k_post_rope", 1)):
                self.assertEqual(int(a[k]), v)
            self.assertEqual(float(a["rope_theta"]), 10000.0)
            g = f["seq_0"]
            self.assertEqual(g.attrs["text_kind"], "code")
            self.assertEqual(int(g.attrs["n_tokens"]), 40)
            self.assertEqual(int(g.attrs["index"]), 0)
            self.assertEqual(g["tokens"].dtype, np.int32)
            lg = g["layer_02"]
            self.assertEqual(int(lg.attrs["layer"]), 2)
            self.assertEqual(lg["K"].dtype, np.float16)
            self.assertEqual(lg["positions"].dtype, np.int64)
            self.assertEqual(lg["Q"].shape, (5, 4, 8))

    def test_fp16_round_trip_is_within_half_precision(self):
        from qkvh5 import read_layer
        K, V, Q, pos = self.write("fp16", pre=True)
        r = read_layer(self.path, 0, 2)
        # fp16 has an 11-bit significand: relative rounding error <= 2^-11.
        for a, b in ((r["K"], K), (r["V"], V), (r["Q"], Q), (r["K_pre_rope"], 2 * K)):
            self.assertLessEqual(float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3))),
                                 2.0 ** -11 + 1e-6)
        self.assertTrue(np.array_equal(r["positions"], pos))

    def test_bf16_bits_and_attribute(self):
        from qkvh5 import bf16_bits_to_f32, f32_to_bf16_bits
        # Exact values: 1.0 is 0x3F80; -2.0 is 0xC000; 1 + 2^-8 is halfway between two bf16
        # values (1.0 and 1 + 2^-7) and rounds to even (1.0); 1 + 3*2^-8 rounds up to 1 + 2^-6.
        x = np.array([1.0, -2.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], dtype=np.float32)
        self.assertEqual(list(f32_to_bf16_bits(x)), [0x3F80, 0xC000, 0x3F80, 0x3F82])
        self.assertEqual(list(bf16_bits_to_f32(np.array([0x3F80, 0xC000], np.uint16))),
                         [1.0, -2.0])
        self.write("bf16")
        with h5py.File(self.path, "r") as f:
            d = f["seq_0/layer_02/K"]
            self.assertEqual(d.dtype, np.uint16)
            self.assertEqual(d.attrs["dtype"], "bf16")

    def test_bad_input_is_rejected(self):
        from qkvh5 import QKVWriter
        T = 10
        K = np.zeros((T, 2, 8), np.float32)
        Q = np.zeros((2, 4, 8), np.float32)
        with QKVWriter(self.path, "m", 3, 4, 2, 8, 1e4) as w:
            i = w.add_seq("s", "prose", T)
            with self.assertRaises(ValueError):      # positions not increasing
                w.add_layer(i, 0, K, K, Q, [5, 5])
            with self.assertRaises(ValueError):      # position out of range
                w.add_layer(i, 0, K, K, Q, [5, T])
            with self.assertRaises(ValueError):      # layer out of range
                w.add_layer(i, 3, K, K, Q, [1, 2])
            bad = K.copy()
            bad[1, 1, 1] = np.nan
            with self.assertRaises(ValueError):      # NaN
                w.add_layer(i, 0, bad, K, Q, [1, 2])
            with self.assertRaises(ValueError):      # beyond fp16
                w.add_layer(i, 0, K + 1e5, K, Q, [1, 2])
            with self.assertRaises(ValueError):      # wrong shape
                w.add_layer(i, 0, K[:, :1], K, Q, [1, 2])

    def test_same_tensors_give_the_same_bytes(self):
        self.write("fp16")
        with open(self.path, "rb") as f:
            a = f.read()
        self.write("fp16")
        with open(self.path, "rb") as f:
            b = f.read()
        self.assertEqual(a, b)


if __name__ == "__main__":
    unittest.main()
