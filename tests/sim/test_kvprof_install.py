#!/usr/bin/env python3
"""Tests of sim/profiling/kvprof_install.py's launch-gap step on the committed H200 profile
tables, installed as a smoke result into a temporary folder (nothing under sim/data is written):
  * results without a layers/ step: an earlier launch_gap.csv is moved aside, not kept (its gaps
    were residuals against the tables being replaced) and not deleted;
  * results with layers/ (the committed 7B layer-count timings): launch_gap.csv is written, and
    each gap equals max(0, slope - price), the slope computed here by least squares from
    layers.csv and the price summed here from the layer_* columns of the kvsim-predict --ops
    file the installer wrote.
usage: test_kvprof_install.py SRC_DIR KVSIM_PREDICT"""
import csv
import os
import shutil
import sys
import tempfile

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
PREDICT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(SRC, "build", "bin", "kvsim-predict")
INSTALL = os.path.join(SRC, "sim", "profiling", "kvprof_install.py")
PROF = os.path.join(SRC, "sim", "data", "profiles", "h200")
LAYERS = os.path.join(PROF, "diagnostics", "layers-2020")
TABLES = ["gemm.csv", "attn_prefill.csv", "attn_decode.csv", "elementwise.csv", "host.csv",
          "copy.csv", "overlap.csv", "ceilings.csv", "sustain.csv"]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvtest  # noqa: E402
from kvtest import check  # noqa: E402


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def results(d, with_layers):
    """A results folder: the H200 tables as a smoke profile, no validation grid."""
    prof = os.path.join(d, "profile")
    os.makedirs(prof)
    for t in TABLES:
        if os.path.exists(os.path.join(PROF, t)):
            shutil.copy(os.path.join(PROF, t), prof)
    with open(os.path.join(PROF, "meta.ini")) as f:
        meta = f.read().replace("smoke = false", "smoke = true")
    with open(os.path.join(prof, "meta.ini"), "w") as f:
        f.write(meta)
    if with_layers:
        lay = os.path.join(d, "layers")
        os.makedirs(lay)
        shutil.copy(os.path.join(LAYERS, "llama-2-7b-layers.csv"), os.path.join(lay, "layers.csv"))
        shutil.copy(os.path.join(LAYERS, "llama-2-7b-layers-grid.csv"),
                    os.path.join(lay, "layers-grid.csv"))
    return d


def install(res, dest):
    return kvtest.run(INSTALL, res, "--allow-smoke", "--dest", dest, "--predict", PREDICT)


if not os.path.exists(os.path.join(LAYERS, "llama-2-7b-layers.csv")) or not os.path.exists(PREDICT):
    print("test_kvprof_install: skipped (no committed layer timings or no kvsim-predict)")
    sys.exit(77)

with tempfile.TemporaryDirectory() as d:
    dest = os.path.join(d, "inst")
    os.makedirs(dest)
    old = "model,tokens,gap_us\nllama-2-7b,1,99\n"
    with open(os.path.join(dest, "launch_gap.csv"), "w") as f:
        f.write(old)
    rc, so, se = install(results(os.path.join(d, "r1"), False), dest)
    check(rc == 0, f"install without layers: exit {rc}: {se}")
    check(not os.path.exists(os.path.join(dest, "launch_gap.csv")),
          "an earlier launch_gap.csv does not survive an install without a layers step")
    stale = [f for f in os.listdir(dest) if f.startswith("launch_gap.csv.stale-")]
    check(len(stale) == 1, f"moved aside once: {stale}")
    if stale:
        check(open(os.path.join(dest, stale[0])).read() == old, "moved aside unchanged")
    check("moved to launch_gap.csv.stale-" in so, f"the move is said: {so}")

    rc, so, se = install(results(os.path.join(d, "r2"), True), dest)
    check(rc == 0, f"install with layers: exit {rc}: {se}")
    gap_path = os.path.join(dest, "launch_gap.csv")
    check(os.path.exists(gap_path), "launch_gap.csv written from the layers step")
    if os.path.exists(gap_path):
        lay = rows(os.path.join(dest, "layers", "layers.csv"))
        ops = rows(os.path.join(dest, "layers", "layers-ops.csv"))
        got = rows(gap_path)
        check(len(got) == len(ops) == 8, f"{len(got)} gaps, {len(ops)} priced points")
        for g in got:
            # launch_gap.csv's tokens is the cost model's T (decode: the batch); the layer
            # timings' is the tokens per sequence (decode: 1)
            key = (g["kind"], g["batch"], g["context"],
                   g["tokens"] if g["kind"] == "prefill" else "1")
            pts = [(int(r["layers"]), float(r["graph_us"])) for r in lay
                   if (r["kind"], r["batch"], r["context"], r["tokens"]) == key]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = (sum((x - mx) * (y - my) for x, y in pts)
                     / sum((x - mx) ** 2 for x in xs))
            op = [r for r in ops if (r["kind"], r["batch"], r["context"], r["tokens"]) == key]
            check(len(op) == 1, f"one price for {key}")
            if not op:
                continue
            price = sum(float(v) for c, v in op[0].items() if c.startswith("layer_")
                        and c != "layers")
            want = max(0.0, slope - price)
            check(abs(float(g["gap_us"]) - want) < 2e-3 + 1e-4 * want,
                  f"{key}: gap {g['gap_us']} vs max(0, {slope:.3f} - {price:.3f})")
            check(g["method"] == "layers", f"{key}: method {g['method']}")

kvtest.finish("test_kvprof_install")
