#!/usr/bin/env python3
"""Tests of sim/profiling/kvprof_report.py's eager noise floor (host_noise_floor) on hand-made
rows whose answer is worked out here. usage: test_kvprof_report.py SRC_DIR"""
import importlib.util
import os
import sys

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvtest  # noqa: E402
from kvtest import check  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "kvprof_report", os.path.join(SRC, "sim", "profiling", "kvprof_report.py"))
rep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rep)


def rows(eager, graph=()):
    out = [{"kind": "preload", "mode": "eager", "measured_us": x} for x in eager]
    out += [{"kind": "preload", "mode": "graph", "measured_us": x} for x in graph]
    out.append({"kind": "decode", "mode": "eager", "measured_us": 1e6})  # not a pre-loading row
    return out


check(rep.host_noise_floor(rows([10.0] * 4)) is None, "fewer than 5 eager rows: no floor")
f = rep.host_noise_floor(rows([10.0] * 6, graph=[5.0, 6.0]))
check(f is not None and f["best_p95"] == 0.0 and f["best_constant"] == 10.0,
      f"identical rows: floor 0 at 10 ({f})")
check(f["graph_min"] == 5.0 and f["graph_max"] == 6.0 and f["n"] == 6, f"spans and count ({f})")
# four rows at 10 and four at 20: for a constant c in [10, 20] the errors are (c - 10) / 10 and
# (20 - c) / 20, and the 95th percentile of 8 errors lies between the two largest, so it is the
# larger of the two; they are equal at c = 40 / 3, error 1 / 3
f = rep.host_noise_floor(rows([10.0] * 4 + [20.0] * 4))
check(abs(f["best_p95"] - 1 / 3) < 1e-3 and abs(f["best_constant"] - 40 / 3) < 0.01,
      f"two levels: floor 1/3 at 40/3 ({f['best_p95']:.5f} at {f['best_constant']:.4f})")
check(f["median"] == 15.0 and f["min"] == 10.0 and f["max"] == 20.0, "median, min, max")
kvtest.finish("test_kvprof_report")
