#!/usr/bin/env bash
# README command 1 (after install_deps.sh): builds cubeflow and runs the demo end to end on
# data it makes itself, so it needs nothing but the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$JOBS"
CF=build/bin/cubeflow
mkdir -p out
if [ -f pipelines/demo.yaml ] && $CF simulate --help > /dev/null 2>&1; then
  $CF simulate galaxy --out out/demo_galaxy --nx 40 --ny 40 --seed 1
  $CF run pipelines/demo.yaml
  echo "demo products: $(pwd)/out/demo_maps.fits"
else
  # Runtime demo on the bundled synthetic cube.
  $CF run pipelines/quicklook.yaml --set read.path=cubes/tiny_cube.fits --set out.path=out/quicklook_maps.fits
  echo "demo products: $(pwd)/out/quicklook_maps.fits"
fi
