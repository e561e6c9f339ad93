#!/usr/bin/env bash
# The diffusion prior's figures in docs/diffusion.md (issue #19 item 1). Trains
# models/diffusion_builtin.train.yaml into a scratch folder (EPOCHS=N overrides its epochs), then
# prints `cubeflow evaluate`: ComparePriorSamples of 2000 prior samples (300 noise levels, one
# corrector step) against 2000 fresh draws of the training prior (seed 1042, not the training
# seed 42). About 3.5 s per epoch on one free core (100 epochs: ~6 min): run it alone on the
# machine. The model stays in OUT (default: a temporary folder, removed).
# Usage: [EPOCHS=N] [OUT=DIR] bench/diffusion_prior.sh [BUILD_DIR]
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ -n "${OUT:-}" ]]; then
  WORK=$(resolve "$OUT")
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
sed -e "s#^output: .*#output: prior.pt#" -e "s#^checkpoint: .*#checkpoint: prior.pt.ckpt#" \
    -e "s#^library_config: .*#library_config: $ROOT/models/library_noisefree.yaml#" \
    ${EPOCHS:+-e "s#^epochs: .*#epochs: $EPOCHS#"} models/diffusion_builtin.train.yaml > "$WORK/train.yaml"
grep -E "^(n|epochs|architecture):" "$WORK/train.yaml"
"$CF" train "$WORK/train.yaml" 2> >(grep -v "^epoch" >&2)
"$CF" evaluate "$WORK/prior.pt" --samples 2000 --steps 300
