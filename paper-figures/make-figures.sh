#!/usr/bin/env bash
# Draws every figure whose data exists: paper-figures/make-figures.sh TIDY_DIR OUT_DIR
# (placeholder until the figure scripts land)
set -euo pipefail
mkdir -p "$2"
