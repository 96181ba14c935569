#!/usr/bin/env python3
"""qkv_import.py -- Q/K/V recorded elsewhere (h5py or numpy files) into the project's schema.

  qkv_import.py IN.h5|IN.npz [IN ...] --out OUT.h5 [options]

Each input file is one recording: per layer a Q, a K and a V array, optionally the query
positions, the token ids and head counts as attributes. Every method of the project
(`psa-compare`, `attn-profile`, the simulator's profiles) then runs on OUT.h5.

Where things are found (--q/--k/--v/--positions take a pattern with {L} for the layer index; the
defaults try, in order, the conventions below and use the first that exists):
  layer_{L}/q   layer_{L}/Q   layer{L}/q   layers/{L}/q   q_{L}   q{L}   layers.{L}.q
(likewise k, v; positions: layer_{L}/positions, then a top-level "positions"). In a .npz a group
path is the key itself ("layer_0/q").

Shapes (--layout, one letter per axis; b = batch, n = positions or tokens, h = heads, d = head
dim):
  Q  [P, n_heads, head_dim]          default layout "nhd"; also "hnd", "bnhd", "bhnd"
  K  [T, n_kv_heads, head_dim]       same letters (with T the tokens); a batch axis makes one
  V  like K                           output sequence per batch entry
n_heads / n_kv_heads / head_dim come from the root attributes (n_heads or num_attention_heads,
n_kv_heads or num_key_value_heads, head_dim) or from --n-heads etc., else from the shapes; the
importer checks that all three agree and that n_heads is a multiple of n_kv_heads.

Conventions the schema fixes (docs/qkv-format.md): Q and K after RoPE; the query at position p
attends to keys 0..p; scores q.k/sqrt(head_dim). If the model's attention scale is not
1/sqrt(head_dim), give it with --scale and the ratio is folded into Q. Without positions, the P
queries are taken to be the last P tokens (positions T-P..T-1; --positions-last says so
explicitly). Every error names the input file and the dataset.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qkvh5 import QKVWriter  # noqa: E402

CONVENTIONS = ["layer_{L}/{x}", "layer_{L}/{X}", "layer{L}/{x}", "layers/{L}/{x}", "{x}_{L}",
               "{x}{L}", "layers.{L}.{x}"]


class ImportError_(Exception):
    pass


class Source:
    """Uniform access to an HDF5 or .npz input: has(key), get(key) -> ndarray, attrs."""

    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise ImportError_("%s: no such file" % path)
        if path.endswith(".npz") or path.endswith(".npy"):
            try:
                self.npz = np.load(path, allow_pickle=False)
            except Exception as e:  # noqa: BLE001 - numpy raises several types for damage
                raise ImportError_("%s: not a readable .npz (%s)" % (path, e))
            self.h5 = None
            self.attrs = {}
            for k in self.npz.files:
                if k.startswith("attr_"):
                    self.attrs[k[5:]] = self.npz[k][()]
        else:
            import h5py
            try:
                self.h5 = h5py.File(path, "r")
            except OSError as e:
                raise ImportError_("%s: not a readable HDF5 file (%s)" % (path, e))
            self.npz = None
            self.attrs = dict(self.h5.attrs)

    def has(self, key):
        if self.h5 is not None:
            return key in self.h5 and not hasattr(self.h5[key], "keys")
        return key in self.npz.files

    def get(self, key):
        try:
            x = self.h5[key][()] if self.h5 is not None else self.npz[key]
        except Exception as e:  # noqa: BLE001
            raise ImportError_("%s: dataset %s could not be read (%s)" % (self.path, key, e))
        if x.dtype == np.uint16 and self.h5 is not None and \
                self.h5[key].attrs.get("dtype", b"") in ("bf16", b"bf16"):
            x = (x.astype(np.uint32) << 16).view(np.float32)
        if x.dtype.kind not in "fiu":
            raise ImportError_("%s: dataset %s has element type %s, not a number" %
                               (self.path, key, x.dtype))
        return x

    def layers(self, pattern_q):
        """Layer indices L for which the Q pattern exists (0..999)."""
        return [L for L in range(1000) if self.has(pattern_q.format(L=L))]

    def close(self):
        if self.h5 is not None:
            self.h5.close()


def find_pattern(src, what, explicit):
    if explicit:
        if "{L}" not in explicit:
            raise ImportError_("--%s %r: the pattern needs {L} for the layer index" %
                               (what, explicit))
        return explicit
    for conv in CONVENTIONS:
        pat = conv.replace("{x}", what).replace("{X}", what.upper())
        if any(src.has(pat.format(L=L)) for L in range(4)):
            return pat
    raise ImportError_("%s: no %s arrays found (tried %s; give --%s PATTERN with {L})" %
                       (src.path, what.upper(), ", ".join(
                           c.replace("{x}", what).replace("{X}", what.upper())
                           for c in CONVENTIONS), what))


def to_bnhd(x, layout, where):
    """Reorders x with the given axis letters to [batch, n, heads, dim]."""
    layout = layout.lower()
    if sorted(layout) not in (sorted("nhd"), sorted("bnhd")) or len(set(layout)) != len(layout):
        raise ImportError_("--layout %r: use the letters n, h, d and optionally b" % layout)
    if x.ndim != len(layout):
        raise ImportError_("%s has %d axes %s, the layout %r has %d" %
                           (where, x.ndim, tuple(x.shape), layout, len(layout)))
    if "b" not in layout:
        layout = "b" + layout
        x = x[None]
    return np.transpose(x, [layout.index(c) for c in "bnhd"])


def attr(src, names, override):
    if override is not None:
        return int(override)
    for n in names:
        if n in src.attrs:
            return int(np.asarray(src.attrs[n]).reshape(-1)[0])
    return None


def import_file(path, w_args, writer_state, args):
    src = Source(path)
    try:
        pq, pk, pv = (find_pattern(src, x, getattr(args, x)) for x in ("q", "k", "v"))
        layers = src.layers(pq)
        if args.layers:
            want = sorted({int(x) for x in args.layers.split(",")})
            missing = [L for L in want if L not in layers]
            if missing:
                raise ImportError_("%s: layer(s) %s requested but %s is missing" %
                                   (path, missing, pq.format(L=missing[0])))
            layers = want
        if not layers:
            raise ImportError_("%s: no layer matches %s" % (path, pq))
        H = attr(src, ("n_heads", "num_attention_heads"), args.n_heads)
        G = attr(src, ("n_kv_heads", "num_key_value_heads"), args.n_kv_heads)
        D = attr(src, ("head_dim",), args.head_dim)
        per_layer = []
        for L in layers:
            for p in (pk, pv):
                if not src.has(p.format(L=L)):
                    raise ImportError_("%s: %s exists but %s does not" %
                                       (path, pq.format(L=L), p.format(L=L)))
            Q = to_bnhd(src.get(pq.format(L=L)), args.layout_q or args.layout,
                        "%s: %s" % (path, pq.format(L=L)))
            K = to_bnhd(src.get(pk.format(L=L)), args.layout, "%s: %s" % (path, pk.format(L=L)))
            V = to_bnhd(src.get(pv.format(L=L)), args.layout, "%s: %s" % (path, pv.format(L=L)))
            if K.shape != V.shape:
                raise ImportError_("%s: %s has shape %s but %s has %s (after --layout)" %
                                   (path, pk.format(L=L), K.shape, pv.format(L=L), V.shape))
            if Q.shape[0] != K.shape[0]:
                raise ImportError_("%s: layer %d: Q has %d batch entries, K has %d" %
                                   (path, L, Q.shape[0], K.shape[0]))
            H = H if H is not None else Q.shape[2]
            G = G if G is not None else K.shape[2]
            D = D if D is not None else K.shape[3]
            for name, x, heads in (("Q", Q, H), ("K", K, G)):
                if x.shape[2] != heads or x.shape[3] != D:
                    raise ImportError_(
                        "%s: layer %d: %s has %d heads of %d, expected %d heads of %d (from "
                        "the attributes or the first layer)" %
                        (path, L, name, x.shape[2], x.shape[3], heads, D))
            per_layer.append((L, Q, K, V))
        if H % G:
            raise ImportError_("%s: n_heads %d is not a multiple of n_kv_heads %d" % (path, H, G))
        fold = 1.0 if args.scale is None else args.scale * math.sqrt(D)
        ppat = args.positions
        n_layers = attr(src, ("n_layers", "num_hidden_layers"), args.n_layers) or \
            (max(layers) + 1)
        if writer_state.get("w") is None:
            writer_state["shape"] = (H, G, D)
            writer_state["w"] = QKVWriter(
                w_args["tmp"], args.model_name or os.path.basename(path), n_layers, H, G, D,
                args.rope_theta, True, tokenizer=args.tokenizer or "",
                creator="kvlab traces/record/qkv_import.py", compress=args.compress)
        elif writer_state["shape"] != (H, G, D):
            raise ImportError_("%s: heads/dim %s differ from the first input's %s" %
                               (path, (H, G, D), writer_state["shape"]))
        w = writer_state["w"]
        if n_layers > w.n_layers:
            raise ImportError_("%s: %d layers, the first input declared %d" %
                               (path, n_layers, w.n_layers))
        nb = per_layer[0][2].shape[0]
        T = per_layer[0][2].shape[1]
        for (L, Q, K, V) in per_layer:
            if K.shape[1] != T:
                raise ImportError_("%s: layer %d has %d tokens, layer %d has %d" %
                                   (path, L, K.shape[1], per_layer[0][0], T))
        tokens = None
        if args.tokens and src.has(args.tokens):
            tokens = np.asarray(src.get(args.tokens)).reshape(nb, -1)
            if tokens.shape[1] != T:
                raise ImportError_("%s: %s has %d tokens per sequence, K has %d" %
                                   (path, args.tokens, tokens.shape[1], T))
        for b in range(nb):
            name = os.path.splitext(os.path.basename(path))[0] + ("" if nb == 1 else "-%d" % b)
            si = w.add_seq(name, args.text_kind, T, None if tokens is None else tokens[b],
                           source=os.path.basename(path))
            for (L, Q, K, V) in per_layer:
                P = Q.shape[1]
                pos = None
                for cand in ([ppat.format(L=L)] if ppat else
                             ["layer_%d/positions" % L, "layer_%02d/positions" % L,
                              "positions"]):
                    if src.has(cand):
                        pos = np.asarray(src.get(cand)).reshape(-1)
                        where = cand
                        break
                if pos is None:
                    if ppat:
                        raise ImportError_("%s: no dataset %s" % (path, ppat.format(L=L)))
                    pos = np.arange(T - P, T)
                    where = "(last %d tokens)" % P
                if pos.size != P:
                    raise ImportError_("%s: %s has %d positions but Q has %d queries" %
                                       (path, where, pos.size, P))
                try:
                    w.add_layer(si, L, K[b], V[b], Q[b] * fold, pos, dtype=args.dtype)
                except ValueError as e:
                    raise ImportError_("%s: layer %d (batch %d): %s" % (path, L, b, e))
        return len(per_layer), nb
    finally:
        src.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--q")
    ap.add_argument("--k")
    ap.add_argument("--v")
    ap.add_argument("--positions", help="pattern of the query positions (with {L} or not)")
    ap.add_argument("--positions-last", action="store_true",
                    help="no positions: the queries are the last P tokens (the default then)")
    ap.add_argument("--tokens", default="tokens", help="dataset of token ids (optional)")
    ap.add_argument("--layout", default="nhd", help="axis letters of K and V (and Q)")
    ap.add_argument("--layout-q", help="axis letters of Q when they differ from --layout")
    ap.add_argument("--layers", help="comma list (default: every layer found)")
    ap.add_argument("--n-heads", type=int)
    ap.add_argument("--n-kv-heads", type=int)
    ap.add_argument("--head-dim", type=int)
    ap.add_argument("--n-layers", type=int, help="layers of the model (default: from the file)")
    ap.add_argument("--scale", type=float, help="the model's attention scale if not 1/sqrt(D)")
    ap.add_argument("--rope-theta", type=float, default=0.0)
    ap.add_argument("--model-name")
    ap.add_argument("--tokenizer")
    ap.add_argument("--text-kind", default="imported")
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    ap.add_argument("--compress", type=int, default=0)
    args = ap.parse_args(argv)
    if args.positions_last and args.positions:
        print("error: --positions and --positions-last exclude each other", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not os.path.isfile(args.out):
        print("error: %s exists and is not a regular file" % args.out, file=sys.stderr)
        return 2
    tmp = "%s.tmp-%d" % (args.out, os.getpid())
    state = {}
    try:
        total = 0
        for p in args.inputs:
            nl, nb = import_file(p, {"tmp": tmp}, state, args)
            total += nb
            print("%s: %d layer(s), %d sequence(s)" % (p, nl, nb), file=sys.stderr)
        state["w"].close()
        os.replace(tmp, args.out)
        print("wrote %s: %d sequence(s)" % (args.out, total), file=sys.stderr)
        return 0
    except ImportError_ as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    finally:
        if state.get("w") is not None:
            state["w"].close()
        if os.path.exists(tmp):
            os.remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
