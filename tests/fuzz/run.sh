#!/usr/bin/env bash
# Runs the libFuzzer targets of a CUBEFLOW_FUZZ build for a while each, starting from their
# committed corpus and crash reproducers, and prints a summary table (README.md here).
#
#   bash tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#   bash tests/fuzz/run.sh --summary BUILD_DIR [TARGET...]   # the table of the last run, from its logs
#
# CUBEFLOW_FUZZ_JOBS (default 1) targets run at a time, each on one core. New interesting inputs
# go to BUILD_DIR/fuzz/corpus/<target>/ (the committed corpus is only read; tests/fuzz/merge.sh
# minimises them into it). A crash, leak, timeout (one input running longer than
# CUBEFLOW_FUZZ_TIMEOUT seconds, default 10), out-of-memory (-rss_limit_mb=2048) or sanitizer
# report stops that target, leaves its reproducer in BUILD_DIR/fuzz/artifacts/ and makes the
# script exit 1 after the rest have run. Each target's output goes to BUILD_DIR/fuzz/<target>.log.
# CUBEFLOW_FUZZ_SEED fixes libFuzzer's seed (CI does, so that its short runs repeat the same
# inputs and a new finding comes from a change, not from chance); unset, every run explores anew.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage="usage: run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...] | run.sh --summary BUILD_DIR [TARGET...]"
summary_only=0
if [ "${1:-}" = "--summary" ]; then
  summary_only=1
  shift
fi
build="${1:?$usage}"
shift
seconds=30
if [ "$summary_only" = 0 ] && [ $# -gt 0 ]; then
  seconds="$1"
  shift
fi
targets=("$@")
all=(pipeline_yaml fits_cube fits_image fits_maps bunit wcs ssp_filename sim_config model_metadata)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# The table, from each target's log: executions and exec/s from libFuzzer's final stats; cov
# (edges), ft (features) and corpus from its last status line; the finding (first sanitizer or
# libFuzzer error, or the target's own abort message) and where its reproducer went. Exit status
# 1 if a target found something or did not finish.
summary() {
  local t log last execs rate finding art status bad=()
  printf '%-15s %6s %12s %8s %6s %7s %13s  %s\n' target status execs exec/s cov ft corpus finding
  for t in "${targets[@]}"; do
    log="$build/fuzz/$t.log"
    [ -f "$log" ] || { printf '%-15s %6s\n' "$t" "no log"; bad+=("$t"); continue; }
    last="$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1)"
    execs="$(sed -nE 's/^stat::number_of_executed_units: +([0-9]+)/\1/p' "$log")"
    rate="$(sed -nE 's/^stat::average_exec_per_sec: +([0-9]+)/\1/p' "$log")"
    finding="$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer): [a-zA-Z-]+|runtime error: .{0,60}|^fuzz_[a-z_]+: .{0,60}|^run.sh: .*' "$log" || true)"
    art="$(grep -m1 -oE 'Test unit written to [^ ]+' "$log" | sed 's/Test unit written to //' || true)"
    status=ok
    if [ -n "$finding$art" ] || ! grep -qE '^#[0-9]+[[:space:]]+DONE' "$log"; then
      status=FAILED
      finding="${finding:-did not finish}${art:+ -> $art}"
      bad+=("$t")
    fi
    printf '%-15s %6s %12s %8s %6s %7s %13s  %s\n' "$t" "$status" "${execs:--}" "${rate:--}" \
      "$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$last")" "$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$last")" \
      "$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<< "$last")" "${finding:-none}"
  done
  echo "(execs, exec/s: libFuzzer's final stats; cov, ft, corpus (inputs/bytes): its last status line;" \
    "logs: $build/fuzz/<target>.log)"
  if [ ${#bad[@]} -gt 0 ]; then
    echo "run.sh: findings in: ${bad[*]} (reproducers in $build/fuzz/artifacts/; tests/fuzz/README.md says" \
      "how one becomes a regression test)" >&2
    return 1
  fi
}
if [ "$summary_only" = 1 ]; then
  summary
  exit
fi
jobs="${CUBEFLOW_FUZZ_JOBS:-1}"
# CFITSIO and wcslib check what calloc returns: let absurd requests fail as they do in production
# (C++ allocations that fail are still reported). Leaks are findings.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
mkdir -p "$build/fuzz/artifacts"

# One target; its exit status is libFuzzer's (0: nothing found).
run_one() {
  local t="$1" exe="$build/bin/fuzz_$1" work="$build/fuzz/corpus/$1" log="$build/fuzz/$1.log"
  if [ ! -x "$exe" ]; then
    echo "run.sh: $exe is missing (configure with -DCUBEFLOW_FUZZ=ON and build it)" > "$log"
    return 2
  fi
  mkdir -p "$work"
  local args=(-max_total_time="$seconds" -timeout="${CUBEFLOW_FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048
              -print_final_stats=1 -artifact_prefix="$build/fuzz/artifacts/$t-")
  local dict="$here/dict/$t.dict"
  case "$t" in fits_* | wcs) dict="$here/dict/fits.dict" ;; esac
  [ -f "$dict" ] && args+=(-dict="$dict")
  [ -n "${CUBEFLOW_FUZZ_SEED:-}" ] && args+=(-seed="$CUBEFLOW_FUZZ_SEED")
  local inputs=("$work" "$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && inputs+=("$here/regressions/$t")
  "$exe" "${args[@]}" "${inputs[@]}" < /dev/null > "$log" 2>&1
}

declare -A pid_of
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  echo "=== fuzz_$t: ${seconds} s ($(date -u +%H:%M:%S))"
  run_one "$t" &
  pid_of[$t]=$!
done

for t in "${targets[@]}"; do wait "${pid_of[$t]}"; done
echo
summary || exit 1
echo "run.sh: ${#targets[@]} targets ran ${seconds} s each, ${jobs} at a time, without a finding"
