#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole CTest suite.
# GPU tests (label "gpu") skip where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
preset="${KVLAB_PRESET:-release}"
ctest --preset "$preset" -j "$(nproc)" "$@"
