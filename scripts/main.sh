#!/usr/bin/env bash
# The main job: builds KVLab, then runs the reproduction at a quick scale on data that ships with
# the repository (CPU only when no GPU is present). Results go to out/ (override: KVLAB_OUT).
#
# Stage of the project: the attention comparison (dense vs fixed top-k vs PSA, CPU reference) on
# the bundled Q/K/V sample. Later stages add the simulator and the full reproduction.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
out="${KVLAB_OUT:-out}"
mkdir -p "$out"
sample=traces/data/qkv_sample.h5
if [ ! -f "$sample" ]; then
  echo "main: no recorded sample at $sample; using a seeded synthetic file" >&2
  sample="$out/qkv_synthetic.h5"
  build/bin/psa-compare --synthetic "$sample" --tokens 4096 --seed 1
fi
build/bin/psa-compare "$sample" \
  -m dense,topk:256,topk:512,topk:1024,topk:2048,psa:0.8,psa:0.9,psa:0.95,psa:0.99,psa:0.95:lognormal,psa:0.95:bound,oracle:0.95 \
  --stats -o "$out/attention"
echo "main: results in $out/ (attention-summary.csv, attention-stats.csv, attention.csv, attention.h5)" >&2
