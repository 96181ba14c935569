#!/usr/bin/env python3
"""kvprof_install.py - turns the device's profile-results.tar.gz into the committed profile,
the H200 hardware file, validation.csv, the error tables and the figure (standard library).

    python3 sim/profiling/kvprof_install.py profile-results.tar.gz --device h200 \\
        [--hardware h200-141gb] [--predict build/bin/kvsim-predict] [--docs docs/sim.md]
    python3 sim/profiling/kvprof_install.py RESULTS --allow-smoke --dest /tmp/smoke-profile

RESULTS is the tarball or a folder holding its contents (profile/, validate/, layers/,
summary.txt).
Writes, for a GPU run:
  sim/data/profiles/<device>/   meta.ini and the profile tables (sim_profile.h reads them),
                                copy.csv, overlap.csv, ceilings.csv, grid.csv (the measured
                                iterations), checks.csv, validate-meta.ini, stages.csv,
                                device-summary.txt, validation.csv (kvsim-predict), errors.csv,
                                report.md, sim-validation.png / .svg; with the results' layers/
                                step, layers/ (its timings and their prices) and launch_gap.csv
                                (kvprof_gap.py --layers, priced by the new tables); without it
                                an earlier launch_gap.csv is moved aside (.stale-<time>): its
                                gaps are residuals against the tables it replaced
  sim/data/hardware/<hardware>.ini   measured: fp16_tflops (cuBLAS bf16 8192^3 on random data),
                                hbm_gbs (device-to-device copy, read + write), hbm_gib (the
                                device's memory as CUDA reports it), pcie_h2d_gbs, pcie_d2h_gbs
                                and pcie_latency_us (a fit t = latency + bytes / bandwidth to the
                                pinned copies); every other value 'assumed' and commented so
A --smoke run (CPU flow test) is refused unless --allow-smoke, and then it may only be
written outside sim/data (--dest), with the smoke model files beside it.
"""
from __future__ import annotations

import argparse
import configparser
import csv
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "sim" / "data"
PROFILE_FILES = ["meta.ini", "gemm.csv", "attn_prefill.csv", "attn_decode.csv",
                 "elementwise.csv", "host.csv", "copy.csv", "overlap.csv", "ceilings.csv",
                 "sustain.csv"]


def fail(msg: str) -> None:
    print(f"kvprof_install: {msg}", file=sys.stderr)
    sys.exit(1)


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(ln for ln in f if not ln.startswith("#")))


def fit_copy(cp: list[dict], direction: str) -> tuple[float, float, float] | None:
    """Least squares of t = a + s / bw minimising relative error (weights 1 / t^2) over the
    pinned copies of one direction: (latency_us, bandwidth GB/s, worst relative residual)."""
    pts = [(float(r["bytes"]), float(r["us"])) for r in cp if r["direction"] == direction]
    if len(pts) < 2:
        return None
    w = [1 / t ** 2 for _, t in pts]
    sw = sum(w)
    sx = sum(wi * s for wi, (s, _) in zip(w, pts))
    sy = sum(wi * t for wi, (_, t) in zip(w, pts))
    sxx = sum(wi * s * s for wi, (s, _) in zip(w, pts))
    sxy = sum(wi * s * t for wi, (s, t) in zip(w, pts))
    det = sw * sxx - sx * sx
    b = (sw * sxy - sx * sy) / det if det > 0 else 0.0   # us per byte
    a = (sy - b * sx) / sw                                  # us
    if b <= 0:  # times not increasing with size: no fit; the largest copy's rate, no latency
        s, t = max(pts)
        return 0.0, s / t * 1e-3, float("nan")
    worst = max(abs(a + b * s - t) / t for s, t in pts)
    return max(0.0, a), 1e-3 / b, worst     # 1 / b bytes per us = 1e-3 / b GB/s


def fit_note(f: tuple[float, float, float]) -> str:
    return (f"{100 * f[2]:.1f}%" if f[2] == f[2] else
            "NO FIT: times do not grow with size; the largest copy's rate, latency 0")


def at_least(x: float, lo: float = 1e-3) -> str:
    """A measured value as the hardware file takes it (sim_hw.c accepts >= 0.001): a smaller one
    (a CPU smoke run) is raised to the floor and says so."""
    return f"{x:.4g}" if x >= lo else f"{lo}\n; ^ CLAMPED: measured {x:.4g}, below the simulator's range"


def hardware_ini(prof: Path, name: str) -> str:
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(prof / "meta.ini")
    m = meta["profile"]
    ceil = {r["what"]: r for r in rows(prof / "ceilings.csv")}
    gemm = next((r for k, r in ceil.items() if k.startswith("gemm_bf16_")), None)
    d2d = ceil.get("d2d_copy")
    rd = ceil.get("d2d_read")  # a read-only stream (profiles after 2026-12-03): the larger wins
    if d2d and rd and float(rd["rate"]) > float(d2d["rate"]):
        d2d = dict(rd, what="d2d_read")
    cp = rows(prof / "copy.csv")
    h2d, d2h = fit_copy(cp, "h2d"), fit_copy(cp, "d2h")
    both = [r for r in cp if r["direction"] == "both"]
    big_both = max(both, key=lambda r: int(r["bytes"])) if both else None
    ov = rows(prof / "overlap.csv")
    missing = [k for k, v in (("GEMM ceiling", gemm), ("copy ceiling", d2d), ("h2d copies", h2d),
                              ("d2h copies", d2h)) if v is None]
    if missing:
        fail(f"{prof}: the profile lacks {', '.join(missing)}: the hardware file would have "
             f"unmeasured values where measured ones belong")
    mem_gib = int(m.get("memory_bytes", "0")) / 2 ** 30
    mem_note = ("; measured: memory CUDA reports (torch.cuda.get_device_properties().total_memory)"
                if mem_gib > 0 else "; NOT MEASURED (the profile has no device memory: a smoke run)")
    mem_gib = mem_gib if mem_gib > 0 else 1.0
    where = prof.resolve()
    try:
        where = where.relative_to(ROOT)
    except ValueError:
        pass
    when = f"{m.get('device')}, {m.get('date_utc')}, commit {m.get('commit', '?')[:12]}"
    lines = [
        f"; {m.get('device')}: the simulator's hardware file generated from the GPU profile",
        f"; {where} by sim/profiling/kvprof_install.py ({when}).",
        "; MEASURED on that device: fp16_tflops, hbm_gbs, hbm_gib, pcie_h2d_gbs, pcie_d2h_gbs,",
        "; pcie_latency_us. Everything else is ASSUMED (one GPU cannot measure NVLink; prices,",
        "; host DRAM and SSD are the other nodes' assumptions), and says so beside its value.",
        "[gpu]",
        f"name = {m.get('device')}",
        f"; measured: cuBLAS bf16 {gemm['what'][10:]}^3 GEMM on random data, median "
        f"{float(gemm['us']):.1f} us (achieved, not the datasheet's peak: the roofline's",
        "; compute_eff applies on top of it)",
        f"fp16_tflops = {at_least(float(gemm['rate']))}",
        (f"; measured: device-to-device copy of {int(d2d['bytes']) / 2 ** 20:.0f} MiB "
         "(bytes read + written / time)") if d2d["what"] == "d2d_copy" else
        (f"; measured: a read-only stream (sum) over {int(d2d['bytes']) / 2 ** 20:.0f} MiB, "
         "faster than the device-to-device copy (bytes read / time)"),
        f"hbm_gbs = {at_least(float(d2d['rate']))}",
        mem_note,
        f"hbm_gib = {mem_gib:.4g}",
        "; assumed: NVLink 4 as on H100 SXM (900 GB/s both directions = 450 per direction)",
        "nvlink_gbs = 450",
        "; assumed (not measured): ring all-reduce start-up cost per call",
        "allreduce_latency_us = 10",
        "; assumed: the H100 file's price (no H200 price measured or cited here)",
        "price_per_hour = 12.29",
        f"source = measured by sim/profiling on {when}; NVLink, prices, DRAM and SSD assumed",
        "",
        "[host]",
        "; measured: pinned copies 1 MiB..1 GiB fitted to latency + bytes / bandwidth (worst "
        f"residual h2d {fit_note(h2d)}, d2h {fit_note(d2h)})",
        f"pcie_h2d_gbs = {at_least(h2d[1])}",
        f"pcie_d2h_gbs = {at_least(d2h[1])}",
        "; measured: the h2d fit's intercept",
        f"pcie_latency_us = {h2d[0]:.4g}",
    ]
    if big_both:
        lines.append(f"; measured, for reference: both directions at once move "
                     f"{float(big_both['gbs']):.1f} GB/s together at "
                     f"{int(big_both['bytes']) / 2 ** 20:.0f} MiB (the simulator's links are "
                     "independent per direction)")
    for r in ov:
        lines.append(f"; measured, for reference: layer-wise load under compute, m = {r['m']}, "
                     f"history {r['hist']}: overlap {float(r['overlap']):.2f}, time / ideal "
                     f"{float(r['both_over_ideal']):.3f}")
    lines += [
        "; assumed: the other nodes' host (128 GB DRAM, 10 TiB SSD, prices, SSD figures)",
        "dram_gib = 128",
        "dram_price_per_gib_hour = 0.0088",
        "ssd_gib = 10240",
        "ssd_read_gbs = 4.0",
        "ssd_write_gbs = 3.0",
        "ssd_latency_us = 80",
        "ssd_price_per_gib_hour = 0.000082",
        "",
    ]
    return "\n".join(lines)


def gaps(lay: Path, dest: Path, hw_path: Path, models: Path, predict: Path) -> int:
    """The profile's launch_gap.csv from the results' layers/ step (kvprof_layers.py): the
    layer-count timings priced by the NEW tables (kvsim-predict --launch-gaps none --ops) and
    kvprof_gap.py --layers. The gaps are residuals against the tables they were computed with,
    so an earlier launch_gap.csv never survives a new install: without a layers step (or when it
    cannot be computed) it is moved aside to launch_gap.csv.stale-<UTC time>, and said so.
    Returns 0, or 1 when the step's data could not be turned into gaps."""
    gap = dest / "launch_gap.csv"

    def aside(why: str) -> None:
        if gap.exists():
            stale = gap.with_name(f"launch_gap.csv.stale-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            gap.rename(stale)
            print(f"{gap}: moved to {stale.name} ({why}; its gaps priced the previous tables): "
                  "predictions carry no launch gaps")

    if not (lay / "layers.csv").exists() or not (lay / "layers-grid.csv").exists():
        aside("the results have no layers step")
        return 0
    ld = dest / "layers"
    ld.mkdir(exist_ok=True)
    for f in ("layers.csv", "layers-grid.csv"):
        shutil.copy2(lay / f, ld / f)
    if not predict.exists():
        aside(f"{predict} is not built")
        return 1
    r = subprocess.run([str(predict), "--grid", str(ld / "layers-grid.csv"), "--profile", str(dest),
                        "--hardware", str(hw_path), "--models", str(models), "--launch-gaps",
                        "none", "-o", str(ld / "layers-pred.csv"), "--ops",
                        str(ld / "layers-ops.csv")], text=True, capture_output=True)
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        aside("kvsim-predict failed on the layers grid")
        return 1
    src_line = "kvprof_layers.py (device_run.sh step layers), priced by this profile's tables"
    cmd = [sys.executable, str(HERE / "kvprof_gap.py"), "--out", str(gap) + ".new", "--models",
           str(models), "--source", src_line, "--layers", str(ld / "layers.csv"), "--ops",
           str(ld / "layers-ops.csv")]
    if (dest / "grid.csv").exists():
        cmd += ["--grid", str(dest / "grid.csv")]
    r = subprocess.run(cmd, text=True, capture_output=True)
    print(r.stdout.strip())
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        Path(str(gap) + ".new").unlink(missing_ok=True)
        aside("kvprof_gap.py refused the layers data")
        return 1
    Path(str(gap) + ".new").replace(gap)
    print(f"wrote {gap}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="profile-results.tar.gz or its unpacked folder")
    ap.add_argument("--device", help="profile folder name under sim/data/profiles (e.g. h200)")
    ap.add_argument("--hardware", default="", help="hardware file stem (default <device>)")
    ap.add_argument("--dest", type=Path, help="write here instead of sim/data/profiles/<device>")
    ap.add_argument("--allow-smoke", action="store_true")
    ap.add_argument("--predict", type=Path, default=ROOT / "build" / "bin" / "kvsim-predict")
    ap.add_argument("--docs", type=Path, help="also rewrite this file's gpu-validation block "
                    "(docs/sim.md)")
    a = ap.parse_args()
    tmp = None
    src = a.results
    if src.is_file():
        tmp = Path(tempfile.mkdtemp(prefix="kvprof-install."))
        with tarfile.open(src) as t:
            t.extractall(tmp, filter="data")
        src = tmp
    prof, val = src / "profile", src / "validate"
    meta = configparser.ConfigParser(interpolation=None)
    if not meta.read(prof / "meta.ini") or not meta.has_section("profile"):
        fail(f"{prof}/meta.ini: missing (not a device_run.sh result?)")
    smoke = meta["profile"].get("smoke", "false") == "true"
    if smoke and not a.allow_smoke:
        fail("these are --smoke results (CPU flow test): refusing to install them as a "
             "measurement (--allow-smoke --dest DIR writes them elsewhere)")
    if smoke and (not a.dest or DATA.resolve() in a.dest.resolve().parents
                  or a.dest.resolve() == DATA.resolve()):
        fail("smoke results go outside sim/data only (--dest DIR)")
    if not a.dest and not a.device:
        fail("--device NAME (sim/data/profiles/NAME) or --dest DIR is required")
    dest = a.dest or DATA / "profiles" / a.device
    dest.mkdir(parents=True, exist_ok=True)
    for f in PROFILE_FILES:
        if (prof / f).exists():
            shutil.copy2(prof / f, dest / f)
    for f, to in (("grid.csv", "grid.csv"), ("checks.csv", "checks.csv"),
                  ("meta.ini", "validate-meta.ini")):
        if (val / f).exists():
            shutil.copy2(val / f, dest / to)
    with open(dest / "stages.csv", "w") as out:
        for d in (prof, val):
            if (d / "stages.csv").exists():
                out.write((d / "stages.csv").read_text())
    if (src / "summary.txt").exists():
        shutil.copy2(src / "summary.txt", dest / "device-summary.txt")
    models = DATA / "models"
    if smoke and (prof / "models").is_dir():
        shutil.copytree(prof / "models", dest / "models", dirs_exist_ok=True)
        models = dest / "models"
    hw_stem = a.hardware or (a.device or dest.name)
    hw_path = (dest / f"{hw_stem}.ini") if smoke else DATA / "hardware" / f"{hw_stem}.ini"
    hw_path.write_text(hardware_ini(dest, hw_stem))
    print(f"wrote {dest}/ and {hw_path}")
    rc = gaps(src / "layers", dest, hw_path, models, a.predict)
    if not (val / "grid.csv").exists():
        print("no validation grid in the results: validation.csv not written")
    elif not a.predict.exists():
        print(f"{a.predict}: not built (cmake --build build --target kvsim-predict); "
              "validation.csv not written")
        rc = 1
    else:
        r = subprocess.run([str(a.predict), "--grid", str(dest / "grid.csv"), "--profile",
                            str(dest), "--hardware", str(hw_path), "--models", str(models),
                            "-o", str(dest / "validation.csv")], text=True, capture_output=True)
        if r.returncode != 0:
            print(r.stderr.strip(), file=sys.stderr)
            rc = 1
        else:
            r = subprocess.run([sys.executable, str(HERE / "kvprof_report.py"),
                                str(dest / "validation.csv"), "--out", str(dest)]
                               + (["--docs", str(a.docs)] if a.docs else []),
                               text=True, capture_output=True)
            (dest / "report.md").write_text(r.stdout)
            print(r.stdout)
            print(r.stderr.strip(), file=sys.stderr)
            rc = max(rc, r.returncode)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
