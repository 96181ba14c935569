#!/usr/bin/env bash
# Installs what kvlab needs from Debian 12 (bookworm) when it is missing. Idempotent; uses sudo
# when not root. The CUDA toolkit is optional (kernels are built when nvcc is on PATH or in
# /usr/local/cuda/bin) and is not installed here.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libhdf5-dev hdf5-tools libgsl-dev gnuplot-nox
      libinih-dev libyajl-dev libpcre2-dev libopenmpi-dev openmpi-bin
      python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
