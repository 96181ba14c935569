"""The ctypes binding of build/lib/libkvlab_attn.so (traces/record/kvattn.py) against numpy.

Skips when numpy or the library is absent (build it: cmake --build build --target kvlab_attn).
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "traces", "record"))

try:
    import numpy as np
    import kvattn
    LIB = kvattn.default_lib_path()
    HAVE = os.path.exists(os.environ.get("KVLAB_ATTN_LIB", LIB))
except ImportError:
    HAVE = False


def softmax_attention(q, K, V):
    H, D = q.shape
    G = H // K.shape[1]
    out = np.zeros((H, D))
    for h in range(H):
        s = K[:, h // G, :].astype(np.float64) @ q[h].astype(np.float64) / np.sqrt(D)
        w = np.exp(s - s.max())
        out[h] = (w / w.sum()) @ V[:, h // G, :]
    return out


@unittest.skipUnless(HAVE, "numpy and build/lib/libkvlab_attn.so are needed")
class TestKvattn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = kvattn.Lib()
        rng = np.random.default_rng(7)
        cls.T, cls.H, cls.KV, cls.D = 300, 8, 2, 16
        cls.K = rng.standard_normal((cls.T, cls.KV, cls.D)).astype(np.float32)
        cls.V = rng.standard_normal((cls.T, cls.KV, cls.D)).astype(np.float32)
        cls.Q = (2.0 * rng.standard_normal((cls.T, cls.H, cls.D))).astype(np.float32)

    def run_method(self, spec, p0=200, p1=260):
        dec = kvattn.Decoder(self.lib, spec, self.K, self.V, self.H)
        dec.start(p0 + 1)
        outs, toks = [], []
        for p in range(p0, p1):
            o, t, b = dec.step(self.Q[p], p + 1)
            outs.append(o)
            toks.append(t)
        dec.close()
        return outs, toks

    def test_dense_matches_numpy_softmax(self):
        outs, toks = self.run_method("dense")
        for i, p in enumerate(range(200, 260)):
            ref = softmax_attention(self.Q[p], self.K[:p + 1], self.V[:p + 1])
            self.assertLess(np.max(np.abs(outs[i] - ref)), 1e-5)
            self.assertTrue(np.all(toks[i] == p + 1))

    def test_psa_with_epsilon_one_and_large_topk_read_everything(self):
        # eps = 1 stops only when the accumulated mass reaches the whole estimated total, i.e.
        # after every block; a top-k budget above the key count keeps every block.
        for spec in ("psa:1", "topk:4096"):
            outs, toks = self.run_method(spec)
            for i, p in enumerate(range(200, 260)):
                ref = softmax_attention(self.Q[p], self.K[:p + 1], self.V[:p + 1])
                self.assertLess(np.max(np.abs(outs[i] - ref)), 1e-5, spec)
                self.assertTrue(np.all(toks[i] == p + 1), spec)

    def test_topk_reads_its_budget(self):
        outs, toks = self.run_method("topk:64")
        for t in toks:
            self.assertTrue(np.all(t <= 64))
            self.assertTrue(np.all(t > 32))

    def test_appended_metadata_equals_a_rebuild(self):
        # Decoder appends keys one at a time; a fresh Decoder started at p+1 rebuilds them.
        a, _ = self.run_method("psa:0.9", 200, 240)
        for i, p in enumerate(range(200, 240, 13)):
            b, _ = self.run_method("psa:0.9", p, p + 1)
            self.assertTrue(np.array_equal(a[p - 200], b[0]))

    def test_bad_method_is_an_error(self):
        with self.assertRaises(kvattn.AttnError):
            self.lib.method("psa:2")


if __name__ == "__main__":
    unittest.main()
