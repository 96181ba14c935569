#!/usr/bin/env bash
# v11_call.sh — one device call for the v11 questions (kernels/bench/NOTES.md, "The next device
# call"): PSA items on tensor cores (tests, three sanitizers, kvbench psa rows) and the
# pool-small-ldg8 bandwidth probe. Every stage under `timeout`; logs written to a work folder and
# packed into ONE file, $OUT/v11.tar.gz (the device tool brings back at most 8 files and no
# subfolders). Usage: KVLAB_COMMIT=<sha> kernels/bench/v11_call.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
FINAL="${OUT:-out/v11}"; mkdir -p "$FINAL"
OUT="${TMPDIR:-/tmp}/kvlab-v11"; rm -rf "$OUT"; mkdir -p "$OUT"
trap 'tar -czf "$FINAL/v11.tar.gz" -C "$OUT" .' EXIT
export PATH="$PATH:/usr/local/cuda/bin"
{ echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  echo "date: $(date -u +%FT%TZ)"; echo "commit: ${KVLAB_COMMIT:-unknown}"
  echo "command: $0 $*"; } > "$OUT/run-info.txt"
st() { local name=$1 t=$2; shift 2; local s=$(date +%s)
  timeout "$t" "$@" > "$OUT/$name.txt" 2>&1; local rc=$?
  echo -e "$name\t$rc\t$(( $(date +%s) - s ))" | tee -a "$OUT/stages.tsv"; return $rc; }
st configure 60 cmake -S . -B build -G Ninja -DKVLAB_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
  -DKVLAB_CUDA_ARCHITECTURES=90 || exit 1
st build 200 cmake --build build -j 16 --target kvbench test_gpu_attn || exit 1
st test-mma-options 90 build/tests/test_gpu_attn test_psa_mma_options
st test-mma-random 90 build/tests/test_gpu_attn test_psa_mma_random
st bench-psa 120 build/bin/kvbench --reps 15 --sections psa --csv "$OUT/bench-psa.csv"
st bench-bw 60 build/bin/kvbench --reps 15 --sections bw --csv "$OUT/bench-bw.csv"
for tool in memcheck racecheck synccheck; do
  for c in test_psa_mma_options test_psa_mma_random; do
    KVLAB_GPU_TEST_TINY=1 st "san-$tool-$c" 60 compute-sanitizer --tool $tool --error-exitcode 1 \
      build/tests/test_gpu_attn $c
  done
done
tail -3 "$OUT"/san-*.txt | grep -i "error summary\|==" | head -20
grep -E "psa|pool-small|bandwidth" "$OUT/bench-psa.txt" "$OUT/bench-bw.txt" | head -80
