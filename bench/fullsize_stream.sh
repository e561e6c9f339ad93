#!/usr/bin/env bash
# Cubes larger than memory (issue #18, items 1 and 4): pipelines/phangs_cnn.yaml on 300 x 300 and
# 600 x 600 x 3681 mock cubes (`cubeflow simulate galaxy`; 2.7 and 10.6 GB), the cube streamed from
# its file by io.read_cube (it is above max_memory), with --threads 2. Sibling of fullsize.sh.
#
# usage: bench/fullsize_stream.sh [BUILD_DIR]   (BUILD_DIR or $CUBEFLOW_BUILD, default build)
# environment:
#   SIZES          spaxels per side, space separated (default "300 600"); the first is the reference
#   SCRATCH        galaxies and products (default out/fullsize_stream, gitignored)
#   REUSE_GALAXY=1 reuse SCRATCH/galaxyN when it has the right size (else simulate)
#   KEEP=1         keep the galaxies (default: deleted at the end; 600 x 600 is 10.6 GB)
#   CAP_MB         memory cap of the capped run of the largest cube (default 2048; 0 = no capped run)
#   COLD=1         also run the largest cube with its files dropped from the page cache first
#                  (dd iflag=nocache), for the I/O rate from disk
#   IDENTICAL=1    (default) also run the reference cube in memory and streamed on one thread and
#                  compare the products HDU by HDU (needs /usr/bin/python3 with numpy, astropy)
#
# Printed for every run: wall time (runner, whole command), CPU time (user + system), bins, bins/s,
# peak RSS (the runner's VmHWM and /usr/bin/time -v), bytes read by the process (rchar: all
# read(2) bytes, page cache included; read_bytes: from the block device), with the 1-minute load
# before and after. Bytes are counted from /proc/PID/io of a shell that waited for cubeflow (a
# reaped child's counters are added to its parent's).
#
# Targets (issue #18): peak RSS of the largest cube <= 1.2 x that of the reference and < 1.5 GB;
# the largest cube completes under a CAP_MB memory cap; products identical in memory and streamed;
# the largest cube end to end under 120 s on 2 threads from the page cache.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[[ -x /usr/bin/time ]] || { echo "fullsize_stream.sh: /usr/bin/time (GNU time) is missing" >&2; exit 2; }
SIZES="${SIZES:-300 600}"
SCRATCH=$( [[ -n "${SCRATCH:-}" ]] && { [[ "$SCRATCH" = /* ]] && echo "$SCRATCH" || echo "$CALLER/$SCRATCH"; } || echo "$ROOT/out/fullsize_stream")
REUSE_GALAXY="${REUSE_GALAXY:-0}"
KEEP="${KEEP:-0}"
CAP_MB="${CAP_MB:-2048}"
COLD="${COLD:-0}"
IDENTICAL="${IDENTICAL:-1}"
PIPELINE="$ROOT/pipelines/phangs_cnn.yaml"
MOCK=(--set rest.z_sys=0.00243 --set kin.z_sys=0.00243 --set kin.lsf_pixel=0 --set bin.covariance_alpha=0
      --set 'hst.pattern=hst_{band}.fits' --set hst.psf_muse_fwhm=0)
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
REF=${SIZES%% *}
LARGEST=${SIZES##* }

load1() { awk '{print $1}' /proc/loadavg; }
now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
field() { awk -v k="$2:" '$1 == k {print $2}' "$1"; }   # /proc/PID/io field

echo "== cubeflow streamed-cube benchmark: sizes $SIZES x 3681 channels, $(nproc) cores, $(date -u +%FT%TZ)"
echo "   executable $CF; scratch $SCRATCH ($(df -Pk "$SCRATCH" | awk 'NR == 2 {printf "%.0f", $4 / 1024}') MiB free)"

# --- galaxies ---------------------------------------------------------------------------------
for n in $SIZES; do
  g="$SCRATCH/galaxy$n"
  if [[ "$REUSE_GALAXY" = 1 && -f "$g/cube.fits" && "$(cat "$g/size" 2>/dev/null)" = "$n $n" ]]; then
    echo "== reusing $g"
    continue
  fi
  need=$(awk -v n="$n" 'BEGIN {printf "%.0f", n * n * 3681 * 8 * 1.15 / 1048576 + 300}')
  free=$(df -Pk "$SCRATCH" | awk 'NR == 2 {printf "%.0f", $4 / 1024}')
  (( free > need )) || { echo "fullsize_stream.sh: $SCRATCH has $free MiB free, ${n}x$n needs ~$need MiB" >&2; exit 2; }
  rm -rf "$g"
  echo "== cubeflow simulate galaxy --nx $n --ny $n --seed 1 (load $(load1))"
  t0=$(now)
  /usr/bin/time -v -o "$SCRATCH/simulate$n.time" "$CF" simulate galaxy --nx "$n" --ny "$n" --seed 1 --out "$g" \
    > "$SCRATCH/simulate$n.log" 2>&1 || { tail -20 "$SCRATCH/simulate$n.log" >&2; exit 1; }
  echo "$n $n" > "$g/size"
  echo "   $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s wall; cube $(mib "$(stat -c %s "$g/cube.fits")") MiB"
done

# --- memory caps ------------------------------------------------------------------------------
# How the capped run is confined: a cgroup (v2, else v1) made for it if /sys/fs/cgroup lets us, else
# RLIMIT_DATA (prlimit --data: heap and anonymous mmaps, not the page cache; RLIMIT_AS is not used:
# libtorch and TBB reserve address space they never touch).
CAP_HOW="" CG=""
make_cap() {
  local mb=$1 bytes=$(( $1 * 1048576 ))
  if [[ -w /sys/fs/cgroup/cgroup.subtree_control ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CG=/sys/fs/cgroup/cubeflow-bench-$$
    if mkdir "$CG" 2>/dev/null && echo "$bytes" > "$CG/memory.max" 2>/dev/null; then
      echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
      CAP_HOW="cgroup v2 memory.max = $mb MiB ($CG)"; return
    fi
    rmdir "$CG" 2>/dev/null || true
  fi
  if [[ -d /sys/fs/cgroup/memory && -w /sys/fs/cgroup/memory ]]; then
    CG=/sys/fs/cgroup/memory/cubeflow-bench-$$
    if mkdir "$CG" 2>/dev/null && echo "$bytes" > "$CG/memory.limit_in_bytes" 2>/dev/null; then
      echo "$bytes" > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
      CAP_HOW="cgroup v1 memory.limit_in_bytes = $mb MiB ($CG; the page cache of the files read counts too and is reclaimed)"; return
    fi
    rmdir "$CG" 2>/dev/null || true
  fi
  CG=""
  CAP_HOW="RLIMIT_DATA = $mb MiB (prlimit --data; no writable cgroup here)"
}
drop_cap() { [[ -n "$CG" ]] && rmdir "$CG" 2>/dev/null || true; }
trap drop_cap EXIT

# --- runs -------------------------------------------------------------------------------------
declare -a L_NAME L_RUNNER L_WALL L_CPU L_BINS L_RSS L_TRSS L_RCHAR L_RBYTES L_LOAD
# run NAME SIZE THREADS CAPPED(0/1) [extra args]: one pipeline run, figures appended to the table
run() {
  local name=$1 n=$2 threads=$3 capped=$4; shift 4
  local g="$SCRATCH/galaxy$n" log="$SCRATCH/$name.log"
  local prefix=()
  if [[ $capped = 1 ]]; then
    if [[ -n "$CG" ]]; then
      prefix=(bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG")
    else
      prefix=(prlimit --data=$(( CAP_MB * 1048576 )))
    fi
  fi
  local l0 t0 t1 rc=0
  l0=$(load1)
  t0=$(now)
  env CUBEFLOW_CUBE="$g/cube.fits" CUBEFLOW_HST_DIR="$g" CUBEFLOW_OUT="$SCRATCH/$name.fits" \
    bash -c '"$@"; rc=$?; cat /proc/$$/io > "'"$SCRATCH/$name.io"'"; exit $rc' _ \
    /usr/bin/time -v -o "$SCRATCH/$name.time" "${prefix[@]}" "$CF" run "$PIPELINE" "${MOCK[@]}" \
      --threads "$threads" --no-progress -v "$@" > "$log" 2>&1 || rc=$?
  t1=$(now)
  if [[ $rc != 0 ]]; then
    echo "   $name FAILED (exit $rc); see $log:" >&2
    tail -5 "$log" >&2
    L_NAME+=("$name") L_RUNNER+=("FAILED") L_WALL+=("-") L_CPU+=("-") L_BINS+=("-") L_RSS+=("-") L_TRSS+=("-")
    L_RCHAR+=("-") L_RBYTES+=("-") L_LOAD+=("$l0")
    return 1
  fi
  L_NAME+=("$name")
  L_RUNNER+=("$(awk '/^wall time/ {print $3}' "$log")")
  L_WALL+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')")
  L_CPU+=("$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$SCRATCH/$name.time")")
  L_BINS+=("$(awk '$1 == "cnn" {print $4}' "$log")")
  L_RSS+=("$(awk '/^wall time/ {for (i = 1; i <= NF; ++i) if ($i == "memory") print $(i + 1)}' "$log")")
  L_TRSS+=("$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$SCRATCH/$name.time")")
  L_RCHAR+=("$(mib "$(field "$SCRATCH/$name.io" rchar)")")
  L_RBYTES+=("$(mib "$(field "$SCRATCH/$name.io" read_bytes)")")
  L_LOAD+=("$l0 -> $(load1)")
  echo "   $name: runner ${L_RUNNER[-1]} s, command ${L_WALL[-1]} s, CPU ${L_CPU[-1]} s, ${L_BINS[-1]} bins," \
       "peak RSS ${L_RSS[-1]} MiB, rchar ${L_RCHAR[-1]} MiB, read_bytes ${L_RBYTES[-1]} MiB"
}
find_row() { local i; for i in "${!L_NAME[@]}"; do [[ "${L_NAME[$i]}" = "$1" ]] && { echo "$i"; return; }; done; echo -1; }

for n in $SIZES; do
  echo "== ${n} x ${n}: streamed, --threads 2 (warm page cache: the cube was just written or read)"
  run "stream${n}_t2" "$n" 2 0 || true
done
identical="not checked"
if [[ "$IDENTICAL" = 1 ]]; then
  echo "== ${REF} x ${REF}: in memory (read.max_memory above the cube) and streamed, --threads 1, products compared"
  if run "memory${REF}_t1" "$REF" 1 0 --set read.max_memory=1000000 && run "stream${REF}_t1" "$REF" 1 0; then
    if /usr/bin/python3 - "$ROOT/tests/e2e" "$SCRATCH/memory${REF}_t1.fits" "$SCRATCH/stream${REF}_t1.fits" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from fits_compare import assert_same, hdu_data
a, b = hdu_data(sys.argv[2]), hdu_data(sys.argv[3])
assert_same(a, b)
print(f"   products identical: {len(a)} HDUs ({', '.join(a)})")
EOF
    then identical="yes (every HDU)"; else identical="NO"; fi
  else
    identical="a run failed"
  fi
fi
capped="not run"
if [[ "$CAP_MB" != 0 ]]; then
  make_cap "$CAP_MB"
  echo "== ${LARGEST} x ${LARGEST}: streamed, --threads 2, under $CAP_HOW"
  if run "capped${LARGEST}_t2" "$LARGEST" 2 1; then capped="completed"; else capped="FAILED"; fi
  if [[ -n "$CG" ]]; then
    for k in memory.peak memory.max_usage_in_bytes memory.failcnt; do
      [[ -r "$CG/$k" ]] && echo "   $k: $(cat "$CG/$k")"
    done
    grep -h oom_kill "$CG/memory.events" "$CG/memory.oom_control" 2>/dev/null | sed 's/^/   /' || true
  fi
  drop_cap
fi
if [[ "$COLD" = 1 ]]; then
  echo "== ${LARGEST} x ${LARGEST}: streamed, --threads 2, cold page cache"
  for f in "$SCRATCH/galaxy$LARGEST"/*.fits; do dd if="$f" iflag=nocache count=0 status=none; done
  run "cold${LARGEST}_t2" "$LARGEST" 2 0 || true
fi

# --- summary ----------------------------------------------------------------------------------
echo
echo "== summary ($(nproc) cores, $(date -u +%FT%TZ))"
printf '%-16s %9s %9s %7s %6s %7s %9s %9s %10s %10s %8s  %s\n' run "runner s" "command s" "CPU s" bins "bins/s" \
  "RSS MiB" "time -v" "rchar MiB" "disk MiB" "MiB/s" "load"
for i in "${!L_NAME[@]}"; do
  bps=$(awk -v b="${L_BINS[$i]}" -v w="${L_RUNNER[$i]}" 'BEGIN {printf "%.1f", (w > 0) ? b / w : 0}')
  rate=$(awk -v r="${L_RBYTES[$i]}" -v w="${L_WALL[$i]}" 'BEGIN {printf "%.0f", (w > 0) ? r / w : 0}')
  printf '%-16s %9s %9s %7s %6s %7s %9s %9s %10s %10s %8s  %s\n' "${L_NAME[$i]}" "${L_RUNNER[$i]}" "${L_WALL[$i]}" \
    "${L_CPU[$i]}" "${L_BINS[$i]}" "$bps" "${L_RSS[$i]}" "${L_TRSS[$i]}" "${L_RCHAR[$i]}" "${L_RBYTES[$i]}" "$rate" "${L_LOAD[$i]}"
done
echo "rchar: bytes read(2) by the process (page cache included); disk: read_bytes from the block device;"
echo "MiB/s: disk / command s (the I/O rate when cold); RSS: the runner's VmHWM; time -v: GNU time's maximum RSS"
ir=$(find_row "stream${REF}_t2") il=$(find_row "stream${LARGEST}_t2")
if [[ $ir -ge 0 && $il -ge 0 && "${L_RUNNER[$il]}" != FAILED && "${L_RUNNER[$ir]}" != FAILED ]]; then
  ratio=$(awk -v a="${L_TRSS[$il]}" -v b="${L_TRSS[$ir]}" 'BEGIN {printf "%.3f", a / b}')
  echo "targets:"
  echo "  peak RSS ${LARGEST}^2 / ${REF}^2 = ${L_TRSS[$il]} / ${L_TRSS[$ir]} = $ratio <= 1.2: $(awk -v r="$ratio" 'BEGIN {print (r <= 1.2) ? "met" : "MISSED"}')"
  echo "  peak RSS ${LARGEST}^2 = ${L_TRSS[$il]} MiB < 1536 MiB: $(awk -v r="${L_TRSS[$il]}" 'BEGIN {print (r < 1536) ? "met" : "MISSED"}')"
  echo "  ${LARGEST}^2 end to end ${L_WALL[$il]} s < 120 s on 2 threads (warm): $(awk -v w="${L_WALL[$il]}" 'BEGIN {print (w < 120) ? "met" : "MISSED"}')"
fi
echo "  capped run (${CAP_HOW:-no cap}): $capped"
echo "  products in memory vs streamed (${REF}^2, 1 thread): $identical"
echo "logs: $SCRATCH/*.{log,time,io}"
if [[ "$KEEP" != 1 ]]; then
  for n in $SIZES; do rm -rf "$SCRATCH/galaxy$n"; done
  echo "(galaxies deleted; KEEP=1 keeps them, REUSE_GALAXY=1 reuses them)"
fi
