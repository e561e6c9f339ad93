#!/usr/bin/env bash
# The DIGS five-parameter model (papers 002/003) and its MCMC baseline: the figures of
# docs/digs.md are this script's output.
#
#  1. `cubeflow digs speed`: cost of one noise-free forward-model spectrum (one thread).
#  2. `cubeflow digs mcmc --n N --seed SEED`: N held-out spectra drawn from the Table 1 priors
#     and fitted one by one with the ensemble MCMC (40 walkers, annealed burn-in, 2000 burn-in +
#     50000 kept iterations); per spectrum the truth, posterior median and (q84 - q16) / 2 of the
#     five parameters, then R^2, Spearman, 68 / 95 % coverage, median width and the wall time.
# Both for the built-in SSP model and, when $CUBEFLOW_DATA_DIR/ssp holds them, for E-MILES BaSTI
# Kroupa (+ the Maraston 2005 young extension: `--ssp emiles`).
#
# usage: bench/digs_mcmc.sh [BUILD_DIR]       (from anywhere; default build)
# environment: N (default 20), SEED (default 20262002: used by nothing else; keep it so),
#              SSPS (default "builtin emiles"), SCRATCH (default out/digs_mcmc: per-spectrum TSVs),
#              MCMC_ARGS (extra `cubeflow digs mcmc` options, e.g. "--steps 25000 --thin 25")
# Takes about 2-3 minutes per SSP set on the 2-core build machine (run it under the shared CPU lock).
set -euo pipefail
source "$(dirname "$0")/common.sh"
N="${N:-20}"
SEED="${SEED:-20262002}"
SSPS="${SSPS:-builtin emiles}"
SCRATCH=$(resolve "${SCRATCH:-out/digs_mcmc}")
mkdir -p "$SCRATCH"
for ssp in $SSPS; do
  if [[ "$ssp" == emiles && ! -d "${CUBEFLOW_DATA_DIR:-/nonexistent}/ssp/emiles_basti_kb" ]]; then
    echo "== skipping --ssp emiles: set CUBEFLOW_DATA_DIR to the folder holding ssp/emiles_basti_kb and ssp/maraston05_kroupa"
    continue
  fi
  echo "== cubeflow digs speed --ssp $ssp"
  "$CF" digs speed --ssp "$ssp"
  echo "== cubeflow digs mcmc --ssp $ssp --n $N --seed $SEED ${MCMC_ARGS:-}"
  # shellcheck disable=SC2086  # MCMC_ARGS is a list of options
  "$CF" digs mcmc --ssp "$ssp" --n "$N" --seed "$SEED" --out "$SCRATCH/mcmc_${ssp}_n$N.tsv" ${MCMC_ARGS:-}
done
