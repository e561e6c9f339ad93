#!/usr/bin/env bash
# Full-size benchmark (issues #3, #7, #16): a PHANGS-MUSE-sized mock cube (300 x 300 spaxels x 3681
# channels, about 1.3 GB per extension) made with `cubeflow simulate galaxy`, then
# pipelines/phangs_cnn.yaml on it (stellar kinematics fitted from the cube by kinematics.fit, with
# the mock's z_sys and LSF convention) with the runner's default thread count and with 1 and 2 threads.
#
# usage: bench/fullsize.sh [BUILD_DIR]        (from anywhere; BUILD_DIR or $CUBEFLOW_BUILD, default build)
# environment:
#   NX, NY         spaxels (default 300 x 300; NX=100 for a quick trial; NY defaults to NX)
#   SCRATCH        where the galaxy and the products go (default out/fullsize, gitignored)
#   THREADS        pipeline runs, space separated; 0 = no --threads (all cores) (default "0 1 2")
#   SIM_THREADS    --threads of the simulation (default 0 = all cores)
#   LAYOUT         simulate galaxy --layout: spiral (default) or classic (the galaxy of the figures
#                  in docs/runtime.md, measured before the spiral layout existed)
#   REUSE_GALAXY=1 keep an existing galaxy of the same size in SCRATCH instead of simulating again
#   KEEP=1         keep the galaxy afterwards (default: deleted at the end, it is ~2.7 GB at full size)
#   COLD=1         drop the galaxy's files (only those) from the page cache before every pipeline run
#                  (dd iflag=nocache), so the runs read the cube from disk
#
# Printed for every step: wall time, peak resident memory (the runner's VmHWM and /usr/bin/time -v
# "Maximum resident set size"), and the 1/5/15-minute load averages before and after (the machine
# may be shared, so every figure carries the load it was taken under). The cube stays in the page
# cache after the simulation: without COLD=1, io.read_cube timings are warm-cache figures.
#
# Targets (issue #7): the whole pipeline run within 180 s on 2 cores; peak RSS no more than 1.5 x
# the size of the channels actually read (flux + variance of io.read_cube's wave_min..wave_max).
set -euo pipefail
source "$(dirname "$0")/common.sh"
NX="${NX:-300}"
NY="${NY:-$NX}"
NWAVE=3681                      # cubeflow simulate galaxy's default MUSE WFM grid (4750 + 1.25 k A)
SCRATCH=$( [[ -n "${SCRATCH:-}" ]] && { [[ "$SCRATCH" = /* ]] && echo "$SCRATCH" || echo "$CALLER/$SCRATCH"; } || echo "$ROOT/out/fullsize")
THREADS="${THREADS:-0 1 2}"
SIM_THREADS="${SIM_THREADS:-0}"
LAYOUT="${LAYOUT:-spiral}"
REUSE_GALAXY="${REUSE_GALAXY:-0}"
KEEP="${KEEP:-0}"
COLD="${COLD:-0}"
PIPELINE="$ROOT/pipelines/phangs_cnn.yaml"
TARGET_WALL_S=180
TARGET_RSS_RATIO=1.5
TIMECMD=/usr/bin/time
if [[ ! -x $TIMECMD ]]; then
  echo "fullsize.sh: $TIMECMD (GNU time) is missing; install the 'time' package" >&2
  exit 2
fi

mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
GAL="$SCRATCH/galaxy"

load() { awk '{printf "%s %s %s", $1, $2, $3}' /proc/loadavg; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
# "Maximum resident set size (kbytes): N" of a /usr/bin/time -v report, in MiB
time_rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
# user + system CPU seconds of a /usr/bin/time -v report (less sensitive to the load than wall time)
time_cpu_s() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$1"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

# --- disk space -------------------------------------------------------------------------------
need_bytes=$(awk -v nx="$NX" -v ny="$NY" -v nw="$NWAVE" 'BEGIN {printf "%.0f", nx * ny * nw * 4 * 2 * 1.15 + 200e6}')
free_bytes=$(df -Pk "$SCRATCH" | awk 'NR == 2 {printf "%.0f", $4 * 1024}')
have_galaxy=0
if [[ "$REUSE_GALAXY" = 1 && -f "$GAL/cube.fits" && -f "$GAL/size" && "$(cat "$GAL/size")" = "$NX $NY" ]]; then
  have_galaxy=1
fi
if [[ $have_galaxy = 0 ]] && (( free_bytes < need_bytes )); then
  echo "fullsize.sh: $SCRATCH has $(mib "$free_bytes") MiB free, the ${NX}x${NY} galaxy needs about" \
       "$(mib "$need_bytes") MiB; free space or set SCRATCH to a larger disk (or NX=100 for a quick trial)" >&2
  exit 2
fi

echo "== cubeflow full-size benchmark: ${NX} x ${NY} x ${NWAVE} mock cube, $(nproc) cores, $(date -u +%FT%TZ)"
echo "   executable $CF"
echo "   scratch    $SCRATCH ($(mib "$free_bytes") MiB free before)"

# --- 1. simulate ------------------------------------------------------------------------------
sim_wall="-" sim_rss="-" sim_cpu="-" sim_load0="-" sim_load1="-"
if [[ $have_galaxy = 1 ]]; then
  echo "== reusing the galaxy in $GAL (REUSE_GALAXY=1): no simulation time"
else
  rm -rf "$GAL"
  echo "== cubeflow simulate galaxy --nx $NX --ny $NY --out $GAL"
  sim_load0=$(load)
  t0=$(now)
  if ! $TIMECMD -v -o "$SCRATCH/simulate.time" "$CF" simulate galaxy --nx "$NX" --ny "$NY" --seed 1 \
        --layout "$LAYOUT" --threads "$SIM_THREADS" --out "$GAL" > "$SCRATCH/simulate.log" 2>&1; then
    echo "fullsize.sh: the simulation failed; see $SCRATCH/simulate.log:" >&2
    tail -20 "$SCRATCH/simulate.log" >&2
    exit 1
  fi
  t1=$(now)
  sim_load1=$(load)
  sim_wall=$(elapsed "$t0" "$t1")
  sim_rss=$(time_rss_mib "$SCRATCH/simulate.time")
  sim_cpu=$(time_cpu_s "$SCRATCH/simulate.time")
  echo "$NX $NY" > "$GAL/size"
  echo "   $sim_wall s wall ($sim_cpu s CPU), peak RSS $sim_rss MiB; load $sim_load0 -> $sim_load1"
fi
ls -l "$GAL" | sed 's/^/   /'

# --- 2. pipeline runs -------------------------------------------------------------------------
declare -a R_T R_WALL R_PROC R_CPU R_BINS R_RSS R_TRSS R_L0 R_L1 R_TOP
read_mib="" read_shape=""
for t in $THREADS; do
  label=$([[ $t = 0 ]] && echo "default" || echo "$t")
  targ=()
  [[ $t = 0 ]] || targ=(--threads "$t")
  log="$SCRATCH/run_t$label.log"
  echo "== cubeflow run pipelines/phangs_cnn.yaml, threads: $label$([[ $COLD = 1 ]] && echo ", cold page cache")"
  if [[ $COLD = 1 ]]; then
    for f in "$GAL"/*.fits; do dd if="$f" iflag=nocache count=0 status=none; done
  fi
  l0=$(load)
  t0=$(now)
  if ! CUBEFLOW_CUBE="$GAL/cube.fits" CUBEFLOW_KINEMATICS="$GAL/kinematics.fits" CUBEFLOW_HST_DIR="$GAL" \
       CUBEFLOW_OUT="$SCRATCH/maps_t$label.fits" \
       $TIMECMD -v -o "$SCRATCH/run_t$label.time" "$CF" run "$PIPELINE" \
         --set rest.z_sys=0.00243 --set kin.z_sys=0.00243 --set kin.lsf_pixel=0 --set bin.covariance_alpha=0 \
         --set 'hst.pattern=hst_{band}.fits' --set hst.psf_muse_fwhm=0 \
         --no-progress -v "${targ[@]}" > "$log" 2>&1; then
    echo "fullsize.sh: the pipeline failed; see $log:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  t1=$(now)
  l1=$(load)
  # the runner's per-node table and summary line
  sed -n '/^node  *type  *calls/,/^wall time/p' "$log" | sed 's/^/   /'
  wall=$(awk '/^wall time/ {print $3}' "$log")
  rss=$(awk '/^wall time/ {for (i = 1; i <= NF; ++i) if ($i == "memory") print $(i + 1)}' "$log")
  nthr=$(awk '/^wall time/ {print $6}' "$log")
  bins=$(awk '$1 == "cnn" {print $4}' "$log")
  top=$(sed -n '/^node  *type  *calls/,/^wall time/p' "$log" |
        awk 'NR > 1 && $1 != "wall" && $6 + 0 > best {best = $6 + 0; name = $1} END {printf "%s %.1f s", name, best}')
  # channels actually read: "[read] read PATH: NX x NY x NW (W0 - W1 Angstrom, with variance)"
  line=$(grep -m1 '\[read\] read ' "$log" || true)
  if [[ -n "$line" ]]; then
    read_shape=$(sed -E 's/.*: ([0-9]+) x ([0-9]+) x ([0-9]+) \(([^,]*),.*/\1 x \2 x \3 (\4)/' <<< "$line")
    read_mib=$(sed -E 's/.*: ([0-9]+) x ([0-9]+) x ([0-9]+) \(.*(with|no) variance.*/\1 \2 \3 \4/' <<< "$line" |
               awk '{printf "%.1f", $1 * $2 * $3 * 4 * ($4 == "with" ? 2 : 1) / 1048576}')
  fi
  R_T+=("$label ($nthr)")
  R_WALL+=("$wall")
  R_PROC+=("$(elapsed "$t0" "$t1")")
  R_CPU+=("$(time_cpu_s "$SCRATCH/run_t$label.time")")
  R_BINS+=("$bins")
  R_RSS+=("$rss")
  R_TRSS+=("$(time_rss_mib "$SCRATCH/run_t$label.time")")
  R_L0+=("$l0")
  R_L1+=("$l1")
  R_TOP+=("$top")
  echo "   process wall ${R_PROC[-1]} s (runner ${wall} s, the rest is start-up: plugins, libtorch), $bins bins," \
       "peak RSS ${rss} MiB (time -v ${R_TRSS[-1]} MiB); load $l0 -> $l1"
done

# --- 3. summary -------------------------------------------------------------------------------
echo
echo "== summary: ${NX} x ${NY} x ${NWAVE} mock galaxy, $(nproc) cores, $([[ $COLD = 1 ]] && echo "cold" || echo "warm") page cache"
if [[ "$sim_wall" != "-" ]]; then
  echo "simulate galaxy: $sim_wall s wall ($sim_cpu s CPU), peak RSS $sim_rss MiB (load $sim_load0 -> $sim_load1)"
fi
echo "channels read by io.read_cube: $read_shape, flux + variance = $read_mib MiB"
printf '%-12s %9s %9s %7s %6s %8s %10s %10s %8s  %-16s %-16s %s\n' threads "runner s" "process s" "CPU s" bins "bins/s" \
  "RSS MiB" "time -v" "RSS/read" "load before" "load after" "busiest node"
verdict=""
for i in "${!R_T[@]}"; do
  bps=$(awk -v b="${R_BINS[$i]}" -v w="${R_WALL[$i]}" 'BEGIN {printf "%.1f", (w > 0) ? b / w : 0}')
  ratio=$(awk -v r="${R_TRSS[$i]}" -v c="$read_mib" 'BEGIN {printf "%.2f", (c > 0) ? r / c : 0}')
  printf '%-12s %9s %9s %7s %6s %8s %10s %10s %8s  %-16s %-16s %s\n' "${R_T[$i]}" "${R_WALL[$i]}" "${R_PROC[$i]}" "${R_CPU[$i]}" \
    "${R_BINS[$i]}" "$bps" "${R_RSS[$i]}" "${R_TRSS[$i]}" "$ratio" "${R_L0[$i]}" "${R_L1[$i]}" "${R_TOP[$i]}"
  # targets, judged on the 2-thread run (or the default run on a 2-core machine)
  if [[ "${R_T[$i]}" == *"(2)" && -z "$verdict" ]]; then
    w_ok=$(awk -v w="${R_PROC[$i]}" -v t="$TARGET_WALL_S" 'BEGIN {print ((w <= t) ? "met" : "MISSED")}')
    m_ok=$(awk -v r="$ratio" -v t="$TARGET_RSS_RATIO" 'BEGIN {print ((r <= t) ? "met" : "MISSED")}')
    verdict="targets (2 threads): run ${R_PROC[$i]} s <= ${TARGET_WALL_S} s: $w_ok; peak RSS / channels read $ratio <= $TARGET_RSS_RATIO: $m_ok"
  fi
done
echo "runner s: the runner's wall time (graph start to products written); process s: the whole command"
echo "(plugin loading and libtorch start-up included); CPU s: user + system CPU time of the command;"
echo "bins/s = bins / runner s; RSS/read = time -v peak RSS / (flux + variance read); busiest node: the"
echo "largest summed busy time (building the bin spectra, binning.voronoi's lazy stream source, runs"
echo "outside any node's Process and is in no row of the table)"
echo "${verdict:-targets: judged on a 2-thread run (put 2 in THREADS)}"
if awk -v c="$read_mib" 'BEGIN {exit !(c < 1000)}'; then
  echo "(small cube: the ~200 MiB of libraries (libtorch, plugins) dominate the RSS; the memory target is for the full-size cube)"
fi
echo "logs: $SCRATCH/{simulate,run_t*}.{log,time}"

if [[ "$KEEP" != 1 && "$REUSE_GALAXY" != 1 ]]; then
  rm -rf "$GAL"
  echo "(galaxy deleted; KEEP=1 keeps it, REUSE_GALAXY=1 reuses it on the next run)"
fi
