#!/usr/bin/env python3
"""kvprof_summary.py - the short table device_run.sh prints last (standard library only).

    python3 sim/profiling/kvprof_summary.py WORK_DIR     (WORK_DIR holds profile/, validate/, layers/)
"""
from __future__ import annotations

import configparser
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvprof_gap import line_fit  # noqa: E402


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def num(x, fmt="{:,.0f}") -> str:
    try:
        return fmt.format(float(x))
    except (TypeError, ValueError):
        return "-"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    w = Path(sys.argv[1])
    p, v = w / "profile", w / "validate"
    meta = configparser.ConfigParser(interpolation=None)
    meta.read([p / "meta.ini", v / "meta.ini"])
    m = meta["profile"] if meta.has_section("profile") else {}
    print("=" * 78)
    print(f"KVLab GPU profile: {m.get('device', '?')} | driver {m.get('driver', '?')} | torch "
          f"{m.get('torch', '?')} | transformers {m.get('transformers', '?')}")
    print(f"commit {m.get('commit', '?')} | {m.get('date_utc', '?')} | smoke = {m.get('smoke', '?')}"
          f" | clocks sm {m.get('clock_sm_now', '?')} of {m.get('clock_sm_max', '?')}")
    print("stages:")
    for d in (p, v):
        sp = d / "stages.csv"
        if sp.exists():
            for line in sp.read_text().splitlines():
                step, stage, status = (line.split(",", 2) + ["", ""])[:3]
                print(f"  {step:8s} {stage:13s} {status}")
    for r in rows(p / "ceilings.csv"):
        print(f"ceiling {r['what']}: {num(r['rate'], '{:,.1f}')} {r['rate_unit']} ({num(r['us'], '{:,.1f}')} us)")
    cp = rows(p / "copy.csv")
    if cp:
        print("pinned copies, GB/s (both: the two directions summed):")
        sizes = sorted({int(r["bytes"]) for r in cp})
        show = [s for s in sizes if s in (1 << 20, 16 << 20, 256 << 20, 1 << 30)] or sizes
        for s in show:
            g = {r["direction"]: r["gbs"] for r in cp if int(r["bytes"]) == s}
            print(f"  {s / 2**20:7.0f} MiB  h2d {num(g.get('h2d'), '{:6.1f}')}  d2h "
                  f"{num(g.get('d2h'), '{:6.1f}')}  both {num(g.get('both'), '{:6.1f}')}")
    ov = rows(p / "overlap.csv")
    if ov:
        print("layer-wise load under compute (40 layers of 13B GEMMs), us:")
        print("       m   hist  compute     copy     both    ideal  overlap  both/ideal")
        for r in ov:
            print(f"  {r['m']:>6s} {r['hist']:>6s} {num(r['compute_us']):>8s} {num(r['copy_us']):>8s}"
                  f" {num(r['both_us']):>8s} {num(r['ideal_us']):>8s} {num(r['overlap'], '{:.2f}'):>8s}"
                  f" {num(r['both_over_ideal'], '{:.3f}'):>11s}")
    for r in rows(p / "host.csv"):
        if r["layers"] == "fit":
            print(f"host overhead {r['path']:10s}: {num(r['per_layer_us'], '{:.1f}')} us/layer + "
                  f"{num(r['fixed_us'], '{:.1f}')} us fixed")
    counts = []
    for name in ("gemm", "attn_prefill", "attn_decode", "elementwise"):
        counts.append(f"{name} {len(rows(p / (name + '.csv')))}")
    print("profile rows: " + ", ".join(counts))
    for r in rows(v / "checks.csv"):
        print(f"check {r['model']}: {r['what']}: {num(r['relerr'], '{:.1e}')} {r['verdict']}")
    g = rows(v / "grid.csv")
    if g:
        print("validation, median us (eager | graph):")
        print("  model   kind     impl      B    tok    ctx  rb      eager      graph")
        seen: dict[tuple, dict] = {}
        for r in g:
            k = (r["model"], r["kind"], r["impl"], r["batch"], r["tokens"], r["context"],
                 r["read_buffer"])
            seen.setdefault(k, {})[r["mode"]] = r["measured_us"]
        for k, t in seen.items():
            print(f"  {k[0].replace('llama-2-', ''):7s} {k[1]:8s} {k[2]:6s} {k[3]:>4s} {k[4]:>6s}"
                  f" {k[5]:>6s} {k[6]:>3s} {num(t.get('eager')):>10s} {num(t.get('graph')):>10s}")
    lay = rows(w / "layers" / "layers.csv")
    if lay:
        print("time per layer (kvprof_layers: graph replays at L/4..L layers), us:")
        per: dict[tuple, dict[int, float]] = {}
        for r in lay:
            k = (r["model"], r["kind"], r["batch"], r["tokens"], r["context"])
            per.setdefault(k, {})[int(r["layers"])] = float(r["graph_us"])
        for k, t in per.items():
            xs = sorted(t)
            if len(xs) < 2:
                continue
            sl = line_fit(t)[0]
            print(f"  {k[0].replace('llama-2-', ''):7s} {k[1]:8s} B{k[2]:>3s} tok {k[3]:>5s} ctx "
                  f"{k[4]:>6s}: {sl:9.1f} per layer ({', '.join(str(x) for x in xs)} layers)")
    print("=" * 78)
    return 0


if __name__ == "__main__":
    sys.exit(main())
