#!/usr/bin/env bash
# device_run.sh — everything the GPU work needs, in ONE call on the GPU machine (H100/H200):
#   1. build the CUDA library, the GPU test and kvbench for sm_90 (CMake when the project's
#      dependencies are there; otherwise a direct nvcc/cc build of just these, without HDF5);
#   2. correctness: tests/gpu/test_gpu_attn (every kernel vs the CPU reference);
#   3. compute-sanitizer memcheck and racecheck on the small test shapes;
#   4. PyTorch SDPA on the benchmark shapes (sdpa_bench.py), then kvbench in the same run;
#   5. the kernel profile for the simulator (profile.h5).
# Output under $OUT (at most 8 files): run.log (everything, with device, date, command), test.log,
# sanitizer.log, sdpa.csv, bench.csv, bench.txt, gemm.csv, profile.h5.
# Usage (repository root): kernels/bench/device_run.sh [--full]   (--full: all shapes, 20 reps)
# Each stage has a time limit so the whole call ends inside 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/device}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
full=0
[ "${1:-}" = "--full" ] && full=1
echo "== kvlab device run: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); command: $0 $*; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
nvcc --version 2>&1 | tail -2 || true
command -v compute-sanitizer || true
NP=$(nproc)
start=$(date +%s)
stage() { echo "== [$(( $(date +%s) - start )) s] $*"; }

# ---- 1. build ----------------------------------------------------------------------------------
stage "build"
BIN=""; TEST=""
if timeout 200 cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVLAB_CUDA=ON \
     -DKVLAB_CUDA_ARCHITECTURES=90 >"$OUT/cmake.tmp" 2>&1 &&
   timeout 200 cmake --build build-dev -j "$NP" --target kvbench test_gpu_attn >>"$OUT/cmake.tmp" 2>&1; then
  BIN=build-dev/bin/kvbench; TEST=build-dev/tests/test_gpu_attn
  echo "built with CMake"
else
  tail -5 "$OUT/cmake.tmp"
  echo "CMake build unavailable (project dependencies missing?): direct nvcc build without HDF5"
  B=build-nvcc; mkdir -p $B
  INC="-Ikernels/cuda -Ikernels -Icommon -Itests"
  DEF="-D_POSIX_C_SOURCE=200809L -DKVLAB_NO_HDF5 -DKVLAB_VERSION=\"dev\""
  ok=1
  for f in kernels/cuda/*.cu; do
    nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -lineinfo $INC $DEF -c "$f" \
         -o $B/$(basename "$f").o & 
  done
  wait
  for f in kernels/attn_method.c kernels/attn_dense.c kernels/attn_blockmeta.c kernels/attn_sparse.c kernels/attn_metrics.c \
           kernels/attn_eval.c common/kv_err.c common/kv_rng.c kernels/cuda/kvc_plan.c \
           common/kv_pool.c tests/test_util.c tests/gpu/test_gpu_attn.c kernels/bench/kvbench.c; do
    cc -O2 -std=c11 $INC $DEF -c "$f" -o $B/$(basename "$f").o || ok=0
  done
  LIBO=$(ls $B/*.cu.o) 
  COMMON="$B/attn_method.c.o $B/attn_dense.c.o $B/attn_blockmeta.c.o $B/attn_sparse.c.o $B/attn_metrics.c.o $B/attn_eval.c.o $B/kv_err.c.o $B/kv_rng.c.o $B/kvc_plan.c.o $B/kv_pool.c.o"
  nvcc -o $B/test_gpu_attn $B/test_gpu_attn.c.o $B/test_util.c.o $LIBO $COMMON -lcublas -lm || ok=0
  nvcc -o $B/kvbench $B/kvbench.c.o $LIBO $COMMON -lcublas -lm || ok=0
  [ $ok = 1 ] && BIN=$B/kvbench && TEST=$B/test_gpu_attn
fi
rm -f "$OUT/cmake.tmp"
[ -n "$BIN" ] || { echo "BUILD FAILED"; exit 1; }

# Recorded sample as raw float32 for the no-HDF5 build and for kvbench --raw.
RAW=""
if [ -f traces/data/qkv_sample.h5 ]; then
  if timeout 60 python3 kernels/bench/qkv_to_raw.py traces/data/qkv_sample.h5 /tmp/kvlab_qkvraw; then
    RAW=/tmp/kvlab_qkvraw; export KVLAB_QKV_RAW=$RAW
  fi
fi

# ---- 2. correctness ----------------------------------------------------------------------------
stage "correctness: $TEST"
KVLAB_SOURCE_DIR=$PWD timeout 150 "$TEST" 2>&1 | tee "$OUT/test.log"
echo "test exit: ${PIPESTATUS[0]}"

# ---- 3. sanitizers -----------------------------------------------------------------------------
stage "compute-sanitizer (small shapes)"
{
  for tool in memcheck racecheck; do
    for t in test_dense_shapes test_meta_build_and_append test_sparse_random; do
      echo "-- $tool $t"
      KVLAB_GPU_TEST_SMALL=1 KVLAB_SOURCE_DIR=$PWD timeout 60 compute-sanitizer --tool $tool \
        --error-exitcode 3 "$TEST" $t 2>&1 | tail -25
      echo "exit: ${PIPESTATUS[0]}"
    done
  done
} > "$OUT/sanitizer.log" 2>&1
grep -E "^-- |^exit|ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer.log"

# ---- 4. SDPA and kvbench -----------------------------------------------------------------------
stage "SDPA timings"
Q=--quick; R=10
[ $full = 1 ] && Q="" && R=20
timeout 90 python3 kernels/bench/sdpa_bench.py "$OUT/sdpa.csv" $Q --reps $R 2>&1 | tail -30
stage "kvbench"
timeout 200 "$BIN" $Q --reps $R --sdpa "$OUT/sdpa.csv" --csv "$OUT/bench.csv" \
  --gemm-csv "$OUT/gemm.csv" ${RAW:+--raw $RAW} 2>&1 | tee "$OUT/bench.txt"
echo "kvbench exit: ${PIPESTATUS[0]}"

# ---- 5. profile --------------------------------------------------------------------------------
stage "profile"
DEV=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
timeout 30 python3 kernels/bench/profile_h5.py "$OUT/bench.csv" "$OUT/gemm.csv" "$DEV" "$OUT/profile.h5" || true
stage "done"
grep -E "^targets:|MISSED|^  target" "$OUT/bench.txt" | tail -40
