#!/usr/bin/env bash
# Builds the measured inputs of the psa-serving experiments from a Q/K/V recording (CPU
# reference of kernels/attn.h; docs/psa-serving.md):
#   data/attn-profile.h5   attn-profile: tokens each method reads per KV head, per recorded layer
#                          and context bin (21 quantiles), power-law fits, mean output error, and
#                          the measured kernel timings (/kernel_timings) of KVLAB_KERNEL_PROFILE
#                          (default kernels/bench/results/h200/profile.h5, the H200 run; "none"
#                          leaves them out): the simulator prices attention by them by default
#   data/check-split.txt   attn-profile --check-split: the extension rule fitted on the shorter
#                          contexts of the recording, checked on the longer ones
#   data/attn-reuse.csv    attn-reuse: block-set overlap between recorded positions (reuse)
#   data/pairs.csv         attn-pairs: the PSA epsilon at equal mean error per top-k budget
#   data/SOURCE            the recording used (sha256) and the commands
#
#   experiments/psa-serving/make-data.sh [QKV.h5]      default: traces/data/qkv_sample.h5
#   experiments/psa-serving/make-data.sh --synthetic    psa-compare's seeded synthetic file
#
# Needs the tools built (scripts/build.sh; KVLAB_BIN overrides build/bin).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${KVLAB_BIN:-build/bin}"
data=experiments/psa-serving/data
src="${1:-traces/data/qkv_sample.h5}"
kind=recorded
if [ "$src" = "--synthetic" ]; then
  kind=synthetic
  src="$(mktemp -d)/qkv_synthetic.h5"
  "$bin/psa-compare" --synthetic "$src" --tokens 4096 --n-layers 4 --seed 1
fi
[ -f "$src" ] || { echo "make-data: $src not found (see traces/record/README.md)" >&2; exit 1; }
methods=dense,topk:128,topk:256,topk:512,topk:1024,topk:2048,topk:4096,psa:0.7,psa:0.8,psa:0.85,psa:0.9,psa:0.93,psa:0.95,psa:0.97,psa:0.98,psa:0.99,psa:0.995,psa:1
mkdir -p "$data"
kprof="${KVLAB_KERNEL_PROFILE:-kernels/bench/results/h200/profile.h5}"
kopt=()
if [ "$kprof" != none ]; then
  [ -f "$kprof" ] || { echo "make-data: kernel profile $kprof not found" >&2; exit 1; }
  kopt=(--kernel-profile "$kprof")
fi
"$bin/attn-profile" "$src" -q -m "$methods" "${kopt[@]}" -o "$data/attn-profile.h5"
# the recorded positions span the second half of each sequence: fit on the first half of that
# range, predict the second (two context lengths of the same recording)
split=$(python3 - "$src" <<'PY' 2>/dev/null || echo 3072
import sys
try:
    import h5py
    f = h5py.File(sys.argv[1], "r")
    pos = [p for s in f if s.startswith("seq_") for l in f[s] if l.startswith("layer_")
           for p in f[s][l]["positions"][()]]
    print(int((min(pos) + max(pos)) / 2))
except Exception:
    print(3072)
PY
)
"$bin/attn-profile" "$src" -q -m "$methods" --check-split "$split" > "$data/check-split.txt"
"$bin/attn-reuse" "$src" -q -d 3 -m topk:256,topk:512,topk:1024,topk:2048,psa:0.8,psa:0.9,psa:0.95,psa:0.97,psa:0.99 -o "$data/attn-reuse.csv"
"$bin/attn-pairs" "$data/attn-profile.h5" -o "$data/pairs.csv" > "$data/methods.txt"
{
  echo "kind: $kind"
  echo "recording: $([ "$kind" = synthetic ] && echo "psa-compare --synthetic --tokens 4096 --n-layers 4 --seed 1" || echo "$src")"
  echo "sha256: $(sha256sum "$src" | cut -d' ' -f1)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commands:"
  echo "  attn-profile REC -q -m $methods ${kopt[*]} -o data/attn-profile.h5"
  [ "$kprof" = none ] || echo "kernel profile: $kprof (sha256 $(sha256sum "$kprof" | cut -d' ' -f1))"
  echo "  attn-profile REC -q -m $methods --check-split $split"
  echo "  attn-reuse REC -q -d 3 -m topk:256,...,topk:2048,psa:0.8,...,psa:0.99 -o data/attn-reuse.csv"
  echo "  attn-pairs data/attn-profile.h5 -o data/pairs.csv"
} > "$data/SOURCE"
cat "$data/methods.txt"
echo "make-data: wrote $data/ from $kind data ($src)" >&2
