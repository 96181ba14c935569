#!/usr/bin/env bash
# device_run.sh - the GPU profile and the validation in one device call (docs/sim.md, "GPU profile").
#
#   bash sim/profiling/device_run.sh [--smoke] [--out DIR] [--only profile|validate|layers]
#
# Runs, from the repository root, with python3 holding torch (and transformers for the
# validation and the `host` stage):
#   1. kvprof_ops.py       operator profile          soft budget KVLAB_PROFILE_S (110 s),
#                                                    hard limit  KVLAB_PROFILE_HARD_S (140 s)
#   2. kvprof_validate.py  whole-iteration timings   soft budget KVLAB_VALIDATE_S (100 s),
#                                                    hard limit  KVLAB_VALIDATE_HARD_S (130 s)
#   3. kvprof_layers.py    time per layer by layer   soft budget KVLAB_LAYERS_S (90 s),
#      count, outside the validation grid (for       hard limit  KVLAB_LAYERS_HARD_S (120 s)
#      kvprof_install.py's launch_gap.csv)
# A step that dies (timeout, crash, broken CUDA context) is restarted with --resume while its
# hard limit lasts: finished stages are kept, the stage it died in is skipped. Outputs are
# written row by row, so whatever was measured survives. Everything lands in ONE file,
# DIR/profile-results.tar.gz (DIR = --out, else $OUT), holding profile/, validate/, layers/,
# logs/ and summary.txt; the summary table is printed last.
# KVLAB_COMMIT names the commit where the tree has no .git (recorded in every output);
# KVLAB_PYTHON picks the interpreter (default python3); KVLAB_PIN_CPU=N pins each step to CPU N
# (kvprof_common.pin_from_env; recorded as pinned_cpu in meta.ini). --smoke: CPU, tiny shapes, seconds.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
here=sim/profiling
py="${KVLAB_PYTHON:-python3}"
smoke=()
out="${OUT:-}"
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=(--smoke) ;;
    --out) out="$2"; shift ;;
    --only) only="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "device_run.sh: no output folder (--out DIR or \$OUT)" >&2; exit 2; }
mkdir -p "$out" || exit 2
work="$(mktemp -d "${TMPDIR:-/tmp}/kvprof.XXXXXX")" || exit 2
mkdir -p "$work/logs"
export KVLAB_COMMAND="sim/profiling/device_run.sh${smoke:+ --smoke}${only:+ --only $only}"
export PYTHONUNBUFFERED=1
t_all=$SECONDS

# run_step NAME SCRIPT SOFT HARD: runs, resumes after a death while HARD seconds last
run_step() {
  local name="$1" script="$2" soft="$3" hard="$4" start=$SECONDS left rc=0 try=0 resume=()
  while :; do
    left=$(( hard - (SECONDS - start) ))
    if [ "$left" -le 5 ]; then
      echo "== $name: no time left for another attempt" | tee -a "$work/logs/$name.log"
      break
    fi
    # a resumed attempt may use 60% of the hard time left when the soft budget is spent
    local budget=$(( soft - (SECONDS - start) )) floor=$(( left * 6 / 10 ))
    [ "$budget" -lt "$floor" ] && budget=$floor
    [ "$budget" -lt 5 ] && budget=5
    echo "== $name: attempt $((try + 1)), soft budget ${budget} s, hard limit ${left} s" \
      | tee -a "$work/logs/$name.log"
    timeout -k 10 "$left" "$py" "$here/$script" --out "$work/$name" --budget "$budget" \
      "${smoke[@]}" "${resume[@]}" >>"$work/logs/$name.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
      break
    fi
    echo "== $name: exit status $rc (124/137: hard limit; 3: CUDA context lost; 4: a stage overran its budget)" \
      | tee -a "$work/logs/$name.log"
    [ $rc -eq 2 ] && break  # bad usage or no device: retrying will not help
    try=$((try + 1))
    resume=(--resume)
    [ $try -ge 4 ] && break
  done
  # the console gets the stage lines only (the full log is in the tarball)
  grep -E '\] stage [a-z0-9_-]+: [^s]|MISMATCH|unavailable|abandoned|Error' "$work/logs/$name.log" \
    | tail -n 30 | cut -c1-160 | sed "s/^/  [$name]/"
  echo "== $name: $((SECONDS - start)) s"
  return 0
}

if [ -z "$only" ] || [ "$only" = profile ]; then
  run_step profile kvprof_ops.py "${KVLAB_PROFILE_S:-110}" "${KVLAB_PROFILE_HARD_S:-140}"
fi
if [ -z "$only" ] || [ "$only" = validate ]; then
  run_step validate kvprof_validate.py "${KVLAB_VALIDATE_S:-100}" "${KVLAB_VALIDATE_HARD_S:-130}"
fi
if [ -z "$only" ] || [ "$only" = layers ]; then
  run_step layers kvprof_layers.py "${KVLAB_LAYERS_S:-90}" "${KVLAB_LAYERS_HARD_S:-120}"
fi
timeout 60 "$py" "$here/kvprof_summary.py" "$work" >"$work/summary.txt" 2>&1 \
  || echo "(summary failed: see summary.txt)" >>"$work/summary.txt"
echo "total: $((SECONDS - t_all)) s" >>"$work/summary.txt"
tar czf "$out/profile-results.tar.gz" -C "$work" . || echo "device_run.sh: tar failed" >&2
ls -l "$out/profile-results.tar.gz" 2>/dev/null
cat "$work/summary.txt"
rm -rf "$work"
exit 0
