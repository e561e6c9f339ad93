#!/usr/bin/env bash
# From paper 000's setting to the MUSE one, one change at a time (docs/sbi.md, "Paper 000 reproduced, and where t50's
# information goes"). Every step simulates a training and a test library with the same seeds
# (so steps 0-5 share the same histories and [M/H]; steps 6-9 the same draws of their own prior),
# trains the SBI model of bench/paper000/sbi.train.yaml's architecture on it with `cubeflow
# train`, evaluates it with `cubeflow evaluate` on the test library, and prints one table row.
#
#   step  change                                     library config
#   0     paper 000: MILES 3540-7410 A, 2.51 A FWHM, no noise/dust/lines, one [M/H], Dense Basis
#                                                    bench/paper000/library.yaml
#   1     MUSE range 4800-7000 A                     steps/s1_muse_range.yaml
#   2     MUSE LSF + 150 km/s                        steps/s2_muse_lsf.yaml
#   3     noise, S/N 15-50 per pixel (in training; the model gets the S/N)   (library of step 2)
#   4     two-component dust                         steps/s4_dust.yaml
#   5     nebular lines                              steps/s5_lines.yaml
#   6     paper 004's prior mixture                  steps/s6_prior004.yaml
#   7     paper 004's metallicity history (eq. 2)    steps/s7_zhistory.yaml
#   8     photometry F438W, F555W (S/N 50)           steps/s8_photometry.yaml
#   9     built-in SSPs, five bands (the shipped model's setting with the Dense Basis prior)
#                                                    steps/s9_builtin.yaml
#
# usage: bench/paper000/steps.sh [BUILD_DIR]    (BUILD_DIR or $CUBEFLOW_BUILD, default build)
# environment:
#   STEPS        steps to run (default "0 1 2 3 4 5 6 7 8 9")
#   N_TRAIN      training library size (default 20000: 90 % train, 10 % validate)
#   N_TEST       test library size (default 2000; seed 1101, used nowhere else)
#   EPOCHS       encoder epochs (default 10); FLOW_EPOCHS flow epochs (default 30)
#   ENCODER_FROM a trained model whose encoder is kept: only the flow is trained (e.g. a longer
#                flow on an earlier run's encoder)
#   SAMPLES      posterior samples per test object (default 500)
#   THREADS      libtorch threads for training and evaluation (default 1)
#   SCRATCH      where libraries, models and evaluations go (default sims/paper000/steps, gitignored)
# A step whose evaluation JSON exists is not redone (delete SCRATCH/sN to redo it). Needs
# ../shared/data beside the repository for the MILES steps. Run it alone on the machine: each
# step trains for ~10-20 minutes on one core.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
STEPS="${STEPS:-0 1 2 3 4 5 6 7 8 9}"
N_TRAIN="${N_TRAIN:-20000}"
N_TEST="${N_TEST:-2000}"
EPOCHS="${EPOCHS:-10}"
FLOW_EPOCHS="${FLOW_EPOCHS:-30}"
SAMPLES="${SAMPLES:-500}"
THREADS="${THREADS:-1}"
ENCODER_FROM="${ENCODER_FROM:-}"
[[ -n "$ENCODER_FROM" ]] && ENCODER_FROM=$(resolve "$ENCODER_FROM")
SCRATCH=$( [[ -n "${SCRATCH:-}" ]] && resolve "$SCRATCH" || echo "$ROOT/sims/paper000/steps")
mkdir -p "$SCRATCH"
P=bench/paper000

config_of() {  # library config of a step
  case "$1" in
    0) echo "$P/library.yaml" ;;
    1) echo "$P/steps/s1_muse_range.yaml" ;;
    2|3) echo "$P/steps/s2_muse_lsf.yaml" ;;
    4) echo "$P/steps/s4_dust.yaml" ;;
    5) echo "$P/steps/s5_lines.yaml" ;;
    6) echo "$P/steps/s6_prior004.yaml" ;;
    7) echo "$P/steps/s7_zhistory.yaml" ;;
    8) echo "$P/steps/s8_photometry.yaml" ;;
    9) echo "$P/steps/s9_builtin.yaml" ;;
    *) echo "steps.sh: unknown step $1" >&2; exit 2 ;;
  esac
}
change_of() {
  case "$1" in
    0) echo "paper 000 setting" ;; 1) echo "+ MUSE range 4800-7000 A" ;; 2) echo "+ MUSE LSF, 150 km/s" ;;
    3) echo "+ noise S/N 15-50" ;; 4) echo "+ dust" ;; 5) echo "+ nebular lines" ;; 6) echo "+ paper 004 prior mix" ;;
    7) echo "+ Z history (eq. 2)" ;; 8) echo "+ F438W, F555W" ;; 9) echo "+ built-in SSPs, 5 bands" ;;
  esac
}
library_dir_of() { if [[ "$1" == 3 ]]; then echo "$SCRATCH/s2"; else echo "$SCRATCH/s$1"; fi; }

for s in $STEPS; do
  d="$SCRATCH/s$s"
  mkdir -p "$d"
  [[ -f "$d/eval.json" ]] && { echo "step $s: $d/eval.json exists, kept" >&2; continue; }
  ld=$(library_dir_of "$s")
  mkdir -p "$ld"
  cfg=$(config_of "$s")
  for part in "train:$N_TRAIN:1100" "test:$N_TEST:1101"; do
    IFS=: read -r name n seed <<< "$part"
    lib="$ld/${name}_${n}_seed${seed}.fits"
    [[ -f "$lib" ]] || "$CF" simulate library --n "$n" --seed "$seed" --config "$cfg" --out "$lib" >&2
  done
  noisy=false; phot=false
  (( s >= 3 )) && noisy=true
  (( s >= 8 )) && phot=true
  if $noisy; then augment="{snr: [15, 20, 35, 50], phot_snr: 50}"; else augment=false; fi
  cat > "$d/train.yaml" <<EOF
# written by bench/paper000/steps.sh, step $s ($(change_of "$s"))
kind: sbi
library: $ld/train_${N_TRAIN}_seed1100.fits
output: $d/sbi.pt
augment_noise: $augment
split: [0.9, 0.1]
photometry: $phot
noise_input: $noisy
time_transform: log_lookback
seed: 42
threads: $THREADS$([[ -n "$ENCODER_FROM" ]] && printf '\nencoder_from: %s' "$ENCODER_FROM")
epochs: $EPOCHS
batch_size: 128
lr: 1.0e-3
lr_factor: 0.8
lr_patience: 3
stop_patience: 6
flow_epochs: $FLOW_EPOCHS
flow_batch_size: 512
flow_lr: 1.0e-3
flow_lr_patience: 5
flow_stop_patience: 12
flow_noise_draws: 2
flow_jitter: 0.05
flow_jitter_anneal: true
eval_samples: 200
architecture: {channels: [16, 32, 32], kernels: [7, 5, 3], pools: [4, 4, 2], attention: true, summary_dim: 16}
flow: {transform: spline, layers: 6, hidden: 64, context_hidden: 64, bins: 8, tail_bound: 5}
EOF
  echo "step $s ($(change_of "$s")): training on $ld/train_${N_TRAIN}_seed1100.fits" >&2
  "$CF" train "$d/train.yaml" > "$d/train.log" 2>&1 || { tail -5 "$d/train.log" >&2; exit 1; }
  extra=()
  $noisy && extra=(--add-noise 15,20,35,50 --phot-snr 50)
  "$CF" evaluate "$d/sbi.pt" "$ld/test_${N_TEST}_seed1101.fits" --rows "$N_TEST" --samples "$SAMPLES" \
      --threads "$THREADS" "${extra[@]}" --json "$d/eval.json.tmp" > "$d/eval.txt"
  mv "$d/eval.json.tmp" "$d/eval.json"
done

echo
echo "From paper 000's setting to the MUSE one: $N_TRAIN training spectra (90 % train, 10 % validate),"
echo "$([[ -n "$ENCODER_FROM" ]] && echo "the encoder of $ENCODER_FROM" || echo "$EPOCHS encoder epochs") + $FLOW_EPOCHS flow epochs, $N_TEST test spectra (seed 1101), $SAMPLES posterior samples each."
echo "R2 of the posterior medians; w/p: mean 16-84 % posterior width / 16-84 % range of the truths;"
echo "cov: largest |coverage - nominal| over the 10-90 % central intervals, all 10 parameters."
/usr/bin/env python3 - "$SCRATCH" "$STEPS" <<'EOF'
import json, os, sys
scratch, steps = sys.argv[1], sys.argv[2].split()
names = {"0": "paper 000 setting", "1": "+ MUSE range 4800-7000 A", "2": "+ MUSE LSF, 150 km/s",
         "3": "+ noise S/N 15-50", "4": "+ dust", "5": "+ nebular lines", "6": "+ paper 004 prior mix",
         "7": "+ Z history (eq. 2)", "8": "+ F438W, F555W", "9": "+ built-in SSPs, 5 bands"}
print("| step | change | R2 t10 | R2 t50 | R2 t90 | R2 [M/H] | w/p t50 | w/p [M/H] | cov |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for s in steps:
    f = os.path.join(scratch, "s" + s, "eval.json")
    if not os.path.exists(f):
        print(f"| {s} | {names[s]} | (not run) |||||||")
        continue
    j = json.load(open(f))
    r, w, p = j["r2"], j["width68"], j["prior_width68"]
    cov = max(j["max_coverage_deviation"].values())
    print(f"| {s} | {names[s]} | {r['t10']:.3f} | {r['t50']:.3f} | {r['t90']:.3f} | {r['mh']:.3f} | "
          f"{w['t50'] / p['t50']:.2f} | {w['mh'] / p['mh']:.2f} | {cov:.3f} |")
EOF
