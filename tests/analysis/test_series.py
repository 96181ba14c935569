#!/usr/bin/env python3
"""Tests of analysis/series.py (the figure options) and analysis/claim_points.py on tables whose
expected outputs are computed by hand here. usage: test_series.py SRC_DIR"""
import math
import os
import sys
import tempfile

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
SERIES = os.path.join(SRC, "analysis", "series.py")
CLAIMS = os.path.join(SRC, "analysis", "claim_points.py")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvtest  # noqa: E402
from kvtest import check, run  # noqa: E402


def blocks(text):
    """gnuplot blocks -> [(label, [row fields...])]"""
    out = []
    for blk in [b for b in text.split("\n\n\n") if b.strip()]:
        lines = blk.strip("\n").split("\n")
        label = lines[0].split('"')[1]
        out.append((label, [ln.split() for ln in lines[1:]]))
    return out


def near(a, b, tol=1e-9):
    return abs(float(a) - b) <= tol * max(1.0, abs(b))


tmp = tempfile.mkdtemp(prefix="kvlab-series-")
table = os.path.join(tmp, "t.csv")
with open(table, "w") as f:
    f.write("mode,model,seed,y,d,lo,hi,method\n"
            # model m1: ours (mode=c) y = 1 and 3 over two seeds, baseline (mode=re) y = 8
            "c,m1,1,1,2,0.5,1.5,psa-0.9-mean\n"
            "c,m1,2,3,2,2.5,3.5,psa-0.95-mean\n"
            "re,m1,1,8,4,7,9,dense\n"
            # model m2: ours y = 6, baseline y = 4
            "c,m2,1,6,3,5,7,psa-0.9-lognormal\n"
            "re,m2,1,4,4,3,5,topk-64\n"
            # a model no figure asks for
            "c,m3,1,100,1,0,0,topk-128\n")

# default mode (numeric x): mean, min, max, count per x
rc, out, err = run(SERIES, table, "--x", "seed", "--y", "y", "--where", "mode=c")
b = blocks(out)
check(rc == 0 and len(b) == 1, f"default mode runs ({err})")
rows = {r[0]: r for r in b[0][1]}
# seed 1: y = 1, 6, 100 -> mean 107/3, min 1, max 100, n 3; seed 2: y = 3
check(near(rows["1"][1], 107 / 3) and rows["1"][2] == "1" and rows["1"][3] == "100"
      and rows["1"][4] == "3", f"default mean/min/max/count: {rows.get('1')}")

# categorical x in a given order with labels; m3 is dropped
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--where", "mode=c",
                   "--x-categorical", "--x-order", "m2,m1", "--x-labels", "m1=Model one")
b = blocks(out)
check(rc == 0, f"categorical runs ({err})")
r = b[0][1]
check(len(r) == 2 and r[0][0] == "0" and near(r[0][1], 6) and r[0][5] == '"m2"'
      and r[1][0] == "1" and near(r[1][1], 2) and r[1][5:] == ['"Model', 'one"'],
      f"categorical order, mean and labels: {r}")
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--x-categorical",
                   "--x-order", "m1,m9")
check(rc != 0 and "m9" in err, f"--x-order naming a value with no rows is an error: {err}")

# reduction against a baseline at the same x: m1 ours mean 2 vs 8 -> 1 - 2/8 = 0.75; the seeds'
# values 1 and 3 give 0.875 and 0.625 (min and max swap); m2: 1 - 6/4 = -0.5
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--where", "mode=c",
                   "--base-where", "mode=re", "--op", "reduction", "--x-categorical",
                   "--x-order", "m1,m2")
r = blocks(out)[0][1] if rc == 0 else []
check(len(r) == 2 and near(r[0][1], 0.75) and near(r[0][2], 0.625) and near(r[0][3], 0.875)
      and near(r[1][1], -0.5), f"--op reduction: {r} {err}")
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--where", "mode=c",
                   "--base-where", "mode=re", "--op", "ratio", "--x-categorical",
                   "--x-order", "m1,m2")
r = blocks(out)[0][1] if rc == 0 else []
check(len(r) == 2 and near(r[0][1], 0.25) and near(r[1][1], 1.5), f"--op ratio: {r} {err}")
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--where", "mode=c",
                   "--base-where", "mode=re", "--op", "difference", "--x-categorical")
check(rc != 0 and "m3" in err, f"an x without a baseline row is an error: {err}")
# one baseline for every x: mean of the re rows (8 + 4) / 2 = 6; m2: 6 / 6 = 1
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--where", "mode=c",
                   "--base-where", "mode=re", "--base-global", "--op", "ratio",
                   "--x-categorical", "--x-order", "m1,m2")
r = blocks(out)[0][1] if rc == 0 else []
check(len(r) == 2 and near(r[0][1], 2 / 6) and near(r[1][1], 1.0), f"--base-global: {r} {err}")

# quotient of means: m1 mean(y) 2 / mean(d) 2 = 1 (per-row quotients 0.5 and 1.5)
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--y-over", "d",
                   "--where", "mode=c", "--x-categorical", "--x-order", "m1")
r = blocks(out)[0][1] if rc == 0 else []
check(len(r) == 1 and near(r[0][1], 1.0) and near(r[0][2], 0.5) and near(r[0][3], 1.5),
      f"--y-over: {r} {err}")

# band from the table's own columns: m1 lo (0.5 + 2.5) / 2 = 1.5, hi (1.5 + 3.5) / 2 = 2.5
rc, out, err = run(SERIES, table, "--x", "model", "--y", "y", "--band", "lo,hi",
                   "--where", "mode=c", "--x-categorical", "--x-order", "m1")
r = blocks(out)[0][1] if rc == 0 else []
check(len(r) == 1 and near(r[0][2], 1.5) and near(r[0][3], 2.5), f"--band: {r} {err}")

# regular-expression selection: methods psa-*-mean are the two m1 rows (seeds 1 and 2)
rc, out, err = run(SERIES, table, "--x", "seed", "--y", "y", "--match", "method=^psa-.*-mean$")
r = blocks(out)[0][1] if rc == 0 else []
check([x[:2] for x in r] == [["1", "1"], ["2", "3"]], f"--match: {r} {err}")
rc, out, err = run(SERIES, table, "--x", "seed", "--y", "y", "--match", "nosuch=x")
check(rc != 0 and "nosuch" in err, f"--match on a missing column is an error: {err}")

# claim_points: numbers, a published range, x positions, scale; from .ini and .csv
ini = os.path.join(tmp, "claims.ini")
with open(ini, "w") as f:
    f.write("[a]\npaper = 0.86\n\n[b]\npaper = 0.176-0.415\n\n[c]\npaper = sa > lru\n")
csvp = os.path.join(tmp, "claims.csv")
with open(csvp, "w") as f:
    f.write("id,group,title,paper,ours,status\na,g,t,0.86,0.5,FAIL\nc,g,t,sa > lru,x,pass\n")
rc, out, err = run(CLAIMS, ini, "--ids", "a,b", "--x", "0.5,2", "--scale", "100")
rows = [ln.split() for ln in out.splitlines() if not ln.startswith("#")]
check(rc == 0 and rows[0][:4] == ["0.5", "86", "86", "86"] and rows[1][0] == "2"
      and near(rows[1][1], 29.55) and near(rows[1][2], 17.6) and near(rows[1][3], 41.5),
      f"claim_points from ini: {rows} {err}")
rc, out, err = run(CLAIMS, csvp, "--ids", "a", "--field", "ours")
rows = [ln.split() for ln in out.splitlines() if not ln.startswith("#")]
check(rc == 0 and rows[0][:2] == ["0", "0.5"], f"claim_points ours from csv: {rows} {err}")
rc, out, err = run(CLAIMS, ini, "--ids", "a,zz")
check(rc != 0 and "zz" in err, f"an unknown claim id is an error: {err}")
rc, out, err = run(CLAIMS, ini, "--ids", "c")
check(rc != 0 and "not a number" in err, f"a non-numeric paper value is an error: {err}")
rc, out, err = run(CLAIMS, ini, "--ids", "c,a", "--nonnumeric", "nan")
rows = [ln.split() for ln in out.splitlines() if not ln.startswith("#")]
check(rc == 0 and math.isnan(float(rows[0][1])) and rows[1][1] == "0.86",
      f"--nonnumeric nan: {rows} {err}")

# Outputs replace only a regular file or nothing (common/kv_fs.h's rule): a symbolic link and a
# directory at -o are refused and left as they were.
victim = os.path.join(tmp, "victim.txt")
with open(victim, "w") as f:
    f.write("keep\n")
link = os.path.join(tmp, "link.dat")
os.symlink(victim, link)
rc, out, err = run(SERIES, table, "--x", "seed", "--y", "y", "--where", "mode=c", "-o", link)
check(rc != 0 and "symbolic link" in err and os.path.islink(link) and open(victim).read() == "keep\n",
      f"-o naming a symbolic link is refused: {rc} {err}")
rc, out, err = run(SERIES, table, "--x", "seed", "--y", "y", "--where", "mode=c", "-o", tmp)
check(rc != 0 and "directory" in err, f"-o naming a directory is refused: {rc} {err}")
check(not [n for n in os.listdir(tmp) if ".tmp" in n], "no temporary file left")

kvtest.finish("test_series")
