#!/usr/bin/env bash
# Adds to the committed corpus the inputs that a fuzzing run found and that reach code (libFuzzer
# features) the committed corpus does not (README.md here).
#
#   bash tests/fuzz/merge.sh BUILD_DIR TARGET...
#
# For each target: libFuzzer's -merge=1 of BUILD_DIR/fuzz/corpus/<target>/ (what run.sh found)
# into a copy of tests/fuzz/corpus/<target>/, so the committed seeds keep their names and only
# the new inputs that add coverage are copied (named by their SHA-1) into
# tests/fuzz/corpus/<target>/. Inputs over CUBEFLOW_FUZZ_MERGE_MAX_LEN bytes (default 4096) are
# left out, to keep the corpus small. Review and commit the result.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: merge.sh BUILD_DIR TARGET...}"
shift
max_len="${CUBEFLOW_FUZZ_MERGE_MAX_LEN:-4096}"
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
for t in "$@"; do
  exe="$build/bin/fuzz_$t"
  found="$build/fuzz/corpus/$t"
  dest="$build/fuzz/merged/$t"
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$here/corpus/$t"/* "$dest"/
  before=$(ls "$dest" | wc -l)
  small="$build/fuzz/merge-small/$t"
  rm -rf "$small"
  mkdir -p "$small"
  find "$found" -type f -size -"$((max_len + 1))"c -exec cp {} "$small"/ \;
  "$exe" -merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$dest" "$small" > "$build/fuzz/merge-$t.log" 2>&1 || {
    tail -n 20 "$build/fuzz/merge-$t.log"
    echo "merge.sh: merging $t failed (log: $build/fuzz/merge-$t.log)" >&2
    exit 1
  }
  added=0
  for f in "$dest"/*; do
    b="$(basename "$f")"
    if [ ! -e "$here/corpus/$t/$b" ]; then
      cp "$f" "$here/corpus/$t/$b"
      added=$((added + 1))
    fi
  done
  echo "$t: $before committed inputs, $(ls "$small" | wc -l) found (<= $max_len bytes), $added added" \
    "($(grep -oE 'MERGE-OUTER: [0-9]+ new files with [0-9]+ new features' "$build/fuzz/merge-$t.log" || true))"
done
