#!/usr/bin/env bash
# Model systematics across stellar-population physics (issue #14, "cross-physics"): the shipped
# models, trained on libraries rendered with the built-in SSP model (cnn_builtin*, sbi_builtin) or
# with E-MILES + the Maraston young extension (cnn_emiles*, sbi_emiles), evaluated on held-out libraries
# rendered with the same recipe (prior, dust, lines, noise) but each SSP set: the built-in model,
# E-MILES + Maraston young extension (`--ssp emiles`), and, for the spectrum-only CNNs (the
# optical libraries do not reach the UV bands), MILES BaSTI Kroupa and BC03; plus an E-MILES
# library with twice the prior's dust (tau_ISM 0.7 +- 0.15 instead of 0.3 +- 0.08: continuum
# shapes the training never saw, where the continuum-robust model is compared with the plain
# one). The differences between rows are the systematics a user should expect from the SSP
# library alone. Prints two tables (CNNs; SBI) in docs/cnn.md's and docs/sbi.md's format.
#
# usage: bench/cross_physics.sh [BUILD_DIR]       (BUILD_DIR or $CUBEFLOW_BUILD, default build)
# environment:
#   N        objects per library (default 2000; seed 1301, used neither for training nor for
#            choosing models)
#   SBI_N    of those, evaluated by the SBI model (default 500, 200 posterior samples each)
#   CUBEFLOW_DATA_DIR  shared/data (default ../shared/data beside the repository)
#   SCRATCH  where the libraries go (default out/cross_physics)
# Takes ~3 minutes on the 2-core build machine.
set -euo pipefail
source "$(dirname "$0")/common.sh"
export CUBEFLOW_DATA_DIR="${CUBEFLOW_DATA_DIR:-$ROOT/../shared/data}"
[[ -d "$CUBEFLOW_DATA_DIR/ssp/emiles_basti_kb" ]] || {
  echo "cross_physics.sh: no E-MILES in $CUBEFLOW_DATA_DIR/ssp; set CUBEFLOW_DATA_DIR to shared/data" >&2; exit 2; }
N="${N:-2000}"
SBI_N="${SBI_N:-500}"
SEED=1301
SCRATCH=$(resolve "${SCRATCH:-out/cross_physics}")
mkdir -p "$SCRATCH"
printf 'photometry: {bands: []}\n' > "$SCRATCH/nophot.yaml"

# name | --ssp | config ("" = defaults: five HST bands)
LIBS=(
  "builtin|builtin|"
  "emiles|emiles|"
  "miles|$CUBEFLOW_DATA_DIR/ssp/miles_basti_kb_ngist|$SCRATCH/nophot.yaml"
  "bc03|$CUBEFLOW_DATA_DIR/ssp/bc03_mpajhu|$SCRATCH/nophot.yaml"
  "emiles_dusty|emiles|bench/cross_physics_dusty.yaml"
)
SPECTRUM_ONLY="cnn_builtin_nophot cnn_emiles_nophot cnn_emiles_robust"
WITH_BANDS="cnn_builtin cnn_emiles"
for entry in "${LIBS[@]}"; do
  IFS='|' read -r name ssp cfg <<< "$entry"
  lib="$SCRATCH/${name}_${N}_seed${SEED}.fits"
  if [[ ! -f "$lib" ]]; then
    extra=()
    [[ -n "$cfg" ]] && extra=(--config "$cfg")
    echo "== $name: cubeflow simulate library --ssp $ssp --n $N --seed $SEED ${extra[*]}" >&2
    "$CF" simulate library --ssp "$ssp" --n "$N" --seed "$SEED" "${extra[@]}" --out "$lib" > /dev/null 2>&1
  fi
  models="$SPECTRUM_ONLY"
  [[ "$cfg" != *nophot.yaml ]] && models="$models $WITH_BANDS"  # no UV bands in the optical libraries
  for model in $models; do
    [[ -f "models/$model.pt" ]] || continue
    "$CF" evaluate "models/$model.pt" "$lib" --json "$SCRATCH/${model}_on_${name}.json" > /dev/null
  done
  if [[ -z "$cfg" ]]; then
    for model in sbi_builtin sbi_emiles; do
      "$CF" evaluate "models/$model.pt" "$lib" --rows "$SBI_N" --samples 200 \
        --json "$SCRATCH/${model}_on_${name}.json" > /dev/null
    done
  fi
done

/usr/bin/env python3 - "$SCRATCH" "$N" "$SBI_N" <<'PY'
import json, os, sys
scratch, n, sbi_n = sys.argv[1], sys.argv[2], sys.argv[3]
names = {"builtin": "built-in", "emiles": "E-MILES + Maraston young", "miles": "MILES BaSTI (optical)",
         "bc03": "BC03 (optical)", "emiles_dusty": "E-MILES, 2x the prior's dust"}
print(f"CNNs, truth - prediction (dex) on {n} held-out objects per library (seed 1301, noise S/N 15-50):")
print("bias / scatter / R^2 per quantity")
print("| model | rendered with | LW log age | MW log age | LW [Z/H] | MW [Z/H] |")
print("|---|---|---|---|---|---|")
for model in ["cnn_builtin_nophot", "cnn_emiles_nophot", "cnn_emiles_robust", "cnn_builtin", "cnn_emiles"]:
    for lib in names:
        f = os.path.join(scratch, f"{model}_on_{lib}.json")
        if not os.path.exists(f):
            continue
        j = json.load(open(f))
        cells = [f"{j[q + '_bias']:+.3f} / {j[q + '_scatter']:.3f} / {j[q + '_r2']:.2f}"
                 for q in ["lw_logage", "mw_logage", "lw_zh", "mw_zh"]]
        print(f"| {model} | {names[lib]} | " + " | ".join(cells) + " |")
print()
print(f"SBI, posterior medians on the first {sbi_n} objects, 200 samples each:")
print("bias (truth - median) / R^2; cov: largest |coverage - nominal| over 10-90 %")
print("| model | rendered with | t10 (Gyr) | t50 (Gyr) | t90 (Gyr) | [M/H] (dex) | cov t50 | cov [M/H] |")
print("|---|---|---|---|---|---|---|---|")
for model in ["sbi_builtin", "sbi_emiles"]:
    for lib in ["builtin", "emiles"]:
        f = os.path.join(scratch, f"{model}_on_{lib}.json")
        if not os.path.exists(f):
            continue
        j = json.load(open(f))
        cells = [f"{j['bias'][p]:+.3f} / {j['r2'][p]:.2f}" for p in ["t10", "t50", "t90", "mh"]]
        cov = j["max_coverage_deviation"]
        print(f"| {model} | {names[lib]} | " + " | ".join(cells) + f" | {cov['t50']:.3f} | {cov['mh']:.3f} |")
PY
