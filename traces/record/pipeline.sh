#!/bin/sh
# The recording pipeline, one step per command (traces/record/README.md explains each).
#
#   On a machine with Debian's archive (this repository's dev machines):
#     pipeline.sh prepare        corpus from Debian packages -> work/corpus.jsonl.xz (~31 MiB)
#   On the GPU machine (no network; carry work/corpus.jsonl.xz and work/corpus-manifest.json),
#   each step within 10 minutes on one H100, outputs under $OUT (default results/gpu):
#     pipeline.sh gpu-tokenize   BPE 32768 trained here, or GPT-2's with GPT2_DIR=folder
#     pipeline.sh gpu-train      preset gpu: d512, 8 layers, GQA 8/2 x 64, context 8192, ~6 min
#     pipeline.sh gpu-record     sample (<= 16 MiB) + a full recording kept in work/
#     pipeline.sh gpu-quality    delta NLL vs KV read through libkvlab_attn.so (16 workers)
#   On this project's 2-core CPU machines (the CPU-trained stand-in, committed):
#     pipeline.sh cpu-tokenize | cpu-train | cpu-record | cpu-quality
#   Any step: pipeline.sh env > environment.json
#
# Environment: PYTHON (default: .venv/bin/python when present, else python3), KVREC_WORK
# (default traces/record/work), OUT (results folder), GPT2_DIR (GPT-2 encoder.json + vocab.bpe),
# KVREC_SMOKE=1: the gpu-* steps at a toy scale (preset tiny, 512 tokens) to check the flow on a
# CPU in a minute; use it with a scratch KVREC_WORK and OUT.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
W=${KVREC_WORK:-$here/work}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
PY="$PYTHON"
step=${1:-}
# GPU-step parameters (KVREC_SMOKE=1 shrinks them to check the flow on a CPU).
if [ "${KVREC_SMOKE:-0}" = 1 ]; then
  G_PRESET=tiny G_VOCAB=2048 G_TOKX="--train-mb 3" G_BPEMB=3 G_N=512 G_SLAY=0,1 G_SPOS=16
  G_FPOS=32 G_KINDS=prose:1,code:1 G_PREFIX=448 G_JOBS=2
else
  G_PRESET=gpu G_VOCAB=32768 G_TOKX="" G_BPEMB=40 G_N=8192 G_SLAY=0,7 G_SPOS=64
  G_FPOS=256 G_KINDS=prose:2,code:2 G_PREFIX=7936 G_JOBS=16
fi
mkdir -p "$W"

need_corpus() {
  [ -f "$W/corpus.jsonl.xz" ] || {
    echo "error: $W/corpus.jsonl.xz is missing: run 'pipeline.sh prepare' on a machine with" \
         "Debian's archive, then carry traces/record/work/corpus.jsonl.xz to this one" >&2
    exit 2
  }
}
need_lib() {
  [ -f "$root/build/lib/libkvlab_attn.so" ] || sh "$here/build_attn_lib.sh"
}
model_label() {  # name stored in the Q/K/V file: what the model is, honestly
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1] + "/training.json"))
p = t["preset_params"]
print("kvlab-%s-d%d-L%d-h%dkv%dx%d %s, %.1fM params, %.1fM training tokens" % (
    t["preset"], p["hidden_size"], p["num_hidden_layers"], p["num_attention_heads"],
    p["num_key_value_heads"], p["head_dim"], sys.argv[2], t["parameters"] / 1e6,
    t["tokens"] / 1e6))
PYEOF
}

case "$step" in
env)
  "$PY" -c "import sys; sys.path.insert(0, '$here'); import json, kvrec_common as c; \
print(json.dumps({'date': c.utc_now(), 'machine': c.machine_description(), 'git': c.git_describe()}, indent=1, sort_keys=True))"
  ;;
prepare)
  "$PY" "$here/corpus.py" fetch --cache "${KVREC_CACHE:-$W/cache}"
  "$PY" "$here/corpus.py" build --cache "${KVREC_CACHE:-$W/cache}" --out "$W/corpus.jsonl.xz" \
    --manifest "$W/corpus-manifest.json"
  need_lib
  ;;
# ---- GPU scale (not run yet: no GPU was lent when this was written) ---------------------------
gpu-tokenize)
  need_corpus
  if [ -n "${GPT2_DIR:-}" ]; then tokarg="--gpt2 $GPT2_DIR"; else tokarg="--train-bpe $G_VOCAB"; fi
  # shellcheck disable=SC2086
  "$PY" "$here/tokenize_corpus.py" --corpus "$W/corpus.jsonl.xz" --out "$W/tok-gpu" $tokarg \
    --bpe-train-mb $G_BPEMB $G_TOKX
  ;;
gpu-train)
  O=${OUT:-$here/results/gpu}; mkdir -p "$O"
  "$PY" "$here/train.py" --tok "$W/tok-gpu" --out "$W/model-gpu" --preset $G_PRESET --log-every 50
  cp "$W/model-gpu/train_log.jsonl" "$W/model-gpu/heldout_loss.json" \
     "$W/model-gpu/training.json" "$W/model-gpu/config.json" "$W/tok-gpu/tok-manifest.json" \
     "$W/corpus-manifest.json" "$O/"
  sh "$0" env > "$O/environment-train.json"
  ;;
gpu-record)
  O=${OUT:-$here/results/gpu}; mkdir -p "$O"
  name=$(model_label "$W/model-gpu" "GPU-trained")
  # Sample in the size of the committed one: 2 sequences x 8192 tokens, layers 0 and 7, fp16,
  # gzip: 2 x 2 x 4 MiB of K/V before compression.
  "$PY" "$here/record.py" --model "$W/model-gpu" --tok "$W/tok-gpu" --kinds prose:1,code:1 \
    --n-tokens $G_N --layers $G_SLAY --n-positions $G_SPOS --dtype fp16 --compress 4 \
    --model-name "$name" --verify --verify-json "$O/record-verify.json" \
    --out "$O/qkv_sample_gpu.h5"
  # Full recording (all layers, 2 sequences per kind, pre-RoPE K too): ~200 MiB, stays in work/.
  "$PY" "$here/record.py" --model "$W/model-gpu" --tok "$W/tok-gpu" --kinds $G_KINDS \
    --n-tokens $G_N --layers all --n-positions $G_FPOS --dtype fp16 --pre-rope \
    --model-name "$name" --out "$W/qkv_full_gpu.h5"
  ;;
gpu-quality)
  O=${OUT:-$here/results/gpu}; mkdir -p "$O"
  need_lib
  "$PY" "$here/quality.py" --model "$W/model-gpu" --tok "$W/tok-gpu" --kinds $G_KINDS \
    --seq-len $G_N --prefix $G_PREFIX --jobs $G_JOBS --threads 1 \
    --out-json "$O/quality.json" --out-md "$O/quality.md" \
    --command "traces/record/pipeline.sh gpu-quality"
  ;;
# ---- GPU scale, long context (issue 13): BPE here, tokens + training on the GPU machine, the bf16
# checkpoint comes back and recording / analysis run on the CPU machines.
gpu32k-bpe)        # here: learn the 8,192-token BPE (carried to the GPU machine)
  need_corpus
  "$PY" "$here/tokenize_corpus.py" --corpus "$W/corpus.jsonl.xz" --out "$W/tok-gpu32k" \
    --train-bpe 8192 --bpe-train-mb 40 --bpe-only
  ;;
gpu32k-tokenize)   # token files with that BPE (GPU machine, or here for the held-out text)
  need_corpus
  "$PY" "$here/tokenize_corpus.py" --corpus "$W/corpus.jsonl.xz" --out "$W/tok-gpu32k" \
    --tokenizer "$W/tok-gpu32k/tokenizer.json"
  ;;
gpu32k-train)      # GPU machine: tokenize, train (preset gpu32k, ~6 min), export to $OUT
  O=${OUT:?set OUT to the folder that comes back}
  sh "$0" gpu32k-tokenize
  "$PY" "$here/train.py" --tok "$W/tok-gpu32k" --out "$W/model-gpu32k" --preset gpu32k \
    --log-every 25 --export-bf16 "$W/model-gpu32k-bf16"
  cp "$W/model-gpu32k/train_log.jsonl" "$W/model-gpu32k/heldout_loss.json" \
     "$W/model-gpu32k/training.json" "$W/tok-gpu32k/tok-manifest.json" \
     "$W/corpus-manifest.json" "$W/model-gpu32k-bf16/"
  sh "$0" env > "$W/model-gpu32k-bf16/environment-train.json"
  # At most 8 files come back: the weight shards as they are, everything else in one tar.
  mv "$W"/model-gpu32k-bf16/*.safetensors "$O/"
  tar -C "$W/model-gpu32k-bf16" -czf "$O/model-gpu32k-meta.tar.gz" .
  ls -l "$O"
  ;;
gpu32k-record)     # here (CPU), from the checkpoint that came back (work/model-gpu32k):
  # calibration and evaluation recordings from disjoint held-out documents (heldout.py parts),
  # every layer, 64 query positions in the second half of each sequence; stay in work/.
  O=${OUT:-$here/results/gpu32k}; mkdir -p "$O"
  name=$(model_label "$W/model-gpu32k" "GPU-trained (H200)")
  rec() {
    nice -n 10 "$PY" "$here/record.py" --model "$W/model-gpu32k" --tok "$W/tok-gpu32k" \
      --part "$1" --kinds "$2" --n-tokens "$3" --layers all --n-positions 64 --dtype fp16 \
      --model-name "$name" --verify --verify-json "$O/record-verify-$4.json" \
      --out "$W/qkv-gpu32k-$4.h5"
  }
  rec calib prose:2,code:2,conv:1 16384 calib16k
  rec eval prose:2,code:2,conv:2 16384 eval16k
  rec eval prose:1,code:1,conv:1 32768 eval32k
  ;;
# ---- CPU stand-in (run on this project's 2-core machine) --------------------------------------
cpu-tokenize)
  need_corpus
  "$PY" "$here/tokenize_corpus.py" --corpus "$W/corpus.jsonl.xz" --out "$W/tok-cpu" \
    --train-bpe 8192 --bpe-train-mb 20 --train-mb 60
  ;;
cpu-train)
  O=${OUT:-$here/results/cpu}; mkdir -p "$O"
  nice -n 19 "$PY" "$here/train.py" --tok "$W/tok-cpu" --out "$W/model-cpu" --preset cpu \
    --log-every 20
  cp "$W/model-cpu/train_log.jsonl" "$W/model-cpu/heldout_loss.json" \
     "$W/model-cpu/training.json" "$W/model-cpu/config.json" "$W/tok-cpu/tok-manifest.json" \
     "$W/corpus-manifest.json" "$O/"
  sh "$0" env > "$O/environment-train.json"
  ;;
cpu-record)
  O=${OUT:-$here/results/cpu}; mkdir -p "$O"
  name=$(model_label "$W/model-cpu" "CPU-trained stand-in")
  "$PY" "$here/record.py" --model "$W/model-cpu" --tok "$W/tok-cpu" --kinds prose:1,code:1 \
    --n-tokens 4096 --layers 0,2,3 --n-positions 48 --dtype fp16 \
    --model-name "$name" --verify --verify-json "$O/record-verify.json" \
    --out "${SAMPLE:-$root/traces/data/qkv_sample.h5}"
  ;;
cpu-quality)
  O=${OUT:-$here/results/cpu}; mkdir -p "$O"
  need_lib
  nice -n 10 "$PY" "$here/quality.py" --model "$W/model-cpu" --tok "$W/tok-cpu" \
    --kinds prose:2,code:2 --seq-len 4096 --prefix 3840 --jobs 2 --threads 1 \
    --out-json "$O/quality.json" --out-md "$O/quality.md" \
    --command "traces/record/pipeline.sh cpu-quality"
  ;;
*)
  sed -n '2,20p' "$0" >&2
  exit 2
  ;;
esac
