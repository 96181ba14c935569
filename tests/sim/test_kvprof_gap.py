#!/usr/bin/env python3
"""Tests of sim/profiling/kvprof_gap.py (breakdowns -> launch_gap.csv) on hand-written inputs
whose expected gaps are computed by hand here; the result is loaded by the C loader in
test_profile.c's format (model, tokens, gap_us). usage: test_kvprof_gap.py SRC_DIR"""
import csv
import os
import sys
import tempfile

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
GAP = os.path.join(SRC, "sim", "profiling", "kvprof_gap.py")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvtest  # noqa: E402
from kvtest import check  # noqa: E402


def run(*args):
    return kvtest.run(GAP, *args)


def put(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


with tempfile.TemporaryDirectory() as d:
    models = os.path.join(d, "models")
    os.mkdir(models)
    put(models, "m4.ini", "[model]\nname = M4\nlayers = 4\n")
    # a trace point (decode B2: idle_est 80 us over 40 kernels) and an old-style point
    # (prefill 64 tokens: graph 1000 - kernels 900 = 100 us over 50 launches); two kernel rows each
    hdr = ("model,kind,batch,tokens,context,graph_us,t0_us,t1_us,span_us,idle_us,kernels,"
           "idle_est_us,class,kernel,us_per_iter,launches_per_iter\n")
    bd1 = put(d, "bd1.csv", hdr +
              "m4,decode,2,1,2048,500,510,600,560,170,40,80,gemm,a,300,20\n"
              "m4,decode,2,1,2048,500,510,600,560,170,40,80,copy,b,100,20\n")
    bd2 = put(d, "bd2.csv", "model,kind,batch,tokens,context,graph_us,class,kernel,us_per_iter,"
              "launches_per_iter\n"
              "m4,prefill,1,64,0,1000,gemm,a,600,30\nm4,prefill,1,64,0,1000,other,c,300,20\n")
    out = os.path.join(d, "launch_gap.csv")
    rc, so, se = run("--out", out, "--models", models, "--source", "test", bd1, bd2)
    check(rc == 0, f"exit {rc}: {se}")
    rows = list(csv.DictReader(line for line in open(out) if not line.startswith("#")))
    check(len(rows) == 2, f"{len(rows)} rows")
    by = {r["kind"]: r for r in rows}
    dec, pre = by.get("decode", {}), by.get("prefill", {})
    check(dec.get("method") == "trace" and dec.get("tokens") == "2", f"decode row {dec}")
    check(abs(float(dec.get("gap_us", "nan")) - 20.0) < 1e-9, "decode gap 80 us / 4 layers = 20")
    check(abs(float(dec.get("gap_per_kernel_us", "nan")) - 2.0) < 1e-9, "80 us / 40 kernels = 2")
    check(pre.get("method") == "difference" and pre.get("tokens") == "64", f"prefill row {pre}")
    check(abs(float(pre.get("gap_us", "nan")) - 25.0) < 1e-9, "prefill gap 100 us / 4 layers = 25")
    check(abs(float(pre.get("kernels_per_layer", "nan")) - 12.5) < 1e-9, "50 launches / 4 layers")
    check("# source: test" in open(out).read(), "provenance line")
    # the validation grid's points are refused, and nothing is replaced
    before = open(out).read()
    grid = put(d, "grid.csv", "model,kind,impl,mode,batch,tokens,context,measured_us\n"
               "m4,decode,hf,graph,2,1,2048,1\n")
    rc, so, se = run("--out", out, "--models", models, "--grid", grid, bd1)
    check(rc == 1 and "the validation grid has the calibration point" in se, f"grid: {rc} {se}")
    check(open(out).read() == before, "a refused run leaves the earlier output alone")
    # bad input names the file and line
    bad = put(d, "bad.csv", hdr + "m4,decode,2,1,2048,x,510,600,560,170,40,80,gemm,a,300,20\n")
    rc, so, se = run("--out", out, "--models", models, bad)
    check(rc == 1 and "bad.csv:2: column 'graph_us': 'x' is not a number" in se, f"bad: {se}")
    rc, so, se = run("--out", out, "--models", models, os.path.join(d, "none.csv"))
    check(rc == 1 and "none.csv" in se, f"missing file: {se}")
    nomodel = put(d, "nm.csv", hdr.replace("m4", "zz") +
                  "zz,decode,2,1,2048,500,510,600,560,170,40,80,gemm,a,300,20\n")
    rc, so, se = run("--out", out, "--models", models, nomodel)
    check(rc == 1 and "zz.ini: no such model file" in se, f"unknown model: {se}")
    rc, so, se = run("--out", out, "--models", models, "--grid", os.path.join(d, "nogrid.csv"), bd1)
    check(rc == 1 and "nogrid.csv" in se, f"missing grid: {se}")
    same_t = put(d, "same_t.csv", hdr +
                 "m4,decode,2,1,8192,900,910,990,960,170,40,80,gemm,a,700,40\n")
    rc, so, se = run("--out", out, "--models", models, bd1, same_t)
    check(rc == 1 and "one gap per model and token count" in se, f"same token count: {se}")
    dup = put(d, "dup.csv", open(bd1).read())
    rc, so, se = run("--out", out, "--models", models, bd1, dup)
    check(rc == 1 and "also in an earlier file" in se, f"duplicate point: {se}")

    # method layers: decode B2 timed at 1, 2 and 4 layers (100 + 30 n, slope 30 us per layer),
    # priced 10 + 12 = 22 us per layer -> gap 8; prefill 64 tokens at 2 and 4 layers (slope 50),
    # priced 60 -> residual -10, gap 0
    lay = put(d, "layers.csv", "# device: test\nmodel,kind,batch,tokens,context,layers,graph_us\n"
              "m4,decode,2,1,2048,1,130\nm4,decode,2,1,2048,2,160\nm4,decode,2,1,2048,4,220\n"
              "m4,prefill,1,64,0,2,300\nm4,prefill,1,64,0,4,400\n")
    ohdr = ("model,kind,impl,mode,batch,tokens,context,read_buffer,measured_us,predicted_us,"
            "layers,layer_q,layer_attn_decode,layer_launch_gap,head_lm_head\n")
    ops = put(d, "ops.csv", ohdr + "m4,decode,hf,graph,2,1,2048,,220,190,4,10,12,0,102\n"
              "m4,prefill,hf,graph,1,64,0,,400,340,4,50,10,0,100\n")
    lout = os.path.join(d, "gap_layers.csv")
    rc, so, se = run("--out", lout, "--models", models, "--layers", lay, "--ops", ops)
    check(rc == 0, f"layers: exit {rc}: {se}")
    if rc == 0:
        by = {r["kind"]: r for r in csv.DictReader(
            line for line in open(lout) if not line.startswith("#"))}
        dec, pre = by.get("decode", {}), by.get("prefill", {})
        check(dec.get("method") == "layers", f"layers decode row {dec}")
        check(abs(float(dec.get("slope_us", "nan")) - 30.0) < 1e-9, "slope of 130/160/220 = 30")
        check(abs(float(dec.get("gap_us", "nan")) - 8.0) < 1e-9, "gap 30 - (10 + 12) = 8")
        check(abs(float(dec.get("idle_us", "nan")) - 32.0) < 1e-9, "8 us x 4 layers")
        check(dec.get("graph_us") == "220.0", "graph_us: the model's own 4 layers")
        check(abs(float(pre.get("residual_us", "nan")) + 10.0) < 1e-9, "residual 50 - 60")
        check(float(pre.get("gap_us", "nan")) == 0.0, "a negative residual gives gap 0")
    # the layers method's bad input
    gapped = put(d, "gapped.csv", ohdr + "m4,decode,hf,graph,2,1,2048,,220,190,4,10,12,3,102\n")
    rc, so, se = run("--out", lout, "--models", models, "--layers", lay, "--ops", gapped)
    check(rc == 1 and "gapped.csv:2: priced with launch gaps" in se, f"gapped ops: {se}")
    rc, so, se = run("--out", lout, "--models", models, "--layers", lay)
    check(rc == 1 and "one --ops per --layers" in se, f"missing --ops: {se}")
    one = put(d, "one.csv", "model,kind,batch,tokens,context,layers,graph_us\n"
              "m4,decode,2,1,2048,4,220\n")
    rc, so, se = run("--out", lout, "--models", models, "--layers", one, "--ops", ops)
    check(rc == 1 and "one layer count" in se, f"one layer count: {se}")
    three = put(d, "three.csv", ohdr.replace("m4", "m4") +
                "m4,decode,hf,graph,2,1,2048,,220,190,3,10,12,0,102\n"
                "m4,prefill,hf,graph,1,64,0,,400,340,4,50,10,0,100\n")
    rc, so, se = run("--out", lout, "--models", models, "--layers", lay, "--ops", three)
    check(rc == 1 and "priced with 3 layers" in se, f"layer count mismatch: {se}")
    nopred = put(d, "nopred.csv", ohdr + "m4,decode,hf,graph,2,1,2048,,220,190,4,10,12,0,102\n")
    rc, so, se = run("--out", lout, "--models", models, "--layers", lay, "--ops", nopred)
    check(rc == 1 and "no prediction of" in se, f"point without a prediction: {se}")
    dupl = put(d, "dupl.csv", "model,kind,batch,tokens,context,layers,graph_us\n"
               "m4,decode,2,1,2048,4,220\nm4,decode,2,1,2048,4,221\n")
    rc, so, se = run("--out", lout, "--models", models, "--layers", dupl, "--ops", ops)
    check(rc == 1 and "dupl.csv:3: point" in se and "second row with 4 layers" in se,
          f"duplicate layer count: {se}")

kvtest.finish("test_kvprof_gap")
