#!/usr/bin/env bash
# Issue #19 item 4: the diffusion posterior next to the CNN and the SBI on the same objects. For
# each seed (default 14 15; used by no training), `cubeflow simulate galaxy --nx 30 --ny 30` goes
# through pipelines/demo.yaml (cnn_builtin), demo_sbi.yaml (sbi_builtin) and demo_diffusion.yaml
# (the shipped diffusion prior) with the same binning; `cubeflow compare --report-only` prints,
# per method, the per-bin median offset, scatter, R^2, Spearman against the truth, the best
# constant map's scatter, and how often the 68 % intervals hold the truth. Figures in
# docs/diffusion.md. ~3-5 min per seed on one loaded core (the diffusion run dominates).
# Usage: [SEEDS="14 15"] bench/diffusion_vs_cnn_sbi.sh [BUILD_DIR]
set -euo pipefail
source "$(dirname "$0")/common.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for seed in ${SEEDS:-14 15}; do
  gal="$WORK/galaxy_$seed"
  "$CF" simulate galaxy --out "$gal" --nx 30 --ny 30 --seed "$seed" > /dev/null 2>&1
  for p in demo demo_sbi demo_diffusion; do
    (cd pipelines && CUBEFLOW_DEMO_DIR="$gal" "$CF" run "$p.yaml" --set "out.path=$WORK/${p}_$seed.fits" > /dev/null 2>&1) ||
      { echo "diffusion_vs_cnn_sbi.sh: pipelines/$p.yaml failed on seed $seed" >&2; exit 1; }
    echo "== seed $seed, pipelines/$p.yaml"
    "$CF" compare "$WORK/${p}_$seed.fits" "$gal/truth.fits" --report-only | grep -E "^(quantity|LW_|MW_|MH|T50)"
  done
done
