"""Writer (and a small reader) of the project's Q/K/V HDF5 schema, version 1, in Python (h5py).

The schema is the C contract in kernels/qkv.h (header comment); this module writes exactly that:
  /           attrs format="kvlab-qkv", schema_version=1, model_name, creator, n_layers, n_heads,
              n_kv_heads, head_dim, rope_theta, k_post_rope (0/1), tokenizer
  /seq_<i>    attrs name, text_kind, n_tokens, index, source; dataset tokens (int32)
  /seq_<i>/layer_<ll>   attr layer; K, V [n_tokens, n_kv_heads, head_dim], Q [n_positions,
              n_heads, head_dim], positions int64 [n_positions], optional K_pre_rope
fp16 is numpy.float16 (HDF5 16-bit IEEE float); bf16 is uint16 (upper half of the fp32 bits,
round-to-nearest-even) with the dataset attribute dtype="bf16"; fp32 is float32.
Files are written without timestamps so that the same tensors give the same bytes. compress=N
stores K/V/Q chunked with byte shuffle + gzip level N (HDF5's built-in deflate filter).
"""
import numpy as np

FORMAT = "kvlab-qkv"
SCHEMA_VERSION = 1


def f32_to_bf16_bits(a):
    """fp32 -> bf16 bit patterns (uint16), round to nearest even (NaN is rejected earlier)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint32) << 16).view(np.float32)


class QKVWriter:
    """with QKVWriter(path, model_info) as w: i = w.add_seq(...); w.add_layer(i, ...)"""

    def __init__(self, path, model_name, n_layers, n_heads, n_kv_heads, head_dim, rope_theta,
                 k_post_rope=True, tokenizer="", creator="kvlab traces/record", extra_attrs=None,
                 compress=0):
        import h5py
        self.compress = int(compress)  # gzip level for K/V/Q (0: contiguous, uncompressed)
        if n_heads % n_kv_heads:
            raise ValueError("n_heads %d is not a multiple of n_kv_heads %d" %
                             (n_heads, n_kv_heads))
        self.path = path
        self.f = h5py.File(path, "w", libver="earliest", track_order=False)
        self.shape = (int(n_heads), int(n_kv_heads), int(head_dim))
        self.n_layers = int(n_layers)
        a = self.f.attrs
        a["format"] = FORMAT
        a["schema_version"] = np.int64(SCHEMA_VERSION)
        a["model_name"] = str(model_name)
        a["creator"] = str(creator)
        a["n_layers"] = np.int64(n_layers)
        a["n_heads"] = np.int64(n_heads)
        a["n_kv_heads"] = np.int64(n_kv_heads)
        a["head_dim"] = np.int64(head_dim)
        a["rope_theta"] = np.float64(rope_theta)
        a["k_post_rope"] = np.int64(1 if k_post_rope else 0)
        if tokenizer:
            a["tokenizer"] = str(tokenizer)
        for k, v in (extra_attrs or {}).items():
            a[k] = v
        self.seq_tokens = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None

    def _ds(self, g, name, data, attrs=None, compress=False):
        kw = {}
        if compress and self.compress and data.ndim == 3:
            # One chunk per block of up to 1024 rows; byte shuffle + gzip (HDF5's standard
            # deflate filter, which the C reader decodes transparently).
            kw = {"chunks": (min(1024, data.shape[0]),) + data.shape[1:], "shuffle": True,
                  "compression": "gzip", "compression_opts": self.compress}
        d = g.create_dataset(name, data=data, track_times=False, **kw)
        for k, v in (attrs or {}).items():
            d.attrs[k] = v
        return d

    def _tensor(self, g, name, x, dtype):
        x = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("%s: %s has NaN or Inf values" % (g.name, name))
        if dtype == "fp16":
            if np.max(np.abs(x)) > 65504.0:
                raise ValueError("%s: %s exceeds the fp16 range (max |x| = %g); use bf16" %
                                 (g.name, name, float(np.max(np.abs(x)))))
            self._ds(g, name, x.astype(np.float16), compress=True)
        elif dtype == "bf16":
            self._ds(g, name, f32_to_bf16_bits(x), {"dtype": "bf16"}, compress=True)
        elif dtype == "fp32":
            self._ds(g, name, x, compress=True)
        else:
            raise ValueError("unknown dtype %r (fp16, bf16, fp32)" % dtype)

    def add_seq(self, name, text_kind, n_tokens, tokens=None, source=""):
        i = len(self.seq_tokens)
        g = self.f.create_group("seq_%d" % i, track_order=False)
        g.attrs["name"] = str(name)
        g.attrs["text_kind"] = str(text_kind)
        g.attrs["n_tokens"] = np.int64(n_tokens)
        g.attrs["index"] = np.int64(i)
        if source:
            g.attrs["source"] = str(source)
        if tokens is not None:
            t = np.asarray(tokens)
            if t.shape != (n_tokens,):
                raise ValueError("tokens has shape %s, expected (%d,)" % (t.shape, n_tokens))
            if t.min() < 0 or t.max() > np.iinfo(np.int32).max:
                raise ValueError("token ids do not fit int32")
            self._ds(g, "tokens", t.astype(np.int32))
        self.seq_tokens.append(int(n_tokens))
        return i

    def add_layer(self, seq, layer, K, V, Q, positions, dtype="fp16", K_pre_rope=None):
        H, KV, D = self.shape
        T = self.seq_tokens[seq]
        if not 0 <= layer < self.n_layers:
            raise ValueError("layer %d outside [0, %d)" % (layer, self.n_layers))
        pos = np.asarray(positions, dtype=np.int64)
        if pos.ndim != 1 or pos.size == 0 or np.any(np.diff(pos) <= 0) or pos[0] < 0 or \
                pos[-1] >= T:
            raise ValueError("positions must be strictly increasing within [0, %d)" % T)
        for name, x, shp in (("K", K, (T, KV, D)), ("V", V, (T, KV, D)),
                             ("Q", Q, (pos.size, H, D))):
            if tuple(np.shape(x)) != shp:
                raise ValueError("%s has shape %s, expected %s" % (name, np.shape(x), shp))
        g = self.f.create_group("seq_%d/layer_%02d" % (seq, layer), track_order=False)
        g.attrs["layer"] = np.int64(layer)
        self._tensor(g, "K", K, dtype)
        self._tensor(g, "V", V, dtype)
        self._tensor(g, "Q", Q, dtype)
        self._ds(g, "positions", pos)
        if K_pre_rope is not None:
            if tuple(np.shape(K_pre_rope)) != (T, KV, D):
                raise ValueError("K_pre_rope has shape %s" % (np.shape(K_pre_rope),))
            self._tensor(g, "K_pre_rope", K_pre_rope, dtype)


def read_layer(path, seq, layer):
    """Returns dict K, V, Q (fp32), positions, K_pre_rope (or None) of one recorded layer."""
    import h5py
    with h5py.File(path, "r") as f:
        g = f["seq_%d/layer_%02d" % (seq, layer)]
        out = {}
        for name in ("K", "V", "Q", "K_pre_rope"):
            if name not in g:
                out[name] = None
                continue
            d = g[name]
            x = d[()]
            if d.attrs.get("dtype", b"") in ("bf16", b"bf16"):
                x = bf16_bits_to_f32(x)
            out[name] = np.asarray(x, dtype=np.float32)
        out["positions"] = g["positions"][()]
        return out
