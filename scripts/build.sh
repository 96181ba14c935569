#!/usr/bin/env bash
# Configures and builds KVLab (CMake preset "release" in build/; KVLAB_PRESET picks another:
# debug, asan, ci). Extra configure arguments: KVLAB_CMAKE_ARGS (e.g. "-DKVLAB_WERROR=ON").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
# nvcc is usually not on PATH in a fresh shell; CMake finds it through CUDACXX.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
preset="${KVLAB_PRESET:-release}"
case "$preset" in
  release) dir=build ;;
  *) dir="build-$preset" ;;
esac
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
# shellcheck disable=SC2086
if [ ! -f "$dir/CMakeCache.txt" ] || [ -n "${KVLAB_CMAKE_ARGS:-}" ]; then
  cmake --preset "$preset" "${gen[@]}" ${KVLAB_CMAKE_ARGS:-} >&2
fi
cmake --build "$dir" -j "$(nproc)" >&2
