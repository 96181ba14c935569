"""The C library's PSA stop rules (kernels/attn_sparse.c, through kvattn.py) against the
independent numpy implementation of the study bench (experiments/psa/estimators.py) on the
committed recording: the same blocks must be read for (nearly) every query and KV head.

The two implementations share no code: the numpy side recomputes block metadata in float64 and
evaluates block sets from exact per-block sums, the C side runs attn_decode. Metadata in C is
stored as float32, so a rank tie or a stop test within ~1e-7 of epsilon can flip; the test
allows 3% of (query, KV head) cases to differ and requires the rest to match exactly.
Skips without numpy, h5py or the library.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "traces", "record"))
sys.path.insert(0, os.path.join(ROOT, "experiments", "psa"))
SAMPLE = os.path.join(ROOT, "traces", "data", "qkv_sample.h5")

try:
    import h5py  # noqa: F401
    import numpy as np
    import kvattn
    import estimators as E
    LIB = kvattn.Lib()
    HAVE = True
except (ImportError, FileNotFoundError, OSError):
    HAVE = False

# (C spec, numpy arguments of estimators.psa)
RULES = [
    ("psa:0.9", dict(eps=0.9)),
    ("psa:0.95:minrank=1", dict(eps=0.95, min_ranked=1)),
    ("psa:0.95:selfcal:minrank=1", dict(eps=0.95, min_ranked=1, selfcal=True)),
    ("psa:0.95:selfcal:minrank=1:ucb=1.25", dict(eps=0.95, min_ranked=1, selfcal=True,
                                                 c_mult=1.25)),
    ("psa:0.9:lognormal:gqa=head", dict(eps=0.9, est="lognormal", rank="meankey",
                                          per_head=True)),
    ("psa:0.95:selfcal:minrank=2:gqa=head:group=2", dict(eps=0.95, selfcal=True, min_ranked=2,
                                                         per_head=True, group=2)),
]


@unittest.skipUnless(HAVE and os.path.exists(SAMPLE), "numpy, h5py, the library and the sample")
class TestRulesAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import h5py
        cls.cases = []
        with h5py.File(SAMPLE, "r") as f:
            H, G, D = (int(f.attrs[k]) for k in ("n_heads", "n_kv_heads", "head_dim"))
            for lname in ("layer_00", "layer_03"):
                if lname not in f["seq_0"]:
                    continue
                g = f["seq_0"][lname]
                K = g["K"][()].astype(np.float32)
                V = g["V"][()].astype(np.float32)
                Q = g["Q"][()].astype(np.float32)
                P = g["positions"][()]
                for i in np.linspace(0, len(P) - 1, 6).round().astype(int):
                    c = E.case_arrays(Q[i].astype(np.float64), K.astype(np.float64),
                                      V.astype(np.float64), int(P[i]), H, G, D, (lname, i))
                    cls.cases.append((c, Q[i], K, V, int(P[i]), H, G))

    def test_block_sets_agree(self):
        for spec, kw in RULES:
            same = total = 0
            for c, q, K, V, pos, H, G in self.cases:
                ref, _ = E.psa(c, **kw)
                dec = kvattn.Decoder(LIB, spec, K[:pos + 1], V[:pos + 1], H)
                try:
                    dec.start(pos + 1)
                    dec.step(q, pos + 1)
                    nb = ref.shape[1]
                    maxb = dec.res.max_blocks
                    got = np.ctypeslib.as_array(dec.res.block_read, shape=(G * maxb,))
                    got = got.reshape(G, maxb)[:, :nb].astype(bool)
                finally:
                    dec.close()
                for g in range(G):
                    total += 1
                    same += bool(np.array_equal(got[g], ref[g]))
            print("%s: %d of %d" % (spec, same, total), file=sys.stderr)
            self.assertGreater(total, 0)
            self.assertGreaterEqual(same / total, 0.97, "%s: %d of %d block sets agree" %
                                    (spec, same, total))

    def test_options_change_the_result(self):
        # guards the test above against comparing two implementations that ignore the options
        c = self.cases[0][0]
        base, _ = E.psa(c, eps=0.95)
        cal, _ = E.psa(c, eps=0.95, selfcal=True, min_ranked=1, c_mult=2.0)
        self.assertGreater(cal.sum(), base.sum())


if __name__ == "__main__":
    unittest.main()
