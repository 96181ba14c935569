#!/usr/bin/env python3
"""caption — the caption line of a CachedAttention figure, as a gnuplot file setting CAPTION.

usage: caption.py CONFIG.ini [TABLE.csv] [--scale quick|full] [--what TEXT] -o caption.gp

The line names what a reader needs to judge the numbers: the scale the results were run at (the
--scale given, else the environment's KVLAB_SCALE; the seeds are counted from TABLE's `seed`
column), the SSD array (devices x per-device read / write GB/s, from CONFIG's [links] over the
hardware file's [host]), the decode mode ([workload] decode) and the offered load ([workload]
rate), e.g.
    CAPTION = "full scale (3 seeds) | SSD 1 x 4/3 GB/s | decode full | 0.15 sessions/s"
A figure then draws it:  load D.'caption.gp'; set label 99 CAPTION at screen 0.5,0.012 center
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvlab_analysis import AnalysisError, die, read_csv, read_ini, write_text_atomic  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caption(config, table, scale, what):
    cp = read_ini(config)

    def get(sec, key, default=None):
        v = cp.get(sec, key, fallback=None) if cp.has_section(sec) else None
        return v.split(";")[0].strip() if v is not None else default

    hw_name = get("sim", "hardware", "a100-80gb")
    hw_path = hw_name if hw_name.endswith(".ini") else os.path.join(ROOT, "sim", "data",
                                                                     "hardware", hw_name + ".ini")
    hw = read_ini(hw_path)
    def hwget(key, default=None):
        v = hw.get("host", key, fallback=default)
        return v.split(";")[0].strip() if v is not None else default

    dev = get("links", "ssd_devices") or hwget("ssd_devices", "1")
    rd = get("links", "ssd_read_gbs") or hwget("ssd_read_gbs")
    wr = get("links", "ssd_write_gbs") or hwget("ssd_write_gbs")
    parts = []
    seeds = ""
    if table:
        _, rows = read_csv(table)
        n = len({r.get("seed") for r in rows})
        seeds = f" ({n} seed{'s' if n != 1 else ''})"
    if scale:
        parts.append(f"{scale} scale{seeds}")
    elif seeds:
        parts.append(seeds.strip(" ()"))
    parts.append(f"SSD {float(dev):g} x {float(rd):g}/{float(wr):g} GB/s")
    parts.append(f"decode {get('workload', 'decode', 'full')}")
    rate = get("workload", "rate")
    if rate:
        parts.append(f"{float(rate):g} sessions/s")
    if what:
        parts.append(what)
    return " | ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("table", nargs="?")
    ap.add_argument("--scale", default=os.environ.get("KVLAB_SCALE", ""))
    ap.add_argument("--what", default="")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    try:
        text = caption(a.config, a.table, a.scale, a.what)
        write_text_atomic(a.out, 'CAPTION = "' + text.replace('"', "'") + '"\n')
    except (AnalysisError, OSError) as e:
        die(str(e))


if __name__ == "__main__":
    main()
