#!/usr/bin/env bash
# diag_select.sh — where the select phase of top-k and PSA spends its time (issue 12), in one
# device call: per-kernel GPU times from Nsight Systems and per-launch-configuration counters from
# Nsight Compute for the block-score, radix-select and PSA ranking kernels.
#
#   kernels/bench/diag_select.sh [--budget SECONDS]      (repository root; GPU machine)
#
# Stages, each under `timeout`, each writing its own log into $OUT/diag-select/:
#   build   CMake + ninja (KVLAB_GPU_ONLY=ON, sm_90) into build/ unless build/bin/kvbench exists
#   nsys    nsys profile of `kvbench --sections topk,psa --reps 5`; exports the kernel trace
#           (trace.csv: start, duration, grid and block of every kernel, graph nodes included)
#           and the per-kernel summary (kern_sum.csv)
#   ncu     one launch per (kernel, launch configuration) of the block-score kernels
#           (kvc__score_kernel, kvc__score_loop_kernel), kvc__select_kernel, the PSA ranking
#           kernels and (since v9) PSA's rounds (kvc__psa_attend_kernel, kvc__psa_combine_kernel,
#           where PSA's time at B >= 8 goes): SpeedOfLight, Occupancy, LaunchStats,
#           MemoryWorkloadAnalysis (ncu.txt); then PSA's attend kernel alone, its first 4 launches
#           at batch 8 and at batch 32 (ncu-attend-b8.txt, ncu-attend-b32.txt: kvbench --psa-batch)
# run-info.txt records device, date, commit (KVLAB_COMMIT where there is no .git) and command.
# Why: v8's all-heads score kernel (contiguous metadata runs) made the select phase slower, not
# faster, so the 256 B-piece explanation of NOTES.md ("Next for top-k") was wrong; this splits the
# phase into its kernels before the next change.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT="${OUT:-$PWD/out/device}"
BUDGET=300
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="$2"; shift ;;
    *) echo "usage: $0 [--budget SECONDS]" >&2; exit 2 ;;
  esac
  shift
done
START=$(date +%s)
D="$OUT/diag-select"
mkdir -p "$D" || exit 2
export PATH="$PATH:/usr/local/cuda/bin"
left() { echo $(( START + BUDGET - $(date +%s) )); }
stage() { # NAME MAX LOG CMD...
  local name=$1 max=$2 logf=$3; shift 3
  local t; t=$(left); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 10 ]; then echo "== $name: skipped (budget)"; return 99; fi
  echo "== $name (limit $t s): $*"
  timeout -k 5 "$t" "$@" > "$logf" 2>&1
  local rc=$?
  echo "== $name: exit $rc"
  return $rc
}
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "command: $0 --budget $BUDGET"
  echo "commit: ${KVLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
  echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
  echo "nsys: $(nsys --version 2>&1 | head -1)"
  echo "ncu: $(ncu --version 2>&1 | tail -1)"
} > "$D/run-info.txt"
cat "$D/run-info.txt"
B=build
if [ ! -x "$B/bin/kvbench" ]; then
  GEN="-G Ninja"; command -v ninja >/dev/null 2>&1 || GEN=""
  stage configure 90 "$D/configure.log" cmake -S . -B "$B" $GEN -DKVLAB_GPU_ONLY=ON \
    -DCMAKE_BUILD_TYPE=Release -DKVLAB_CUDA_ARCHITECTURES=90 &&
    stage build 240 "$D/build.log" cmake --build "$B" -j "$(nproc)"
fi
[ -x "$B/bin/kvbench" ] || { echo "no kvbench"; exit 1; }
if command -v nsys >/dev/null 2>&1; then
  stage nsys 150 "$D/nsys.log" nsys profile --force-overwrite true --cuda-graph-trace=node \
    -o "$D/sel" "$B/bin/kvbench" --reps 5 --sections topk,psa --csv "$D/bench.csv"
  stage nsys-export 60 "$D/nsys-export.log" nsys stats --force-export true \
    --report cuda_gpu_trace,cuda_gpu_kern_sum --format csv --output "$D/sel" "$D/sel.nsys-rep"
  rm -f "$D/sel.sqlite"
  gzip -f "$D/sel.nsys-rep" 2>/dev/null
else
  echo "no nsys on this machine"
fi
if command -v ncu >/dev/null 2>&1; then
  stage ncu 150 "$D/ncu.txt" ncu --filter-mode per-launch-config --launch-count 1 \
    -k 'regex:kvc__(score|select|psa_rank|psa_keys|psa_prep|block_sort|psa_attend|psa_combine)' \
    --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section MemoryWorkloadAnalysis "$B/bin/kvbench" --reps 1 --no-graphs --sections topk,psa \
    --csv "$D/bench-ncu.csv"
  # PSA's attend kernel launches the same grid at every batch, so the per-launch-config filter
  # above profiles it at B1 only: its first 4 launches (the rounds of one op) at B8 and at B32
  for b in 8 32; do
    stage "ncu-attend-b$b" 60 "$D/ncu-attend-b$b.txt" ncu -k 'regex:kvc__psa_attend_kernel' \
      --launch-count 4 --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section MemoryWorkloadAnalysis "$B/bin/kvbench" --reps 1 --no-graphs --sections psa \
      --psa-batch "$b" --csv "$D/bench-ncu-attend-b$b.csv"
  done
else
  echo "no ncu on this machine"
fi
ls -la "$D"
