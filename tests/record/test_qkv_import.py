"""traces/record/qkv_import.py: Q/K/V recorded elsewhere into the project's schema.

The reference is attention computed in numpy directly from the *input* arrays (in their own
layout and scale); the imported file must give the same attention output, so a layout or scale
mistake in the importer fails the test. Skips without numpy and h5py.
"""
import contextlib
import io
import math
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


def attention(q, K, V, pos, scale):
    """q [H, D], K/V [T, G, D]; keys 0..pos; returns [H, D] in float64."""
    H, D = q.shape
    G = K.shape[1]
    out = np.zeros((H, D))
    for h in range(H):
        g = h // (H // G)
        s = K[:pos + 1, g].astype(np.float64) @ q[h].astype(np.float64) * scale
        p = np.exp(s - s.max())
        p /= p.sum()
        out[h] = p @ V[:pos + 1, g].astype(np.float64)
    return out


def run_import(argv):
    import qkv_import
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = qkv_import.main(argv)
    return rc, err.getvalue()


@unittest.skipUnless(HAVE, "numpy and h5py are needed")
class TestImport(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.rng = np.random.default_rng(11)

    def tearDown(self):
        self.tmp.cleanup()

    def tensors(self, T=48, P=6, H=4, G=2, D=16):
        K = self.rng.standard_normal((T, G, D)).astype(np.float32)
        V = self.rng.standard_normal((T, G, D)).astype(np.float32)
        Q = self.rng.standard_normal((P, H, D)).astype(np.float32)
        pos = np.sort(self.rng.choice(np.arange(T // 2, T), P, replace=False))
        return K, V, Q, pos

    def check(self, out, originals, scale):
        from qkvh5 import read_layer
        for L, (K, V, Q, pos) in originals.items():
            r = read_layer(out, 0, L)
            np.testing.assert_array_equal(r["positions"], pos)
            for i, p in enumerate(pos):
                ref = attention(Q[i], K, V, int(p), scale)
                got = attention(r["Q"][i], r["K"], r["V"], int(p), 1 / math.sqrt(Q.shape[2]))
                self.assertLess(np.linalg.norm(got - ref) / np.linalg.norm(ref), 5e-3)

    def test_h5_default_convention_fp32(self):
        path, out = os.path.join(self.d, "in.h5"), os.path.join(self.d, "out.h5")
        orig = {}
        with h5py.File(path, "w") as f:
            f.attrs["num_attention_heads"] = 4
            f.attrs["num_key_value_heads"] = 2
            for L in (0, 3):
                K, V, Q, pos = self.tensors()
                orig[L] = (K, V, Q, pos)
                f["layer_%d/q" % L] = Q
                f["layer_%d/k" % L] = K
                f["layer_%d/v" % L] = V
                f["layer_%d/positions" % L] = pos
        rc, msg = run_import([path, "--out", out, "--dtype", "fp32", "--n-layers", "4"])
        self.assertEqual(rc, 0, msg)
        self.check(out, orig, 1 / math.sqrt(16))
        with h5py.File(out, "r") as f:
            self.assertEqual(sorted(f["seq_0"].keys()), ["layer_00", "layer_03"])
            self.assertEqual(int(f.attrs["n_kv_heads"]), 2)

    def test_npz_head_major_layout_and_scale(self):
        path, out = os.path.join(self.d, "in.npz"), os.path.join(self.d, "out.h5")
        K, V, Q, pos = self.tensors()
        # head-major arrays [heads, n, dim] as many frameworks keep them, and a model whose
        # attention scale is 0.5 instead of 1/sqrt(16) = 0.25
        np.savez(path, **{"q_0": Q.transpose(1, 0, 2), "k_0": K.transpose(1, 0, 2),
                          "v_0": V.transpose(1, 0, 2), "positions": pos})
        rc, msg = run_import([path, "--out", out, "--layout", "hnd", "--scale", "0.5",
                              "--dtype", "fp32"])
        self.assertEqual(rc, 0, msg)
        self.check(out, {0: (K, V, Q, pos)}, 0.5)

    def test_batch_axis_makes_sequences_and_last_positions(self):
        path, out = os.path.join(self.d, "in.h5"), os.path.join(self.d, "out.h5")
        T, P = 32, 4
        K = self.rng.standard_normal((3, 2, T, 8)).astype(np.float32)
        V = self.rng.standard_normal((3, 2, T, 8)).astype(np.float32)
        Q = self.rng.standard_normal((3, 4, P, 8)).astype(np.float32)
        with h5py.File(path, "w") as f:
            f["layers/0/q"], f["layers/0/k"], f["layers/0/v"] = Q, K, V
        rc, msg = run_import([path, "--out", out, "--layout", "bhnd", "--dtype", "fp32"])
        self.assertEqual(rc, 0, msg)
        from qkvh5 import read_layer
        for b in range(3):
            r = read_layer(out, b, 0)
            np.testing.assert_array_equal(r["positions"], np.arange(T - P, T))
            np.testing.assert_allclose(r["K"], K[b].transpose(1, 0, 2))

    def test_errors_name_file_and_dataset(self):
        path, out = os.path.join(self.d, "bad.h5"), os.path.join(self.d, "out.h5")
        K, V, Q, pos = self.tensors()
        with h5py.File(path, "w") as f:
            f["layer_0/q"], f["layer_0/k"], f["layer_0/v"] = Q, K, V[:, :, :8]
        rc, msg = run_import([path, "--out", out])
        self.assertEqual(rc, 1)
        self.assertIn("bad.h5", msg)
        self.assertIn("layer_0/v", msg)
        self.assertFalse(os.path.exists(out))
        # heads that do not divide
        with h5py.File(path, "w") as f:
            f["layer_0/q"] = self.rng.standard_normal((6, 3, 16)).astype(np.float32)
            f["layer_0/k"], f["layer_0/v"] = K, V
        rc, msg = run_import([path, "--out", out])
        self.assertEqual(rc, 1)
        self.assertIn("multiple", msg)
        # NaN is refused by the writer, with the layer named
        Qn = Q.copy()
        Qn[1, 2, 3] = np.nan
        with h5py.File(path, "w") as f:
            f["layer_0/q"], f["layer_0/k"], f["layer_0/v"] = Qn, K, V
        rc, msg = run_import([path, "--out", out])
        self.assertEqual(rc, 1)
        self.assertIn("NaN", msg)
        # no arrays at all
        with h5py.File(path, "w") as f:
            f["something"] = np.zeros(3)
        rc, msg = run_import([path, "--out", out])
        self.assertEqual(rc, 1)
        self.assertIn("no Q arrays found", msg)
        # a missing file
        rc, msg = run_import([os.path.join(self.d, "nope.h5"), "--out", out])
        self.assertEqual(rc, 1)
        self.assertIn("no such file", msg)

    def test_existing_output_survives_a_failed_import(self):
        path, out = os.path.join(self.d, "bad.npz"), os.path.join(self.d, "out.h5")
        with open(out, "wb") as f:
            f.write(b"precious")
        np.savez(path, q_0=np.zeros((2, 2, 4)))
        rc, msg = run_import([path, "--out", out])
        self.assertEqual(rc, 1)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"precious")


if __name__ == "__main__":
    unittest.main()
