"""ctypes binding of the project's attention library (kernels/attn.h) built as
build/lib/libkvlab_attn.so, so that Python calls the project's own dense / top-k / PSA code, not a
re-implementation. Only numpy is needed.

A method is never mirrored here: it is parsed from its spec by the library's registry
(kernels/attn_method.h) into an opaque buffer of attn_method_sizeof() bytes and read back through
the registry's accessors, so a new method or option needs no change in this file. The small
structs below (error, shape, block metadata, result) mirror kernels/attn.h and common/kv_err.h;
keep them in sync (a mismatch shows up as wrong results in tests/record/test_kvattn.py, which
compares against numpy).
"""
import ctypes as C
import os

import numpy as np

_f32p = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
_f64p = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")


class KvError(C.Structure):
    _fields_ = [("code", C.c_int), ("msg", C.c_char * 1024)]


class AttnShape(C.Structure):
    _fields_ = [("n_heads", C.c_int), ("n_kv_heads", C.c_int), ("head_dim", C.c_int)]


class AttnBlockmeta(C.Structure):
    _fields_ = [("block_size", C.c_int), ("n_kv_heads", C.c_int), ("head_dim", C.c_int),
                ("n_tokens", C.c_int64), ("n_blocks", C.c_int64), ("cap_blocks", C.c_int64),
                ("kmin", C.c_void_p), ("kmax", C.c_void_p), ("kmean", C.c_void_p),
                ("kvar", C.c_void_p), ("ksum", C.c_void_p), ("ksq", C.c_void_p)]


class Method:
    """A parsed method: opaque bytes owned by Python, filled by attn_method_parse. `name` is its
    registry name ("dense", "topk", "psa", "oracle", ...), `spec` its canonical spec."""

    def __init__(self, buf, name, spec, block_size):
        self.buf, self.name, self.spec, self.block_size = buf, name, spec, block_size

    @property
    def _as_parameter_(self):
        return C.cast(self.buf, C.c_void_p)


class AttnResult(C.Structure):
    _fields_ = [("out", C.POINTER(C.c_float)), ("blocks_read", C.POINTER(C.c_int64)),
                ("tokens_read", C.POINTER(C.c_int64)), ("iterations", C.POINTER(C.c_int32)),
                ("block_read", C.POINTER(C.c_uint8)), ("est_mass", C.POINTER(C.c_double)),
                ("max_blocks", C.c_int64), ("tokens_head", C.POINTER(C.c_int64))]


class AttnError(RuntimeError):
    pass


def default_lib_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "build", "lib", "libkvlab_attn.so"))


class Lib:
    def __init__(self, path=None):
        path = path or os.environ.get("KVLAB_ATTN_LIB") or default_lib_path()
        if not os.path.exists(path):
            raise FileNotFoundError("%s: not found (build it: cmake --preset ci -G Ninja && "
                                    "cmake --build build --target kvlab_attn, or "
                                    "traces/record/build_attn_lib.sh)" % path)
        self.path = path
        L = C.CDLL(path)
        P = C.POINTER
        L.attn_method_sizeof.restype = C.c_int
        L.attn_method_parse.argtypes = [C.c_char_p, C.c_void_p, P(KvError)]
        L.attn_method_check.argtypes = [C.c_void_p, P(KvError)]
        L.attn_method_label.argtypes = [C.c_void_p, C.c_char_p, C.c_int]
        L.attn_method_label.restype = None
        L.attn_method_spec.argtypes = [C.c_void_p, C.c_char_p, C.c_int]
        L.attn_method_name.argtypes = [C.c_void_p]
        L.attn_method_name.restype = C.c_char_p
        L.attn_method_block_size.argtypes = [C.c_void_p]
        L.attn_blockmeta_init.argtypes = [P(AttnBlockmeta), C.c_int, C.c_int, C.c_int, C.c_int64,
                                          P(KvError)]
        L.attn_blockmeta_free.argtypes = [P(AttnBlockmeta)]
        L.attn_blockmeta_free.restype = None
        L.attn_blockmeta_build.argtypes = [P(AttnBlockmeta), _f32p, C.c_int64, P(KvError)]
        L.attn_blockmeta_append.argtypes = [P(AttnBlockmeta), _f32p, P(KvError)]
        L.attn_result_alloc.argtypes = [P(AttnResult), P(AttnShape), C.c_int64, P(KvError)]
        L.attn_result_free.argtypes = [P(AttnResult)]
        L.attn_result_free.restype = None
        L.attn_dense.argtypes = [P(AttnShape), _f32p, _f32p, _f32p, C.c_int64, _f32p, C.c_void_p,
                                 C.c_void_p]
        L.attn_decode.argtypes = [P(AttnShape), C.c_void_p, _f32p, _f32p, _f32p, C.c_int64,
                                  C.c_void_p, C.c_void_p, P(AttnResult), P(KvError)]
        L.attn_bytes_read.argtypes = [P(AttnShape), C.c_void_p, C.c_int64, C.c_int64, C.c_int]
        L.attn_bytes_read.restype = C.c_int64
        L.kv_version.restype = C.c_char_p
        self.L = L

    def version(self):
        return self.L.kv_version().decode()

    @staticmethod
    def _check(rc, err, what):
        if rc != 0:
            raise AttnError("%s: %s" % (what, err.msg.decode(errors="replace")))

    def method(self, spec):
        buf, err = C.create_string_buffer(self.L.attn_method_sizeof()), KvError()
        self._check(self.L.attn_method_parse(spec.encode(), buf, C.byref(err)), err,
                    "method '%s'" % spec)
        canon = C.create_string_buffer(160)
        self.L.attn_method_spec(buf, canon, 160)
        return Method(buf, self.L.attn_method_name(buf).decode(), canon.value.decode(),
                      self.L.attn_method_block_size(buf))

    def label(self, m):
        buf = C.create_string_buffer(64)
        self.L.attn_method_label(m, buf, 64)
        return buf.value.decode()


class Decoder:
    """Decode attention of one layer over a growing key set, through attn_decode.

    K, V: float32 [n_tokens, n_kv_heads, head_dim] (all tokens of the sequence);
    start(n_keys) summarises keys 0..n_keys-1; step(q, n_keys) runs the method for a query
    [n_heads, head_dim] over keys 0..n_keys-1 (n_keys = previous + 1: block metadata is appended,
    as a decoder would) and returns (out [n_heads, head_dim], tokens_read per KV head,
    bytes_read summed over KV heads)."""

    def __init__(self, lib, spec, K, V, n_heads, elem_bytes=2):
        self.lib, self.L = lib, lib.L
        self.m = lib.method(spec)
        self.K = np.ascontiguousarray(K, dtype=np.float32)
        self.V = np.ascontiguousarray(V, dtype=np.float32)
        T, KV, D = self.K.shape
        self.shape = AttnShape(n_heads, KV, D)
        self.elem_bytes = elem_bytes
        self.err = KvError()
        self.meta = AttnBlockmeta()
        self.res = AttnResult()
        self.out = np.zeros((n_heads, D), dtype=np.float32)
        self.n_meta = 0
        self.has_meta = self.m.name != "dense"
        if self.has_meta:
            self._ok(self.L.attn_blockmeta_init(C.byref(self.meta), self.m.block_size, KV, D, T,
                                                C.byref(self.err)), "attn_blockmeta_init")
        max_blocks = (T + self.m.block_size - 1) // self.m.block_size
        self._ok(self.L.attn_result_alloc(C.byref(self.res), C.byref(self.shape), max_blocks,
                                          C.byref(self.err)), "attn_result_alloc")
        self.probs = np.zeros(n_heads * T, dtype=np.float64) if self.m.name == "oracle" else None

    def _ok(self, rc, what):
        Lib._check(rc, self.err, what)

    def start(self, n_keys):
        if self.has_meta:
            self._ok(self.L.attn_blockmeta_build(C.byref(self.meta), self.K, n_keys,
                                                 C.byref(self.err)), "attn_blockmeta_build")
        self.n_meta = n_keys

    def step(self, q, n_keys):
        if self.has_meta:
            while self.n_meta < n_keys:
                self._ok(self.L.attn_blockmeta_append(C.byref(self.meta), self.K[self.n_meta],
                                                      C.byref(self.err)),
                         "attn_blockmeta_append")
                self.n_meta += 1
            if self.n_meta != n_keys:
                raise AttnError("keys must grow: metadata has %d, query wants %d" %
                                (self.n_meta, n_keys))
        q = np.ascontiguousarray(q, dtype=np.float32)
        probs_p = None
        if self.probs is not None:
            tmp = np.zeros(self.shape.n_heads * self.shape.head_dim, dtype=np.float32)
            probs = self.probs[:self.shape.n_heads * n_keys]
            self.L.attn_dense(C.byref(self.shape), q, self.K, self.V, n_keys, tmp, None,
                              probs.ctypes.data_as(C.c_void_p))
            probs_p = probs.ctypes.data_as(C.c_void_p)
        meta_p = C.cast(C.pointer(self.meta), C.c_void_p) if self.has_meta else None
        self._ok(self.L.attn_decode(C.byref(self.shape), self.m, q, self.K, self.V,
                                    n_keys, meta_p, probs_p, C.byref(self.res),
                                    C.byref(self.err)), "attn_decode")
        H, KV, D = self.shape.n_heads, self.shape.n_kv_heads, self.shape.head_dim
        out = np.ctypeslib.as_array(self.res.out, shape=(H * D,)).reshape(H, D).copy()
        toks = np.ctypeslib.as_array(self.res.tokens_read, shape=(KV,)).copy()
        nbytes = sum(self.L.attn_bytes_read(C.byref(self.shape), self.m, n_keys,
                                            int(t), self.elem_bytes) for t in toks)
        return out, toks, nbytes

    def dense_bytes(self, n_keys):
        """Bytes dense attention reads for n_keys keys over all KV heads."""
        m = self.lib.method("dense")
        return self.shape.n_kv_heads * self.L.attn_bytes_read(C.byref(self.shape), m,
                                                              n_keys, n_keys, self.elem_bytes)

    def close(self):
        if self.has_meta:
            self.L.attn_blockmeta_free(C.byref(self.meta))
            self.has_meta = False
        self.L.attn_result_free(C.byref(self.res))

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
