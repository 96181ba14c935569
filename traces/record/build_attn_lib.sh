#!/bin/sh
# Builds build/lib/libkvlab_attn.so (the project's CPU attention reference, kernels/attn.h) with
# the C compiler alone, for machines without cmake or HDF5 (e.g. a GPU machine used only for the
# recording pipeline). Where cmake works, `cmake --build build --target kvlab_attn` builds the same
# library. Usage: traces/record/build_attn_lib.sh [output.so]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/lib/libkvlab_attn.so}
mkdir -p "$(dirname "$out")"
cc=${CC:-cc}
ver=$(sed -n 's/.*project(kvlab VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt" | head -n 1)
$cc -std=c11 -O2 -fPIC -shared -D_POSIX_C_SOURCE=200809L -DKVLAB_VERSION="\"${ver:-0}\"" \
  -I"$root/kernels" -I"$root/common" \
  "$root/kernels/attn_dense.c" "$root/kernels/attn_blockmeta.c" "$root/kernels/attn_sparse.c" \
  "$root/kernels/attn_metrics.c" "$root/common/kv_err.c" -lm -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out"
