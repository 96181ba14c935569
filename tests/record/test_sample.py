"""The committed sample traces/data/qkv_sample.h5 (CPU-trained stand-in): schema and real-data
properties. Skips when numpy / h5py are absent or the sample is missing.

The real-data check: in a trained decoder, the number of keys needed to cover 95% of a query's
softmax mass differs a lot between layers and heads (research notes: the first layer of an 8K model
needs ~35% of the context, sink/local layers < 2%). With random Gaussian Q/K of the same shapes
(unit variance, as in an untrained model) every layer needs about the same, large share: the
control below computes that on the same shapes and shows that the test can fail.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "traces", "record"))
SAMPLE = os.path.join(ROOT, "traces", "data", "qkv_sample.h5")

try:
    import h5py
    import numpy as np
    HAVE = os.path.exists(SAMPLE)
except ImportError:
    HAVE = False


def tokens_for_mass(Q, K, positions, frac=0.95):
    """[P, H] keys needed (largest weights first) to cover frac of each query's softmax mass."""
    P, H, D = Q.shape
    G = H // K.shape[1]
    out = np.zeros((P, H), dtype=np.int64)
    for i, p in enumerate(positions):
        k = K[:p + 1].astype(np.float64)
        for h in range(H):
            s = k[:, h // G, :] @ Q[i, h].astype(np.float64) / np.sqrt(D)
            w = np.sort(np.exp(s - s.max()))[::-1]
            c = np.cumsum(w) / w.sum()
            out[i, h] = int(np.searchsorted(c, frac) + 1)
    return out


@unittest.skipUnless(HAVE, "numpy, h5py and traces/data/qkv_sample.h5 are needed")
class TestSample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from qkvh5 import read_layer
        cls.f = h5py.File(SAMPLE, "r")
        cls.layers = {}
        for s in range(2):
            for name in cls.f["seq_%d" % s]:
                if name.startswith("layer_"):
                    l = int(name[6:])
                    cls.layers[(s, l)] = read_layer(SAMPLE, s, l)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def test_schema_and_labels(self):
        a = self.f.attrs
        self.assertEqual(a["format"], "kvlab-qkv")
        self.assertEqual(int(a["schema_version"]), 1)
        self.assertIn("CPU-trained stand-in", a["model_name"])
        self.assertGreaterEqual(int(a["head_dim"]), 64)
        self.assertGreaterEqual(int(a["n_heads"]) // int(a["n_kv_heads"]), 4)
        kinds = sorted(self.f["seq_%d" % s].attrs["text_kind"] for s in range(2))
        self.assertEqual(kinds, ["code", "prose"])
        self.assertLessEqual(os.path.getsize(SAMPLE), 16 << 20)
        ls = sorted({l for (_, l) in self.layers})
        self.assertEqual(ls[0], 0)                       # the first layer
        self.assertEqual(ls[-1], int(a["n_layers"]) - 1)  # the deepest layer

    def test_tokens_for_95_percent_mass_spread_across_layers_and_heads(self):
        rng = np.random.default_rng(0)
        for s in range(2):
            means, ctrl = {}, {}
            for (si, l), r in self.layers.items():
                if si != s:
                    continue
                pos = r["positions"][::4]
                n = tokens_for_mass(r["Q"][::4], r["K"], pos)
                means[l] = n.mean(axis=0)  # per head
                # Control: unit Gaussian Q/K (scores of unit variance, like an untrained model).
                Qr = rng.standard_normal(r["Q"][::4].shape)
                Kr = rng.standard_normal(r["K"].shape)
                ctrl[l] = tokens_for_mass(Qr, Kr, pos).mean()
            layer_means = np.array([m.mean() for m in means.values()])
            self.assertGreater(layer_means.max() / layer_means.min(), 2.0,
                               "seq %d: per-layer means %s" % (s, layer_means))
            head_means = np.concatenate(list(means.values()))
            self.assertGreater(head_means.max() / head_means.min(), 4.0)
            c = np.array(list(ctrl.values()))
            self.assertLess(c.max() / c.min(), 2.0, "the control should be flat: %s" % c)


if __name__ == "__main__":
    unittest.main()
