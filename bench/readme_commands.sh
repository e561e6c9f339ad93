#!/usr/bin/env bash
# Times the README's set-up commands on a fresh clone with an empty compiler cache (issue #13):
# clones this repository into a temporary directory beside it (so ../shared is found as from a
# real clone), then runs, with CCACHE_DISABLE=1,
#   1: bash scripts/install_deps.sh && bash scripts/demo.sh
#   2: bash scripts/test.sh                     (with WHICH="1 2")
# and prints the wall time of each. Logs go to the clone's directory, which is kept.
#
# usage: bench/readme_commands.sh            environment: WHICH (default "1"), JOBS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHICH="${WHICH:-1}"
CLONE="$(dirname "$ROOT")/cubeflow-readme-$$"
git clone -q "$ROOT" "$CLONE"
echo "fresh clone: $CLONE (HEAD $(git -C "$CLONE" rev-parse --short HEAD)); compiler cache disabled; $(nproc) cores"
cd "$CLONE"
export CCACHE_DISABLE=1
for c in $WHICH; do
  start=$(date +%s)
  case "$c" in
    1) (bash scripts/install_deps.sh && bash scripts/demo.sh) > "$CLONE/command1.log" 2>&1 ;;
    2) bash scripts/test.sh > "$CLONE/command2.log" 2>&1 ;;
    *) echo "readme_commands.sh: unknown command $c" >&2; exit 2 ;;
  esac
  s=$(( $(date +%s) - start ))
  printf 'README command %s: %d min %02d s (log: %s/command%s.log)\n' "$c" $((s / 60)) $((s % 60)) "$CLONE" "$c"
done
