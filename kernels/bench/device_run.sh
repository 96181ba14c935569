#!/usr/bin/env bash
# device_run.sh — everything the GPU work needs, in ONE call on the GPU machine (H200/H100), well
# under the call's limit (a global deadline, default 470 s, bounds every stage's timeout). Stages run
# in priority order and the last ones are skipped when the deadline nears:
#   build     CMake + ninja, KVLAB_GPU_ONLY=ON (no GSL/HDF5/inih there), sm_90, into build/
#   test      ctest: test_kvc_host and test_gpu_attn (every kernel vs the CPU reference; the
#             recorded sample through qkv_to_raw.py's raw export)
#   sdpa      PyTorch SDPA on the benchmark shapes (prints which backend ran)
#   bench     kvbench (dense, top-k, PSA, recorded, GEMM) against SDPA, copy and read bandwidth
#   profile   profile.h5 for the simulator (profile_h5.py)
#   sanitize  compute-sanitizer racecheck on test_gpu_attn's cases at tiny sizes
#             (KVLAB_GPU_TEST_TINY=1: racecheck instruments every shared-memory access), memcheck and
#             synccheck at small sizes (KVLAB_GPU_TEST_SMALL=1), each run <= 60 s, until the deadline
# kvbench runs one process per section (bw, psa, topk, dense, rec, gemm), so that a failure in one
# section keeps the others; their CSVs are merged into bench.csv (header and `bandwidth` rows from
# the first CSV present: bw's, which adds the v5 bulk-copy probe rows, else psa's). Sections time execution
# variants ("tune" rows: dense ring depth / combine / CUDA or tensor cores, PSA item size /
# speculation / rounds; top-k attention on tensor cores). When the dense or top-k section fails
# it runs again with --no-mma (without the tensor-core variants), writing the same CSV.
# A failing stage is recorded and the script goes on; stages that need a missing output are
# skipped. Nothing runs in the background (no process substitution, no wait): each stage is one
# foreground command under `timeout`, its output in its own log.
# Output: $OUT/kernels-results.tar.gz (bench.csv, sdpa.csv, gemm.csv, profile.h5, build/test/
# sanitizer/bench logs, run-info.txt with device, date, commit, command; stages.tsv with each
# stage's exit code and time) and a summary table printed LAST on stdout.
# Usage (repository root): kernels/bench/device_run.sh [--quick] [--stages build,test,...]
#                                                      [--budget SECONDS] [--reps N]
#   --quick: small test sizes, fewer benchmark shapes and reps (a re-run in a few minutes).
# Environment: OUT (default out/device), KVLAB_COMMIT (names the commit when .git is absent),
# KVLAB_SAN_CASES (the sanitized test cases, in order; default: every case).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT="${OUT:-$ROOT/out/device}"
START=$(date +%s)
CMDLINE="$0 $*"
QUICK=0
STAGES="build,test,sdpa,bench,profile,sanitize"
BUDGET=470
REPS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --full) ;; # the default; kept for the command line of earlier runs
    --stages) STAGES="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--stages build,test,sanitize,sdpa,bench,profile] [--budget S] [--reps N]" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$REPS" ] || { [ $QUICK = 1 ] && REPS=7 || REPS=15; }
DEADLINE=$(( START + BUDGET ))
RESERVE=20 # seconds kept for packing and the summary
export PATH="$PATH:/usr/local/cuda/bin"
mkdir -p "$OUT"
W="${TMPDIR:-/tmp}/kvlab-device-run/kernels-results" # packed into $OUT at the end: $OUT gets ONE file
rm -rf "$W"
mkdir -p "$W"
B="$ROOT/build"
RAW="$W/qkvraw"

log() { echo "$*" | tee -a "$W/run.log"; }
elapsed() { echo $(( $(date +%s) - START )); }
want() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
printf 'stage\tstatus\texit\tseconds\tnote\n' > "$W/stages.tsv"
record() { # stage status rc seconds note
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$W/stages.tsv"
  log "== [$(elapsed) s] $1: $2 (exit $3, $4 s) $5"
}
# run_stage NAME MAX_SECONDS LOGFILE CMD...: runs CMD in the foreground under a timeout that also
# respects the global deadline; records status ok / FAILED / TIMEOUT / skipped.
run_stage() {
  local name=$1 max=$2 logf=$3; shift 3
  local left=$(( DEADLINE - $(date +%s) - RESERVE ))
  local t=$max
  [ $left -lt $t ] && t=$left
  if [ $t -lt 10 ]; then
    record "$name" skipped - 0 "no time left in the ${BUDGET} s budget"
    return 99
  fi
  log "== [$(elapsed) s] $name (limit $t s): $*"
  local s0=$(date +%s)
  timeout -k 10 "$t" "$@" > "$logf" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - s0 ))
  if [ $rc -eq 0 ]; then record "$name" ok 0 $dt ""
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then record "$name" TIMEOUT $rc $dt "limit $t s"
  else record "$name" FAILED $rc $dt "see $(basename "$logf")"
  fi
  return $rc
}

# ---- run info ------------------------------------------------------------------------------------
COMMIT="${KVLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo 'unknown (no .git here; set KVLAB_COMMIT)')}"
DEV=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "command: $CMDLINE"
  echo "commit: $COMMIT"
  echo "dirty files: $(git status --porcelain 2>/dev/null | wc -l)"
  echo "device: ${DEV:-none}"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv 2>&1
  echo "nvcc: $(nvcc --version 2>&1 | tail -2 | tr '\n' ' ')"
  echo "cmake: $(cmake --version 2>&1 | head -1); ninja: $(ninja --version 2>&1)"
  echo "compute-sanitizer: $(compute-sanitizer --version 2>&1 | tail -1)"
  echo "python: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)"
  echo "cores: $(nproc); host: $(uname -r)"
} > "$W/run-info.txt" 2>&1
cat "$W/run-info.txt" | tee -a "$W/run.log"

# ---- build ---------------------------------------------------------------------------------------
HAVE_BIN=0
if want build; then
  GEN="-G Ninja"; command -v ninja >/dev/null 2>&1 || GEN=""
  run_stage configure 90 "$W/configure.log" cmake -S . -B "$B" $GEN -DKVLAB_GPU_ONLY=ON \
    -DCMAKE_BUILD_TYPE=Release -DKVLAB_CUDA_ARCHITECTURES=90
  if [ $? -eq 0 ]; then
    run_stage build 300 "$W/build.log" cmake --build "$B" -j "$(nproc)"
  else
    record build skipped - 0 "configure failed"
  fi
fi
[ -x "$B/tests/test_gpu_attn" ] && [ -x "$B/bin/kvbench" ] && HAVE_BIN=1
grep -E "warning|error" "$W/build.log" 2>/dev/null | head -20 > "$W/build-warnings.txt" || true

# The recorded sample as raw float32 (tests and kvbench read it; no C HDF5 in this build).
if [ -f traces/data/qkv_sample.h5 ] && { want test || want sanitize || want bench; }; then
  run_stage qkv_to_raw 60 "$W/qkv_to_raw.log" python3 kernels/bench/qkv_to_raw.py \
    traces/data/qkv_sample.h5 "$RAW"
fi
[ -f "$RAW/meta.txt" ] && export KVLAB_QKV_RAW="$RAW"
export KVLAB_SOURCE_DIR="$ROOT"

# ---- correctness ---------------------------------------------------------------------------------
if want test; then
  if [ $HAVE_BIN = 1 ]; then
    [ $QUICK = 1 ] && export KVLAB_GPU_TEST_SMALL=1
    run_stage test 260 "$W/test.log" ctest --test-dir "$B" -V --timeout 250
    unset KVLAB_GPU_TEST_SMALL
  else
    record test skipped - 0 "no test binary"
  fi
fi

# ---- SDPA and kvbench ----------------------------------------------------------------------------
Q=""; [ $QUICK = 1 ] && Q="--quick"
if want sdpa; then
  run_stage sdpa 120 "$W/sdpa.log" python3 kernels/bench/sdpa_bench.py "$W/sdpa.csv" $Q --reps "$REPS"
fi
if want bench; then
  if [ $HAVE_BIN = 1 ]; then
    SD=""; [ -f "$W/sdpa.csv" ] && SD="--sdpa $W/sdpa.csv"
    RW=""; [ -f "$RAW/meta.txt" ] && RW="--raw $RAW"
    : > "$W/bench.txt"
    for sec in bw psa topk dense rec gemm; do
      GC=""; [ $sec = gemm ] && GC="--gemm-csv $W/gemm.csv"
      LIM=150; [ $sec = bw ] && LIM=45 # v5 probes: a hung bulk copy must not eat the budget
      run_stage "bench-$sec" $LIM "$W/bench-$sec.txt" "$B/bin/kvbench" $Q --reps "$REPS" $SD $RW \
        --sections "$sec" --csv "$W/bench-$sec.csv" $GC
      rc=$?
      cat "$W/bench-$sec.txt" >> "$W/bench.txt"
      if { [ $sec = dense ] || [ $sec = topk ]; } && [ $rc -ne 0 ] && [ $rc -ne 99 ]; then
        # the tensor-core variant may have left the context unusable: the rows without it
        run_stage "bench-$sec-nomma" 150 "$W/bench-$sec-nomma.txt" "$B/bin/kvbench" $Q \
          --reps "$REPS" $SD $RW --no-mma --sections "$sec" --csv "$W/bench-$sec.csv"
        cat "$W/bench-$sec-nomma.txt" >> "$W/bench.txt"
      fi
    done
    # one bench.csv: the first file's header and bandwidth rows, then every section's rows
    first=1
    for sec in bw psa topk dense rec gemm; do
      f="$W/bench-$sec.csv"; [ -f "$f" ] || continue
      if [ $first = 1 ]; then cat "$f" > "$W/bench.csv"; first=0
      else grep -v -e '^section,' -e '^bandwidth,' "$f" >> "$W/bench.csv"; fi
    done
  else
    record bench skipped - 0 "no kvbench binary"
  fi
fi

# ---- profile -------------------------------------------------------------------------------------
if want profile; then
  if [ -f "$W/bench.csv" ] && [ -f "$W/gemm.csv" ]; then
    run_stage profile 40 "$W/profile.log" python3 kernels/bench/profile_h5.py "$W/bench.csv" \
      "$W/gemm.csv" "${DEV:-unknown}" "$W/profile.h5"
  else
    record profile skipped - 0 "no bench.csv / gemm.csv"
  fi
fi

# ---- sanitizers (small sizes) -------------------------------------------------------------------
if want sanitize; then
  if [ $HAVE_BIN = 1 ] && command -v compute-sanitizer >/dev/null 2>&1; then
    CASES="${KVLAB_SAN_CASES:-test_sparse_random test_psa_options test_psa_long test_psa_rank2_long test_dense_shapes test_dense_lse test_meta_build_and_append test_fill_tiled test_dense_mma_shapes test_dense_mma_lse test_topk_mma_random test_dense_bulk_shapes test_dense_bulk_lse test_dense_regs_shapes test_dense_regs_lse test_sparse_score_heads test_sparse_score_v2 test_sparse_score_loop test_psa_fma_random test_psa_fma_options}"
    for tool in racecheck memcheck synccheck; do
      SIZE=KVLAB_GPU_TEST_SMALL; [ $tool = racecheck ] && SIZE=KVLAB_GPU_TEST_TINY
      for t in $CASES; do
        run_stage "sanitize-$tool-$t" 60 "$W/san-$tool-$t.log" env "$SIZE=1" \
          compute-sanitizer --tool "$tool" --error-exitcode 3 --print-limit 20 \
          "$B/tests/test_gpu_attn" "$t"
      done
    done
    { for f in "$W"/san-*.log; do
        [ -f "$f" ] || continue
        echo "-- $(basename "$f" .log)"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|cases:|FAIL|Invalid|Race|Barrier|hazard" "$f" | head -12
        sz=$(stat -c %s "$f"); [ "$sz" -gt 300000 ] && { tail -c 300000 "$f" > "$f.tail"; mv "$f.tail" "$f"; }
      done; } > "$W/sanitizer.log" 2>&1
  else
    record sanitize skipped - 0 "no test binary or no compute-sanitizer"
  fi
fi

# ---- pack (one file back from the device) -------------------------------------------------------
rm -rf "$RAW"
log "== [$(elapsed) s] packing"
tar -czf "$OUT/kernels-results.tar.gz" -C "$(dirname "$W")" kernels-results 2>>"$W/run.log"
TAR_RC=$?
SZ=$(stat -c %s "$OUT/kernels-results.tar.gz" 2>/dev/null || echo 0)
if [ "$SZ" -gt 16000000 ]; then # the device returns files up to 16 MiB: drop the biggest logs
  ls -S "$W"/*.log 2>/dev/null | head -5 | while read -r f; do tail -c 200000 "$f" > "$f.t" && mv "$f.t" "$f"; done
  tar -czf "$OUT/kernels-results.tar.gz" -C "$(dirname "$W")" kernels-results
  SZ=$(stat -c %s "$OUT/kernels-results.tar.gz")
fi

# ---- summary (printed last) ----------------------------------------------------------------------
U="$W"
echo
echo "================ SUMMARY ($(elapsed) s; ${DEV:-no GPU}; commit ${COMMIT:0:12}) ================"
grep -v '^sanitize-' "$U/stages.tsv" | column -t -s $'\t' 2>/dev/null
NSAN=$(grep -c '^sanitize-' "$U/stages.tsv")
NSANOK=$(grep '^sanitize-' "$U/stages.tsv" | grep -c $'\tok\t')
echo "-- sanitizer runs: $NSANOK ok of $NSAN (racecheck, memcheck, synccheck x cases); not ok:"
grep '^sanitize-' "$U/stages.tsv" | grep -v $'\tok\t' | cut -f1-4 | head -12
grep -hE "ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]" "$U"/san-*.log 2>/dev/null | sort | uniq -c | head -8
echo "-- tests:"
grep -hE "tests passed|tests failed|^ *[0-9]+ cases:|FAIL |MISMATCH|pair checks|dense: [0-9]+ cases|skip  " "$U/test.log" 2>/dev/null | head -25
echo "-- build warnings: $(wc -l < "$U/build-warnings.txt" 2>/dev/null || echo 0)"
head -5 "$U/build-warnings.txt" 2>/dev/null
if [ -f "$U/sdpa.log" ]; then echo "-- sdpa:"; grep -E "^sdpa:|backend" "$U/sdpa.log" | cut -c1-160 | head -4; fi
if [ -f "$U/bench.txt" ]; then
  grep -E "^device|^recording" "$U/bench.txt"
  python3 - "$U/bench.csv" <<'PY' 2>/dev/null || grep -E "^(dense|topk|psa) " "$U/bench.txt" | head -60
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'sect':5} {'dt':4} {'B':>3} {'L':>6} {'method':22} {'us':>9} {'SDPA us':>9} {'SDPA/us':>7} {'xcopy':>5}  note")
tune = [r for r in rows if r["section"] == "phase" or (r["section"] == "tune" and r["method"].startswith("psa"))]
for r in rows:
    if r["section"] == "bandwidth":
        print(f"{r['method']} bandwidth {float(r['gbps']):.0f} GB/s")
        continue
    if "attend" in r["method"] or r["section"] in ("tune", "phase"):
        continue
    us, sd = float(r["us"]), float(r["sdpa_us"])
    ratio = f"{sd / us:7.2f}" if sd == sd and us > 0 else "      -"
    print(f"{r['section']:5} {r['dtype']:4} {r['batch']:>3} {r['len']:>6} {r['method'][:22]:22} {us:9.1f} "
          f"{sd:9.1f} {ratio} {float(r['ratio_copy']):5.2f}  {r['note'][:48]}")
print("-- PSA variants and select phases (all variants: bench.csv section tune):")
for r in tune:
    print(f"{r['section']:5} {r['batch']:>3} {r['len']:>6} {r['method'][:30]:30} {float(r['us']):9.1f}  {r['note'][:70]}")
PY
  grep -E "^targets:|^  MISSED" "$U/bench.txt" | cut -c1-150 | head -30
fi
echo "-- results: $OUT/kernels-results.tar.gz ($SZ bytes, tar exit $TAR_RC); unpack into kernels/bench/results/h200/"
