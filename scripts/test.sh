#!/usr/bin/env bash
# Builds cubeflow and runs every test (README command 2). Set CUBEFLOW_SANITIZE=1 to also
# build and test core + non-libtorch plugins with AddressSanitizer/UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"
if [ "${CUBEFLOW_SANITIZE:-0}" = "1" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUBEFLOW_SANITIZE=ON -DCUBEFLOW_BUILD_BENCH=OFF
  cmake --build build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" -LE needs_torch
fi
