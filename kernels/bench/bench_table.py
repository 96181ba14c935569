#!/usr/bin/env python3
"""bench_table.py - the benchmark tables of docs/kernels.md from a results folder (standard library).

    python3 kernels/bench/bench_table.py kernels/bench/results/h200 [--previous OLD_bench.csv]

Reads RESULTS/bench.csv (kvbench: section,dtype,batch,len,method,us,bytes,...) and
RESULTS/sdpa.csv (sdpa_bench.py: B,L,Hq,Hkv,D,dtype,us,backend), both measured in one device
call, and prints Markdown: per shape our time, SDPA's, their ratio (speed vs SDPA = SDPA time /
ours), the bytes the op needs, the time those bytes take at the read bandwidth measured in the
same call (`bandwidth,read` row), our time over that, issue 12's target and whether it is met.
--previous adds the time of an earlier run (the same CSV format) for the same rows.

Targets (issue 12):
  dense  speed vs SDPA >= 1.0 at B >= 8 and L >= 16K, >= 0.9 elsewhere
  top-k  whole op <= 1.3 x SDPA(same B, L = k) + 15 us
  PSA    pipelined, B >= 8, L 32K: <= 1.5 x bytes read / read bandwidth + 20 us; and faster than
         SDPA dense over the whole context whenever it reads <= 1/4 of the KV
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(ln for ln in f if not ln.startswith("#")))


def fnum(x: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.1f}"


def key(r: dict) -> tuple:
    return (r["section"], r["dtype"], int(r["batch"]), int(r["len"]), r["method"])


def read_frac(note: str) -> float:
    """'blocks/pair read 779.5 (0.381 of KV)' -> 0.381."""
    i = note.find(" of KV)")
    if i < 0:
        return math.nan
    j = note.rfind("(", 0, i)
    return fnum(note[j + 1:i])


def tables(res: Path, previous: Path | None) -> str:
    b = rows(res / "bench.csv")
    sd = {(int(r["B"]), int(r["L"]), r["dtype"]): fnum(r["us"]) for r in rows(res / "sdpa.csv")}
    backend = sorted({r["backend"] for r in rows(res / "sdpa.csv")})
    prev = {key(r): fnum(r["us"]) for r in rows(previous)} if previous else {}
    bw = {r["method"]: fnum(r["gbps"]) for r in b if r["section"] == "bandwidth"}
    read_gbs = bw.get("read", math.nan)
    out = [f"Read bandwidth measured in the same call (kvbench's read-only stream): "
           f"{read_gbs:,.0f} GB/s; device-to-device copy {bw.get('copy', math.nan):,.0f} GB/s "
           f"(read + written). SDPA backend: {', '.join(backend)}. Times in us, bf16 unless "
           f"said, Hq 32 / Hkv 8 / D 128. \"bytes / bw\" = the op's bytes at that read bandwidth.",
           ""]
    pc = " | previous" if prev else ""
    pa = " ---: |" if prev else ""

    def t_bw(nbytes: float) -> float:
        return nbytes / (read_gbs * 1e3)  # bytes / (GB/s) in us

    # dense
    out += ["Dense decode (the fastest of the run-time variants per shape):", "",
            f"| B | L | dtype | ours | SDPA | speed vs SDPA | target | MB | bytes / bw | ours / "
            f"(bytes / bw){pc} |",
            f"| ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |{pa}"]
    met = n = 0
    for r in b:
        if r["section"] != "dense":
            continue
        B, L, t, nb = int(r["batch"]), int(r["len"]), fnum(r["us"]), fnum(r["bytes"])
        s = sd.get((B, L, r["dtype"]), math.nan)
        sp = s / t
        want = 1.0 if (B >= 8 and L >= 16384) else 0.9
        ok = sp >= want
        met += ok
        n += 1
        p = f" | {us(prev.get(key(r), math.nan))}" if prev else ""
        out.append(f"| {B} | {L} | {r['dtype']} | {us(t)} | {us(s)} | {sp:.2f}x | >= {want:.1f}x: "
                   f"{'met' if ok else 'missed'} | {nb / 1e6:,.0f} | {us(t_bw(nb))} | "
                   f"{t / t_bw(nb):.2f}{p} |")
    out += ["", f"Dense: target met on {met} of {n} shapes.", ""]
    # top-k
    out += ["Top-k, whole op at L 32K (scores, selection, attention; CUDA graph) and its "
            "attention phase:", "",
            f"| B | k | whole op | attend | SDPA at L = k | target | over target | MB | "
            f"bytes / bw | ours / (bytes / bw){pc} |",
            f"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{pa}"]
    met = n = below = 0
    # the fastest read measured in the call (any probe's): a target under the op's bytes at this
    # rate cannot be met by any kernel over this data layout
    peak_gbs = max([v for m, v in bw.items() if m != "copy" and not math.isnan(v)] or [math.nan])
    att = {(int(r["batch"]), r["method"].split()[0]): fnum(r["us"]) for r in b
           if r["section"] == "topk" and r["method"].endswith("attend")}
    for r in b:
        if r["section"] != "topk" or r["method"].endswith("attend"):
            continue
        B, k = int(r["batch"]), int(r["method"].split("-")[1])
        t, nb = fnum(r["us"]), fnum(r["bytes"])
        s = sd.get((B, k, r["dtype"]), math.nan)
        target = 1.3 * s + 15
        ok = t <= target
        met += ok
        n += 1
        floor = nb / (peak_gbs * 1e3)  # us at the fastest read of the call
        unreachable = floor > target
        below += unreachable
        p = f" | {us(prev.get(key(r), math.nan))}" if prev else ""
        out.append(f"| {B} | {k} | {us(t)} | {us(att.get((B, r['method']), math.nan))} | {us(s)} | "
                   f"{us(target)}{' (below the bytes)' if unreachable else ''} | "
                   f"{'met' if ok else f'{t / target:.1f}x'} | {nb / 1e6:,.0f} | "
                   f"{us(t_bw(nb))} | {t / t_bw(nb):.2f}{p} |")
    out += ["", f"Top-k: target met on {met} of {n} shapes; {below} of them are below the time "
            f"to read the op's bytes (metadata + selected K + V) at the fastest read of the call "
            f"({peak_gbs:,.0f} GB/s): \"(below the bytes)\", unreachable over this layout.", ""]
    # PSA
    out += ["PSA at L 32K on the recorded attention tiled to the shape (pipelined: one stream, "
            "no host round trip; bytes = blocks actually needed):", "",
            f"| B | eps | pipelined | hostsync | KV read | SDPA dense | speed vs SDPA | MB | "
            f"bytes / bw | target (B >= 8) | over target{pc} |",
            f"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{pa}"]
    def layer_of(note: str) -> str:
        i = note.find("recorded layer ")
        return note[i + 15:].split(",")[0] if i >= 0 else ""

    # a pipelined row's host-synchronised twin: the next hostsync row of the same shape
    host = {}
    for i, r in enumerate(b):
        if r["section"] == "psa" and r["method"].endswith("pipelined"):
            eps = r["method"].split()[0]
            for q in b[i + 1:]:
                if (q["section"] == "psa" and q["method"] == f"{eps} hostsync" and
                        q["batch"] == r["batch"] and q["len"] == r["len"]):
                    host[i] = fnum(q["us"])
                    break
    rec = []
    for i, r in enumerate(b):
        if r["section"] != "psa" or not r["method"].endswith("pipelined"):
            continue
        B, L, t, nb = int(r["batch"]), int(r["len"]), fnum(r["us"]), fnum(r["bytes"])
        eps = r["method"].split()[0].split("-")[1]
        if layer_of(r.get("note", "")):
            rec.append((r, eps, host.get(i, math.nan)))
            continue
        s = sd.get((B, L, r["dtype"]), math.nan)
        tgt = 1.5 * t_bw(nb) + 20 if B >= 8 else math.nan
        over = "-" if math.isnan(tgt) else ("met" if t <= tgt else f"{t / tgt:.1f}x")
        p = f" | {us(prev.get(key(r), math.nan))}" if prev else ""
        out.append(f"| {B} | {eps} | {us(t)} | {us(host.get(i, math.nan))}"
                   f" | {read_frac(r.get('note', '')):.3f} | {us(s)} | {s / t:.2f}x | "
                   f"{nb / 1e6:,.0f} | {us(t_bw(nb))} | {us(tgt)} | {over}{p} |")
    if rec:
        out += ["", "PSA on the recorded sample's own shape (B 48, L 4K, Hq 8 / Hkv 2 / D 64; "
                "no SDPA row at this shape):", "",
                "| layer | eps | pipelined | hostsync | KV read | MB | bytes / bw | "
                "1.5 x bytes / bw + 20 | over |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r, eps, h in rec:
            t, nb = fnum(r["us"]), fnum(r["bytes"])
            tgt = 1.5 * t_bw(nb) + 20
            out.append(f"| {layer_of(r['note'])} | {eps} | {us(t)} | {us(h)} | "
                       f"{read_frac(r['note']):.3f} | {nb / 1e6:,.0f} | {us(t_bw(nb))} | {us(tgt)} "
                       f"| {t / tgt:.1f}x |")
    out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--previous", type=Path, help="an earlier run's bench.csv")
    a = ap.parse_args()
    try:
        print(tables(a.results, a.previous))
    except (OSError, KeyError, ValueError) as ex:
        print(f"bench_table: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
