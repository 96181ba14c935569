#!/usr/bin/env python3
"""Exports one sequence of a Q/K/V HDF5 file (traces/qkv.h schema) to the raw layout kvbench --raw
reads, with h5py (present on the GPU machine even where the C HDF5 library is not):
  DIR/meta.txt        "n_layers n_heads n_kv_heads head_dim"
  DIR/layer<i>.txt    "n_tokens n_positions" then the positions
  DIR/K<i>.f32, V<i>.f32, Q<i>.f32   little-endian float32, row-major as in the file
bf16 datasets (uint16 with attribute dtype="bf16") are widened. Usage: qkv_to_raw.py FILE.h5 DIR
"""
import os
import sys

import h5py
import numpy as np


def load(ds):
    a = ds[()]
    if ds.attrs.get("dtype", b"") in (b"bf16", "bf16"):
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(a, dtype=np.float32)


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with h5py.File(src, "r") as f:
        seqs = sorted((g for g in f if g.startswith("seq_")), key=lambda g: f[g].attrs["index"] if "index" in f[g].attrs else 0)
        seq = f[seqs[0]]
        layers = sorted((g for g in seq if g.startswith("layer_")), key=lambda g: int(g[6:]))
        a = f.attrs
        with open(os.path.join(out, "meta.txt"), "w") as m:
            m.write(f"{len(layers)} {int(a['n_heads'])} {int(a['n_kv_heads'])} {int(a['head_dim'])}\n")
        for i, name in enumerate(layers):
            g = seq[name]
            pos = g["positions"][()]
            with open(os.path.join(out, f"layer{i}.txt"), "w") as m:
                m.write(f"{g['K'].shape[0]} {len(pos)}\n" + " ".join(str(int(p)) for p in pos) + "\n")
            for t in ("K", "V", "Q"):
                load(g[t]).tofile(os.path.join(out, f"{t}{i}.f32"))
    print(f"qkv_to_raw: {len(layers)} layers of {seqs[0]} -> {out}")


if __name__ == "__main__":
    main()
