#!/usr/bin/env python3
"""Writes the kernel profile HDF5 (schema in docs/kernels.md, "Profile for the simulator") from
kvbench's CSV outputs. Usage: profile_h5.py BENCH.csv GEMM.csv DEVICE_NAME OUT.h5"""
import csv
import datetime
import sys

import h5py
import numpy as np


def main():
    bench_csv, gemm_csv, device, out = sys.argv[1:5]
    with h5py.File(out, "w") as f:
        f.attrs["format"] = "kvlab-kernel-profile"
        f.attrs["schema_version"] = 1
        f.attrs["device"] = device
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        f.attrs["creator"] = "kvlab kernels/bench (kvbench + profile_h5.py)"
        rows = list(csv.DictReader(open(gemm_csv)))
        g = f.create_group("gemm")
        for k in ("m", "n", "k"):
            g.create_dataset(k, data=np.array([int(r[k]) for r in rows], dtype=np.int64))
        g.create_dataset("time_s", data=np.array([float(r["ms"]) * 1e-3 for r in rows]))
        g.attrs["dtype"] = "bf16"
        g.attrs["layout"] = "C[m,n] = A[m,k] B[k,n], row-major, fp32 accumulation"
        rows = [r for r in csv.DictReader(open(bench_csv))
                if r["us"] not in ("nan", "") and r["section"] != "bandwidth"]
        a = f.create_group("attention")
        dt = h5py.string_dtype()
        for k in ("section", "dtype", "method", "note"):
            a.create_dataset(k, data=np.array([r[k] for r in rows], dtype=object), dtype=dt)
        for k in ("batch", "len"):
            a.create_dataset(k, data=np.array([int(r[k]) for r in rows], dtype=np.int64))
        a.create_dataset("time_s", data=np.array([float(r["us"]) * 1e-6 for r in rows]))
        a.create_dataset("bytes", data=np.array([float(r["bytes"]) for r in rows]))
        a.attrs["shape"] = "Hq 32 / Hkv 8 / D 128 unless the note names recorded data"
        bw = {r["method"]: float(r["gbps"]) for r in csv.DictReader(open(bench_csv))
              if r["section"] == "bandwidth"}
        for k, v in bw.items():
            f.attrs[f"{k}_gbps"] = v
    print(f"profile_h5: wrote {out}")


if __name__ == "__main__":
    main()
