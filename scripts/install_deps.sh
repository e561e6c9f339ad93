#!/usr/bin/env bash
# Installs every build, test and run dependency of cubeflow from Debian 12 packages.
# Run as root (a bare container has no sudo), or as a user who may sudo: it calls sudo itself
# then. Safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  build-essential cmake pkg-config ccache
  clang-14 libclang-rt-14-dev
  libtbb-dev libeigen3-dev libyaml-cpp-dev libboost-dev libboost-filesystem-dev
  libcfitsio-dev wcslib-dev
  libtorch-dev libopenblas0-pthread
  googletest libgtest-dev
  libcli11-dev libspdlog-dev libpng-dev zlib1g-dev
  libopenmpi-dev openmpi-bin
  python3 python3-astropy python3-numpy python3-torch python3-matplotlib python3-yaml
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all dependencies already installed"
fi
