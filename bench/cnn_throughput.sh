#!/usr/bin/env bash
# CNN throughput (issue #18 item 3): spectra/s of CnnModel::Predict (bench/cnn_bench.cpp: one
# caller at batch 1 / 64 / 256, then two callers at once as inference.cnn's parallel batches
# run) and of the inference.cnn node inside the full pipeline (pipelines/phangs_cnn.yaml: cube,
# Voronoi bins, stellar kinematics, rest-framing, HST photometry, CNN, MAPS) on a mock galaxy,
# at the node's defaults and at other batch sizes, in one run on the same machine.
#
# usage: bench/cnn_throughput.sh [BUILD_DIR]     (BUILD_DIR or $CUBEFLOW_BUILD, default build)
# environment:
#   NX          mock galaxy size NX x NX spaxels (default 100)
#   TARGET_SNR  Voronoi target S/N (default 8: most spaxels stay single bins, so many bins)
#   BATCHES     inference.cnn batch sizes to run besides the default (default "16 256")
#   THREADS     the runs' --threads (default 2)
#   SCRATCH     where the galaxy and products go (default out/cnn_throughput, gitignored)
#
# The node's figure is items / active s from the runner's table: the wall time during which at
# least one of the node's calls ran (its batches run in parallel, so busy s, summed over the
# workers, can exceed it). In the full pipeline the other nodes (kinematics above all) share the
# cores, so this is what the CNN delivers while the rest of the pipeline is also running.
# Target (issue #18): >= 5000 spectra/s through inference.cnn at its defaults on 2 cores.
set -euo pipefail
source "$(dirname "$0")/common.sh"
BENCH="$BUILD/bench/cnn_bench"
for x in "$CF" "$BENCH"; do
  [[ -x "$x" ]] || { echo "cnn_throughput.sh: no $x; build first (cmake --build $BUILD --target cubeflow cnn_bench)" >&2; exit 2; }
done
NX="${NX:-100}"
TARGET_SNR="${TARGET_SNR:-8}"
BATCHES="${BATCHES:-16 256}"
THREADS="${THREADS:-2}"
SCRATCH=$( [[ -n "${SCRATCH:-}" ]] && resolve "$SCRATCH" || echo "$ROOT/out/cnn_throughput")
TARGET=5000
mkdir -p "$SCRATCH"
load() { awk '{printf "%s %s %s", $1, $2, $3}' /proc/loadavg; }

echo "== CNN throughput, $(nproc) cores, $(date -u +%FT%TZ), load $(load)"
echo "== 1. bench/cnn_bench (random weights, shipped architecture, 5 bands, 1 libtorch thread per caller)"
"$BENCH" 1 5 2 | sed 's/^/   /'

GAL="$SCRATCH/galaxy"
if [[ ! -f "$GAL/cube.fits" || "$(cat "$GAL/size" 2>/dev/null)" != "$NX" ]]; then
  rm -rf "$GAL"
  "$CF" simulate galaxy --nx "$NX" --ny "$NX" --seed 1 --out "$GAL" > "$SCRATCH/simulate.log" 2>&1 ||
    { echo "cnn_throughput.sh: simulation failed, see $SCRATCH/simulate.log" >&2; exit 1; }
  echo "$NX" > "$GAL/size"
fi

echo "== 2. inference.cnn in pipelines/phangs_cnn.yaml on a ${NX} x ${NX} mock galaxy (target S/N $TARGET_SNR), --threads $THREADS"
printf '   %-14s %7s %9s %9s %9s %12s %9s  %s\n' "cnn batch" calls items "busy s" "active s" "spectra/s" "run s" "load before"
default_rate=""
for b in default $BATCHES; do
  extra=()
  [[ $b = default ]] || extra=(--set "cnn.batch_size=$b")
  log="$SCRATCH/run_$b.log"
  l0=$(load)
  CUBEFLOW_CUBE="$GAL/cube.fits" CUBEFLOW_HST_DIR="$GAL" CUBEFLOW_OUT="$SCRATCH/maps_$b.fits" \
    "$CF" run pipelines/phangs_cnn.yaml --threads "$THREADS" --no-progress \
      --set rest.z_sys=0.00243 --set kin.z_sys=0.00243 --set kin.lsf_pixel=0 --set bin.covariance_alpha=0 \
      --set "bin.target_snr=$TARGET_SNR" --set 'hst.pattern=hst_{band}.fits' --set hst.psf_muse_fwhm=0 \
      "${extra[@]}" > "$log" 2>&1 || { echo "cnn_throughput.sh: the run failed, see $log" >&2; tail -5 "$log" >&2; exit 1; }
  row=$(awk '$1 == "cnn" && $2 == "inference.cnn"' "$log")
  wall=$(awk '/^wall time/ {print $3}' "$log")
  read -r _ _ calls items _ busy active rate <<< "$row"
  printf '   %-14s %7s %9s %9s %9s %12s %9s  %s\n' "$b" "$calls" "$items" "$busy" "$active" "$rate" "$wall" "$l0"
  [[ $b = default ]] && default_rate=$rate
done
echo "spectra/s = items / active s (wall time with at least one CNN call running); busy s is summed over workers"
verdict=$(awk -v r="$default_rate" -v t="$TARGET" 'BEGIN {print ((r >= t) ? "met" : "MISSED")}')
echo "target: >= $TARGET spectra/s through inference.cnn at its defaults: $default_rate, $verdict"
echo "logs: $SCRATCH/run_*.log"
