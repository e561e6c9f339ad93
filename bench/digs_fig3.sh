#!/usr/bin/env bash
# The DIGS papers' Fig. 3 galaxy (paper 003: log M 10.51, log Z/Z_sun -0.41, dust 0.65, t_age
# 1.63 Gyr, tau 0.11 Gyr; the galaxy whose widths its abstract quotes, 0.17 dex in mass and
# 0.26 dex in metallicity): N noise realisations of it, each through the NPE and the MCMC on the
# same spectrum (docs/digs.md, "Against the paper").
#
#  1. `cubeflow digs library --theta ...`: N noisy spectra of the one parameter set (seed
#     20262003, used by nothing else).
#  2. `cubeflow evaluate MODEL LIB --mcmc N`: per realisation the NPE's and the MCMC's median and
#     half-width (q84 - q16) / 2 of the five parameters, then the median width ratio and wall times.
#     The NPE's bias row is its median minus the truth, averaged over the realisations.
#
# usage: bench/digs_fig3.sh [BUILD_DIR]
# environment: MODEL (default models/digs_npe_builtin.pt; its SSP set is the library's), N
#              (default 20), SCRATCH (default out/digs_fig3)
# About 3-5 minutes (the MCMC) on one core.
set -euo pipefail
source "$(dirname "$0")/common.sh"
MODEL=$(resolve "${MODEL:-models/digs_npe_builtin.pt}")
N="${N:-20}"
SCRATCH=$(resolve "${SCRATCH:-out/digs_fig3}")
mkdir -p "$SCRATCH"
SSP=$(sed -n 's/^ssp: *//p' "$MODEL.yaml")
LIB="$SCRATCH/fig3_${SSP}_${N}_seed20262003.fits"
"$CF" digs library --ssp "$SSP" --n "$N" --seed 20262003 --theta 10.51,-0.41,0.65,1.63,0.11 --out "$LIB"
echo "== cubeflow evaluate $MODEL $LIB --mcmc $N"
"$CF" evaluate "$MODEL" "$LIB" --samples 1000 --mcmc "$N" --threads 1
