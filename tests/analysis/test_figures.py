#!/usr/bin/env python3
"""Test of paper-figures/make-figures.sh on a tiny crafted tidy directory: the figures whose
tables exist are drawn (PNG and SVG), every other one is skipped with one stderr line and exit 0;
a table that lacks a column the figure needs, and a gnuplot error, make it fail loudly (exit 1)
while the other figures are still drawn. Exit 77 (skip) when gnuplot is absent.
usage: test_figures.py SRC_DIR"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
MAKE = os.path.join(SRC, "paper-figures", "make-figures.sh")
if shutil.which("gnuplot") is None:
    print("test_figures: gnuplot not found; skipped")
    sys.exit(77)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvtest  # noqa: E402
from kvtest import check  # noqa: E402


def needs(gp):
    out = []
    with open(gp, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#@needs"):
                out += line.split()[1:]
    return out


def write(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


figures = {os.path.basename(g)[:-3]: needs(g)
           for g in glob.glob(os.path.join(SRC, "paper-figures", "*.gp")) if needs(g)}
check(len(figures) >= 14, f"expected at least 14 figure scripts, found {sorted(figures)}")

tmp = tempfile.mkdtemp(prefix="kvlab-figures-")
tidy = os.path.join(tmp, "tidy")
os.makedirs(tidy)
# ca-models: four models x four media; ours' TTFT is 1 s against RE's 4 s for every model, so
# the TTFT reduction plotted must be 1 - 1/4 = 0.75
models = ["llama-2-13b", "llama-65b", "llama-2-70b", "falcon-40b"]
rows = []
for i, m in enumerate(models):
    for mode, hit, ttft, tput, cost in [("re", 0, 4.0, 1000, 10.0), ("hbm", 0.01, 3.0, 1200, 9.0),
                                        ("hbm_dram", 0.2 + 0.1 * i, 2.0, 2000, 8.0),
                                        ("hbm_dram_ssd", 0.8, 1.0, 5000, 4.0)]:
        rows.append([m, mode, "1", f"p{i}{mode}", hit, hit * 0.9, ttft, ttft * 0.8, tput, cost])
write(os.path.join(tidy, "ca-models.csv"),
      ["sim.model", "cache.mode", "seed", "point", "hist_hit_rate", "token_hit_rate_dram",
       "ttft_mean_s", "ttft_noqueue_mean_s", "prefill_throughput_tok_s", "cost_total_usd"], rows)
# ca-preload: RE 80 ms, no pre-loading 40 ms, pre-loading 30 -> 25 ms over the buffer sizes
rows = [["re", "false", 0, 0.080], ["hbm_dram_ssd", "false", 0, 0.040]]
rows += [["hbm_dram_ssd", "true", n, 0.030 - 0.0003 * n] for n in (0, 1, 3, 5, 10, 15)]
write(os.path.join(tidy, "ca-preload.csv"),
      ["cache.mode", "engine.preload", "engine.read_buffer_layers", "prefill_latency_hist_mean_s"],
      rows)
present = {"ca-models", "ca-preload"}
drawn = sorted(f for f, n in figures.items() if set(n) <= present)
skipped = sorted(f for f in figures if f not in drawn)
check("ca-models" in drawn and "ca-media" in drawn and "ca-preload" in drawn,
      f"the crafted tables should draw ca-models, ca-media, ca-preload: {drawn}")

out = os.path.join(tmp, "fig")
p = subprocess.run(["bash", MAKE, tidy, out], capture_output=True, text=True)
check(p.returncode == 0, f"make-figures exits 0 when tables are missing (rc {p.returncode}):\n"
      f"{p.stderr}")
for f in drawn:
    png, svg = os.path.join(out, f + ".png"), os.path.join(out, f + ".svg")
    ok_png = os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    ok_svg = os.path.exists(svg) and b"<svg" in open(svg, "rb").read(4096)
    check(ok_png and ok_svg, f"{f}: PNG and SVG drawn")
for f in skipped:
    lines = [ln for ln in p.stderr.splitlines() if f"skipped {f}:" in ln]
    check(len(lines) == 1, f"{f}: one 'skipped' line on stderr (got {len(lines)})")
    check(not glob.glob(os.path.join(out, f + ".*")), f"{f}: skipped, so no output files")
# the plotted numbers: ca-models' TTFT reduction is 0.75 for every model
ttft = os.path.join(out, "data", "ca-models", "ttft.dat")
vals = [ln.split()[1] for ln in open(ttft).read().splitlines()[1:] if ln.strip()] \
    if os.path.exists(ttft) else []
check(len(vals) == 4 and all(abs(float(v) - 0.75) < 1e-9 for v in vals),
      f"ca-models TTFT reduction data: {vals}")
# the paper's numbers come from the claims (experiments/claims.ini): LLaMA-2-13B hit rate 0.86
hp = os.path.join(out, "data", "ca-models", "hit_paper.dat")
first = [ln.split() for ln in open(hp) if not ln.startswith("#")][0] if os.path.exists(hp) else []
check(first[:2] == ["0", "0.86"], f"paper marker for LLaMA-2-13B's hit rate: {first}")

# a table lacking a column its figure needs: that figure fails loudly, the others are drawn
write(os.path.join(tidy, "ca-policies.csv"),
      ["cache.eviction", "cache.prefetch", "seed", "hist_hit_rate"],
      [["sa", "lookahead", 1, 0.8], ["lru", "none", 1, 0.5], ["fifo", "none", 1, 0.4],
       ["opt", "lookahead", 1, 0.9]])
out2 = os.path.join(tmp, "fig2")
p = subprocess.run(["bash", MAKE, tidy, out2], capture_output=True, text=True)
check(p.returncode == 1, f"a bad table makes make-figures exit 1 (rc {p.returncode})")
check("FAILED ca-policies" in p.stderr and "token_hit_rate_dram" in p.stderr,
      f"the failure names the figure and the missing column:\n{p.stderr}")
check(os.path.exists(os.path.join(out2, "ca-models.png")), "other figures are still drawn")
os.remove(os.path.join(tidy, "ca-policies.csv"))

# a gnuplot error: a copy of the tree with one broken figure script
tree = os.path.join(tmp, "src")
shutil.copytree(os.path.join(SRC, "paper-figures"), os.path.join(tree, "paper-figures"))
shutil.copytree(os.path.join(SRC, "analysis"), os.path.join(tree, "analysis"),
                ignore=shutil.ignore_patterns("__pycache__"))
os.makedirs(os.path.join(tree, "experiments", "cachedattention"))
shutil.copy(os.path.join(SRC, "experiments", "claims.ini"), os.path.join(tree, "experiments"))
for f in ("base.ini", "base-micro.ini"):  # the captions read the experiments' configs
    shutil.copy(os.path.join(SRC, "experiments", "cachedattention", f),
                os.path.join(tree, "experiments", "cachedattention"))
shutil.copytree(os.path.join(SRC, "sim", "data", "hardware"),
                os.path.join(tree, "sim", "data", "hardware"))
with open(os.path.join(tree, "paper-figures", "zz-broken.gp"), "w") as f:
    f.write("#@needs ca-preload\nplot D.'nosuch.dat' using 1:2 with lines\n")
out3 = os.path.join(tmp, "fig3")
p = subprocess.run(["bash", os.path.join(tree, "paper-figures", "make-figures.sh"), tidy, out3],
                   capture_output=True, text=True)
check(p.returncode == 1 and "FAILED zz-broken: gnuplot error" in p.stderr,
      f"a gnuplot error fails loudly (rc {p.returncode}):\n{p.stderr}")
check(os.path.exists(os.path.join(out3, "ca-preload.png")), "other figures are still drawn")

# usage errors
p = subprocess.run(["bash", MAKE, tidy], capture_output=True, text=True)
check(p.returncode == 2, f"one argument is a usage error (rc {p.returncode})")
p = subprocess.run(["bash", MAKE, os.path.join(tmp, "nosuch"), out], capture_output=True,
                   text=True)
check(p.returncode == 2 and "nosuch" in p.stderr, f"a missing TIDY_DIR is named: {p.stderr}")

if kvtest.failures:
    kvtest.finish("test_figures", f"; files under {tmp}")
shutil.rmtree(tmp)
print(f"test_figures: all checks passed ({len(drawn)} drawn, {len(skipped)} skipped)")
