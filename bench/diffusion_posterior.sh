#!/usr/bin/env bash
# The posterior-sampling figures of docs/diffusion.md (issue #19 items 3-4): `cubeflow evaluate
# PRIOR --posterior N` on N mock spectra of held-out prior draws (seed: the prior's training seed
# + 2000, used neither for training nor for choosing settings), S/N 50 per pixel, rendered by the
# forward model of the prior's library_config; 100 posterior samples each, one thread. Prints R^2
# of the posterior medians and the coverage of the central 10..90 % intervals of mw/lw log age,
# mw/lw [Z/H] and t10..t90, the posterior predictive residuals and the time per spectrum, next to
# the same sampler with likelihood weight 0 (which returns the prior).
# PRIOR: default models/diffusion_builtin.pt (the shipped prior); any prior written by
# `cubeflow train` (kind: diffusion). N (default 50), CLA (diagonal | full), STEPS (100), REFINE
# (refinement steps, default 30; 0: none, the figures before the refinement), ADJUST
# (Metropolis-adjusted steps after it, default 200; 0: none, the figures before they existed).
# ~11 s per spectrum and its prior baseline with CLA=diagonal on one loaded core (50 spectra:
# ~9 min, 200: ~37 min), more with CLA=full: run it alone on a shared machine.
# Usage: [PRIOR=FILE] [N=50] [CLA=diagonal] [STEPS=100] [REFINE=30] [ADJUST=200] bench/diffusion_posterior.sh [BUILD_DIR]
set -euo pipefail
source "$(dirname "$0")/common.sh"
PRIOR=$(resolve "${PRIOR:-models/diffusion_builtin.pt}")
if [[ ! -f "$PRIOR" ]]; then
  echo "diffusion_posterior.sh: no prior at $PRIOR; pass PRIOR=FILE (a prior written by \`cubeflow train\`)" >&2
  exit 2
fi
"$CF" evaluate "$PRIOR" --posterior "${N:-50}" --samples 100 --steps "${STEPS:-100}" --cla "${CLA:-diagonal}" \
  --refine "${REFINE:-30}" --adjust "${ADJUST:-200}" --threads 1
