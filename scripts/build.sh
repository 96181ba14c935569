#!/usr/bin/env bash
# Configures and builds kvlab in build/ (preset "release"; KVLAB_PRESET overrides, e.g. asan).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
# nvcc is usually not on PATH in a fresh shell; CMake finds it through CUDACXX.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
preset="${KVLAB_PRESET:-release}"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
dir=$(python3 -c "import json;p=[x for x in json.load(open('CMakePresets.json'))['configurePresets'] if x['name']=='$preset'][0];print(p['binaryDir'].replace('\${sourceDir}/',''))")
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake --preset "$preset" "${gen[@]}" >&2
fi
cmake --build "$dir" -j "$(nproc)" >&2
