#!/usr/bin/env bash
# Accuracy and skill of the shipped models on spiral mock galaxies (issue #15): the tables of
# docs/cnn.md ("Accuracy on mock galaxies") and docs/sbi.md ("On mock galaxies") are this
# script's output.
#
# For every seed: `cubeflow simulate galaxy --nx NX --ny NX --seed S` (spiral layout) with its truth
# library; pipelines/demo_sbi.yaml on it (Voronoi S/N 35, rest frame, HST photometry,
# cnn_builtin and sbi_builtin) and pipelines/demo.yaml with cnn_builtin_nophot, each compared with
# the truth by `cubeflow compare --report-only` (per bin); `cubeflow evaluate` of both CNNs on the
# truth library (per spaxel, no pipeline: the model's own error on the galaxy's histories).
# Then one table: median offset (truth - prediction), scatter, R^2, Spearman rho and the scatter
# of the best constant map, per seed, model, path and quantity, with the compare targets.
#
# usage: bench/mock_accuracy.sh [BUILD_DIR]     (from anywhere; default build)
# environment: SEEDS (default "101 102 103": seeds used neither for training nor for choosing a
#              model; keep them so), NX (default 60), SCRATCH (default out/mock_accuracy)
# Takes about a minute per seed on the 2-core build machine.
set -euo pipefail
source "$(dirname "$0")/common.sh"
SEEDS="${SEEDS:-101 102 103}"
NX="${NX:-60}"
SCRATCH=$(resolve "${SCRATCH:-out/mock_accuracy}")
mkdir -p "$SCRATCH"

if [[ "${REUSE:-0}" != 1 ]]; then
for s in $SEEDS; do
  g="$SCRATCH/galaxy_$s"
  echo "== seed $s: cubeflow simulate galaxy --nx $NX --ny $NX --seed $s --truth-library" >&2
  "$CF" simulate galaxy --out "$g" --nx "$NX" --ny "$NX" --seed "$s" --truth-library "$g/truth_library.fits" \
    2> "$g.log" || { cat "$g.log" >&2; exit 1; }
  CUBEFLOW_DEMO_DIR="$g" "$CF" run pipelines/demo_sbi.yaml --set out.path="$g/maps_cnn_sbi.fits" > /dev/null 2>&1
  CUBEFLOW_DEMO_DIR="$g" "$CF" run pipelines/demo.yaml --set cnn.model=cnn_builtin_nophot \
    --set out.path="$g/maps_nophot.fits" > /dev/null 2>&1
  "$CF" compare "$g/maps_cnn_sbi.fits" "$g/truth.fits" --report-only --json "$g/compare_cnn_sbi.json" > /dev/null
  "$CF" compare "$g/maps_nophot.fits" "$g/truth.fits" --report-only --json "$g/compare_nophot.json" > /dev/null
  for m in cnn_builtin cnn_builtin_nophot; do
    "$CF" evaluate "models/$m.pt" "$g/truth_library.fits" --threads 1 --json "$g/evaluate_$m.json" > /dev/null 2>&1
  done
done
fi

/usr/bin/env python3 - "$SCRATCH" "$NX" $SEEDS <<'PY'
import json, os, sys
scratch, nx, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
Q = ("lw_logage", "mw_logage", "lw_zh", "mw_zh")
def cell(r2, rho, off, sd, ok=None):
    f = lambda v, fmt: "n/a" if v is None else fmt % v
    mark = "" if ok is None else (" ✓" if ok else " ✗")
    return f"R² {f(r2, '%.2f')}, ρ {f(rho, '%.2f')} ({f(off, '%+.3f')} / {f(sd, '%.3f')}){mark}"
print(f"\nSpiral mock galaxies {nx}x{nx} (`cubeflow simulate galaxy --seed S`). Each cell: R² = 1 - SSE/SST, "
      "Spearman ρ (median offset truth - prediction / scatter, dex); ✓/✗: every `cubeflow compare` target "
      "met / missed (R² >= 0.8, |offset| <= 0.05, scatter <= 0.15 LW age, 0.2 MW age, 0.08 [Z/H]). "
      "'best constant': the constant map at the median truth (R² <= 0, no ranking, scatter = the truths' "
      "standard deviation).\n")
print("| seed | model | path | n | LW log age | MW log age | LW [Z/H] | MW [Z/H] or MH (SBI) |")
print("|---|---|---|---:|---|---|---|---|")
for s in seeds:
    g = os.path.join(scratch, f"galaxy_{s}")
    cs = json.load(open(os.path.join(g, "compare_cnn_sbi.json")))
    cn = json.load(open(os.path.join(g, "compare_nophot.json")))
    print(f"| {s} | best constant | bins | {cs['n_bins']} | " + " | ".join(
        f"R² ≤ 0 (0 / {cs[q + '_constant_scatter']:.3f})" for q in Q) + " |")
    for model, c in (("cnn_builtin", cs), ("cnn_builtin_nophot", cn)):
        print(f"| {s} | {model} | pipeline (bins) | {c['n_bins']} | " + " | ".join(
            cell(c[q + "_r2"], c[q + "_spearman"], c[q + "_median_offset"], c[q + "_scatter"], c[q + "_pass"])
            for q in Q) + " |")
    for model in ("cnn_builtin", "cnn_builtin_nophot"):
        e = json.load(open(os.path.join(g, f"evaluate_{model}.json")))
        print(f"| {s} | {model} | truth library (spaxels) | {e['n']} | " + " | ".join(
            cell(e[q + "_r2"], e[q + "_spearman"], e[q + "_median"], e[q + "_scatter"]) for q in Q) + " |")
    cov = cs.get("mh_coverage68")
    print(f"| {s} | sbi_builtin | pipeline (bins) | {cs['mh_n']} | | | | MH: " +
          cell(cs["mh_r2"], cs["mh_spearman"], cs["mh_median_offset"], cs["mh_scatter"], cs["mh_pass"]) +
          (f"; 16-84 % interval holds {100 * cov:.0f} % of the truths" if cov is not None else "") + " |")
PY
