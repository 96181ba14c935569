#!/usr/bin/env bash
# The main job: builds KVLab, then reproduces both papers at a quick scale (minutes, CPU only):
# every sweep under experiments/ (CachedAttention through the simulator; PSA through the CPU
# attention reference on the bundled Q/K/V sample; the "beyond" experiments), the tidy tables,
# the figures and a generated REPRODUCTION.md.
#
#   scripts/main.sh            quick scale: one seed, a subset of the recorded queries
#   scripts/main.sh --full     full scale: three seeds, every recorded query
#   scripts/main.sh --out DIR  results somewhere else than out/
#
# Runs on all local cores (sweep -j). GPU measurements are used only where they were committed
# (none yet: the GPU rows of REPRODUCTION.md say "not run"). The public traces the experiments
# use ship in traces/data/ (traces/data/README.md: sources and licences).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=quick
out=out
while [ $# -gt 0 ]; do
  case "$1" in
    --full) scale=full ;;
    --quick) scale=quick ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "main: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
start=$(date +%s)
scripts/build.sh
bin=build/bin
mkdir -p "$out"
results="$out/results"
tidy="$out/tidy"
figures="$out/figures"

failed=()
skipped=()
for sweep in experiments/cachedattention/*.ini experiments/psa/*.ini experiments/psa-serving/*.ini experiments/beyond/*.ini; do
  [ -f "$sweep" ] || continue
  grep -q '^\[sweep\]' "$sweep" || continue          # base configs are not sweeps
  missing=""
  for f in $(grep -o 'traces/data/[A-Za-z0-9_.-]\+' "$sweep" | sort -u); do
    [ -f "$f" ] || missing="$missing $f"
  done
  if [ -n "$missing" ]; then
    skipped+=("$sweep (missing:$missing; a checkout without the data files?)")
    continue
  fi
  echo "main: $sweep ($scale)" >&2
  scale_arg=()
  grep -q "^\[$scale\]" "$sweep" && scale_arg=(--scale "$scale")
  if ! "$bin/sweep" -q "${scale_arg[@]}" -o "$results" "$sweep"; then
    failed+=("$sweep")
  fi
done

python3 analysis/aggregate.py "$results" -o "$tidy"
# PSA serving: means over seeds (what the claims compare) and the tables of docs/psa-serving.md
python3 experiments/psa-serving/report.py "$tidy" --means "$tidy" -o "$out/psa-serving.md"
KVLAB_SCALE="$scale" paper-figures/make-figures.sh "$tidy" "$figures"
python3 analysis/reproduce.py --claims experiments/claims.ini --tables "$tidy" --src . \
  --scale "$scale" -o "$out/REPRODUCTION.md"

echo
echo "main: done in $(( $(date +%s) - start )) s at the $scale scale"
echo "  tables   $tidy/*.csv"
echo "  figures  $figures/*.png, *.svg"
echo "  report   $out/REPRODUCTION.md"
for s in "${skipped[@]}"; do echo "  skipped  $s"; done
for s in "${failed[@]}"; do echo "  FAILED   $s (its failed points are kept under $results)"; done
grep '^Totals:' "$out/REPRODUCTION.md" || true
[ ${#failed[@]} -eq 0 ]
