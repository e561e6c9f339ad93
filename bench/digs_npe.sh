#!/usr/bin/env bash
# The DIGS NPE (papers 002/003, issue #20 item 1): the NPE figures of docs/digs.md are this
# script's output.
#
#  1. `cubeflow digs library`: the training library (N spectra, seed 20262010), the test library
#     (1000 spectra, seed 20262011) and the 20 MCMC comparison spectra (seed 20262002, the
#     held-out set of bench/digs_mcmc.sh). Three seeds used by nothing else.
#  2. `cubeflow train` on the training library (kind: digs; 2 % held out for validation and model
#     choice; the configuration is written to SCRATCH/train.yaml).
#  3. `cubeflow evaluate MODEL test.fits`: per parameter R^2, Spearman, bias, scatter, 68/95 %
#     coverage, SBC chi^2, width / prior width on the 1000 test spectra, and the verdict.
#  4. `cubeflow evaluate MODEL mcmc20.fits --mcmc 20`: NPE and MCMC medians and half-widths on
#     the same 20 spectra, with the wall time per spectrum of each.
#  5. `cubeflow evaluate MODEL central.fits`: the figures of step 3 on paper 003's test set, 1000
#     spectra drawn from the central 16-84 % of every prior (`digs library --central`, seed
#     20262012, used by nothing else).
#
# usage: bench/digs_npe.sh [BUILD_DIR]
# environment: N (default 2000000), SSP (default builtin), EPOCHS (default 6), MINUTES (training
#              time limit, default 28; 0: none), INPUT (encoder input, arch.input: log_flux, the
#              default, or shape), SCRATCH (default out/digs_npe), SKIP_TRAIN=1 (reuse SCRATCH's
#              model)
# Run it under the shared CPU lock: the training takes MINUTES on one core.
set -euo pipefail
source "$(dirname "$0")/common.sh"
N="${N:-2000000}"
SSP="${SSP:-builtin}"
EPOCHS="${EPOCHS:-6}"
MINUTES="${MINUTES:-28}"
INPUT="${INPUT:-log_flux}"
SCRATCH=$(resolve "${SCRATCH:-out/digs_npe}")
mkdir -p "$SCRATCH"
TRAIN="$SCRATCH/train_${SSP}_${N}_seed20262010.fits"
if [[ -z "${SKIP_TRAIN:-}" ]]; then
  [[ -f "$TRAIN" ]] || "$CF" digs library --ssp "$SSP" --n "$N" --seed 20262010 --out "$TRAIN"
  cat > "$SCRATCH/train.yaml" <<YAML
# DIGS NPE (docs/digs.md, "NPE"), written by bench/digs_npe.sh
kind: digs
library: $(basename "$TRAIN")
output: model/digs_npe_${SSP}.pt
epochs: $EPOCHS
batch_size: 512
lr: 1.0e-3
lr_factor: 0.5
lr_patience: 2
stop_patience: 4
val_fraction: 0.02
seed: 1
threads: 1
time_limit_minutes: $MINUTES
arch: {input: $INPUT, hidden: [256, 256, 128], summary: 32, flow: {transform: spline, layers: 6, hidden: 128, context_hidden: 64, bins: 8, tail_bound: 5}}
YAML
  echo "== cubeflow train $SCRATCH/train.yaml"
  "$CF" train "$SCRATCH/train.yaml"
fi
"$CF" digs library --ssp "$SSP" --n 1000 --seed 20262011 --out "$SCRATCH/test_${SSP}_1000_seed20262011.fits"
"$CF" digs library --ssp "$SSP" --n 20 --seed 20262002 --out "$SCRATCH/mcmc_${SSP}_20_seed20262002.fits"
MODEL="$SCRATCH/model/digs_npe_${SSP}.pt"
echo "== cubeflow evaluate $MODEL test (1000 spectra, seed 20262011)"
"$CF" evaluate "$MODEL" "$SCRATCH/test_${SSP}_1000_seed20262011.fits" --samples 1000
echo "== cubeflow evaluate $MODEL mcmc20 --mcmc 20 (seed 20262002)"
"$CF" evaluate "$MODEL" "$SCRATCH/mcmc_${SSP}_20_seed20262002.fits" --samples 1000 --mcmc 20
"$CF" digs library --ssp "$SSP" --central --n 1000 --seed 20262012 --out "$SCRATCH/central_${SSP}_1000_seed20262012.fits"
echo "== cubeflow evaluate $MODEL central (1000 spectra of the central 16-84 % prior, seed 20262012)"
"$CF" evaluate "$MODEL" "$SCRATCH/central_${SSP}_1000_seed20262012.fits" --samples 1000
