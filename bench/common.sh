# Shared start of the bench/*.sh scripts, sourced as the first thing after `set -euo pipefail`:
#   source "$(dirname "$0")/common.sh"        (bench/paper000: "$(dirname "$0")/../common.sh")
# It leaves the script in the repository root and defines
#   CALLER   the directory the script was started from
#   ROOT     the repository root (the current directory from here on)
#   resolve  PATH -> absolute path: as given if absolute, else against CALLER if it exists there,
#            else against ROOT
#   BUILD    the build directory: the script's first argument, $CUBEFLOW_BUILD or build
#   CF       the cubeflow executable in BUILD (the script stops with exit 2 if it is missing)
CALLER=$(pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
resolve() { if [[ "$1" = /* ]]; then echo "$1"; elif [[ -e "$CALLER/$1" ]]; then echo "$CALLER/$1"; else echo "$ROOT/$1"; fi; }
BUILD=$(resolve "${1:-${CUBEFLOW_BUILD:-build}}")
CF="$BUILD/bin/cubeflow"
if [[ ! -x "$CF" ]]; then
  echo "$(basename "$0"): no cubeflow executable at $CF; build first (cmake --build $BUILD) or pass the build directory" >&2
  exit 2
fi
