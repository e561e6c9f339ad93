#!/usr/bin/env bash
# Builds cubeflow and runs every test (README command 2). Set CUBEFLOW_SANITIZE=1 to also build
# core, libs and plugins that do not link libtorch with clang, AddressSanitizer + UBSan and the
# libFuzzer targets (CUBEFLOW_FUZZ) in build-fuzz/, run their tests (the fuzz corpora and crash
# reproducers included, leak detection on), then run each fuzz target for CUBEFLOW_FUZZ_SECONDS
# (default 30) s, JOBS at a time (tests/fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"
if [ "${CUBEFLOW_SANITIZE:-0}" = "1" ]; then
  CXX="${CUBEFLOW_FUZZ_CXX:-clang++-14}" cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCUBEFLOW_FUZZ=ON -DCUBEFLOW_BUILD_BENCH=OFF
  cmake --build build-fuzz -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-fuzz --output-on-failure -j"$JOBS" -LE 'needs_torch|mpi'
  # OpenMPI's own allocations (libmpi, its dlopen'ed components) are reported as leaks at exit.
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-fuzz --output-on-failure -j"$JOBS" -L mpi -LE needs_torch
  # A fixed seed: the short run repeats itself, so it fails only when a change breaks something
  # (exploratory runs: tests/fuzz/README.md).
  CUBEFLOW_FUZZ_SEED="${CUBEFLOW_FUZZ_SEED:-1}" CUBEFLOW_FUZZ_JOBS="$JOBS" \
    bash tests/fuzz/run.sh build-fuzz "${CUBEFLOW_FUZZ_SECONDS:-30}"
fi
