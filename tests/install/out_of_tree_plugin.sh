#!/usr/bin/env bash
# usage: out_of_tree_plugin.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
BUILD=$1 SRC=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
cmake --install "$BUILD" --prefix "$WORK/prefix" > "$WORK/install.log"
test -f "$WORK/prefix/include/cubeflow/plugin.hpp"
test -f "$WORK/prefix/lib/cmake/cubeflow/cubeflowConfig.cmake"
cmake -S "$SRC/examples/custom_plugin" -B "$WORK/plugin" -DCMAKE_PREFIX_PATH="$WORK/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$WORK/configure.log"
cmake --build "$WORK/plugin" > "$WORK/build.log"
export CUBEFLOW_PLUGIN_PATH="$WORK/plugin"
CF="$WORK/prefix/bin/cubeflow"
# The installed binary finds its installed plugins and the out-of-tree one.
"$CF" plugins > "$WORK/plugins.txt"
grep -q "custom.snr_mask" "$WORK/plugins.txt" || { cat "$WORK/plugins.txt"; echo "custom plugin not listed"; exit 1; }
grep -q "io.read_cube" "$WORK/plugins.txt" || { cat "$WORK/plugins.txt"; echo "installed plugins not found"; exit 1; }
"$CF" inspect custom.snr_mask | grep -q "threshold : double, default 3" || { "$CF" inspect custom.snr_mask; exit 1; }
"$CF" run "$SRC/examples/custom_plugin/pipeline.yaml" --set read.path="$SRC/cubes/tiny_cube.fits" \
  --set out.path="$WORK/maps.fits" --set mask.threshold=200
/usr/bin/python3 - "$WORK/maps.fits" <<'PY'
import sys
import numpy as np
from astropy.io import fits
with fits.open(sys.argv[1]) as h:
    snr = h["SNR"].data
    mask = h["SNR_MASK"].data
    assert snr.shape == mask.shape == (8, 9), (snr.shape, mask.shape)
    want = np.where(~np.isfinite(snr), 2, np.where(snr < 200, 1, 0))
    assert np.array_equal(mask.astype(int), want), (mask, snr)
    assert 0 < (want == 1).sum() < want.size, "threshold should split the field"
    assert "CTYPE1" in h["SNR_MASK"].header, "mask lost its WCS"
print("out-of-tree plugin ok")
PY
