#!/usr/bin/env bash
# README command 1 (after install_deps.sh): builds cubeflow and runs the demo end to end on data
# it makes itself, so it needs nothing but the repository: a mock galaxy simulated with the
# built-in SSP library -> pipelines/demo.yaml (binning, rest-framing, HST photometry, the shipped
# CNN) -> MAPS product, quicklook PNGs, and the recovered maps compared with the truth.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$JOBS" --target demo
CF=build/bin/cubeflow
mkdir -p out
start=$(date +%s)
echo "== simulating a 40x40-spaxel mock galaxy (built-in SSPs) in out/demo_galaxy"
$CF simulate galaxy --out out/demo_galaxy --nx 40 --ny 40 --seed 1
echo "== running pipelines/demo.yaml"
$CF run pipelines/demo.yaml
echo "== quicklook PNGs"
$CF plot out/demo_maps.fits --out out
echo "== recovered maps versus the truth (per Voronoi bin)"
$CF compare out/demo_maps.fits out/demo_galaxy/truth.fits --json out/demo_accuracy.json
echo "demo products in $(pwd)/out: demo_maps.fits, *.png quicklooks, demo_accuracy.json ($(( $(date +%s) - start )) s)"
