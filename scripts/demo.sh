#!/usr/bin/env bash
# README command 1 (after install_deps.sh): builds cubeflow and runs the demo end to end on data
# it makes itself, so it needs nothing but the repository: a mock spiral galaxy simulated with the
# built-in SSP library (seed 11, used neither for training nor for choosing a model) ->
# pipelines/demo.yaml (binning, rest-framing, HST photometry, the shipped CNN) -> MAPS product,
# quicklook PNGs, and the recovered maps compared with the truth (offset, scatter, R^2 and rank
# correlation per quantity, against stated targets).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$JOBS" --target demo
CF=build/bin/cubeflow
mkdir -p out
start=$(date +%s)
echo "== simulating a 40x40-spaxel mock spiral galaxy (built-in SSPs) in out/demo_galaxy"
$CF simulate galaxy --out out/demo_galaxy --nx 40 --ny 40 --seed 11
echo "== running pipelines/demo.yaml"
$CF run pipelines/demo.yaml
echo "== quicklook PNGs"
$CF plot out/demo_maps.fits --out out
echo "== recovered maps versus the truth (per Voronoi bin)"
rc=0
$CF compare out/demo_maps.fits out/demo_galaxy/truth.fits --json out/demo_accuracy.json || rc=$?
if [[ $rc -eq 1 ]]; then
  echo "== the shipped CNN misses some targets on this galaxy (listed above): its known limits on these mocks,"
  echo "   measured in docs/cnn.md ('Accuracy on mock galaxies'); the demo itself ran correctly"
elif [[ $rc -ne 0 ]]; then
  exit $rc
fi
echo "demo products in $(pwd)/out: demo_maps.fits, *.png quicklooks, demo_accuracy.json ($(( $(date +%s) - start )) s)"
