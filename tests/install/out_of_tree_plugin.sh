#!/usr/bin/env bash
# usage: out_of_tree_plugin.sh BUILD_DIR SOURCE_DIR WORK_DIR
#
# Installs cubeflow into a scratch prefix and checks what a plugin author gets from it:
# 1. the headers (testing/fake_context.hpp and strings.hpp included);
# 2. the CMake package: every exported library links, every installed header compiles
#    (tests/install/package_check);
# 3. examples/custom_plugin, copied out of the source tree, builds against the package and its
#    node tests pass (ctest in the example's build);
# 4. its pipelines (pipeline.yaml and every YAML snippet of its README) run from the copy with
#    the installed binary, without CUBEFLOW_PLUGIN_PATH and from another working directory,
#    and give the right numbers.
set -euo pipefail
BUILD=$1 SRC=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
PREFIX="$WORK/prefix"
CF="$PREFIX/bin/cubeflow"
fail() { echo "out_of_tree_plugin: $*" >&2; exit 1; }
show() { cat "$1" >&2; fail "${*:2}"; }

cmake --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log"

# 1. Headers a plugin and its tests include.
for h in plugin.hpp registry.hpp node.hpp spec.hpp data.hpp status.hpp value.hpp strings.hpp version.hpp \
         testing/fake_context.hpp spectral/spectral_ops.hpp fits/cube_io.hpp binning/voronoi.hpp; do
  test -f "$PREFIX/include/cubeflow/$h" || fail "include/cubeflow/$h is not installed"
done
test -f "$PREFIX/lib/cmake/cubeflow/cubeflowConfig.cmake" || fail "no CMake package config installed"

# 2. The CMake package.
cmake -S "$SRC/tests/install/package_check" -B "$WORK/package_check" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_TYPE=Release > "$WORK/package_check.log" 2>&1 || show "$WORK/package_check.log" "package_check: configure failed"
cmake --build "$WORK/package_check" >> "$WORK/package_check.log" 2>&1 || show "$WORK/package_check.log" "package_check: build failed"
"$WORK/package_check/package_check" | grep -q "package ok" || fail "package_check did not run"

# 3. The example, built in a copy (nothing may lean on the source tree), with its tests. Its
# cube is a copy of cubes/tiny_cube.fits, and the expected numbers below come from that cube.
cmp -s "$SRC/cubes/tiny_cube.fits" "$SRC/examples/custom_plugin/data/tiny_cube.fits" ||
  fail "examples/custom_plugin/data/tiny_cube.fits differs from cubes/tiny_cube.fits: copy it again (and check the expected Mgb below)"
EX="$WORK/copied/custom_plugin"
mkdir -p "$WORK/copied"
cp -r "$SRC/examples/custom_plugin" "$EX"
rm -rf "$EX/build" "$EX/out"  # in case the source folder was built in place
cmake -S "$EX" -B "$EX/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release > "$WORK/configure.log" 2>&1 ||
  show "$WORK/configure.log" "example: configure failed"
grep -q "^CUSTOM_BUILD_TESTS:BOOL=ON" "$EX/build/CMakeCache.txt" || fail "example: tests are off although GoogleTest is installed"
cmake --build "$EX/build" --parallel 2 > "$WORK/build.log" 2>&1 || show "$WORK/build.log" "example: build failed"
test -f "$EX/build/custom.so" || fail "example: build/custom.so not built"
ctest --test-dir "$EX/build" --output-on-failure > "$WORK/ctest.log" 2>&1 || show "$WORK/ctest.log" "example: tests failed"
for suite in SnrMask LineIndex ContinuumNorm; do
  grep -q " $suite\.[A-Za-z]* .*Passed" "$WORK/ctest.log" || show "$WORK/ctest.log" "example: no $suite test ran"
done

# The installed binary finds its installed plugins and, through CUBEFLOW_PLUGIN_PATH, this one.
CUBEFLOW_PLUGIN_PATH="$EX/build" "$CF" plugins > "$WORK/plugins.txt"
for t in custom.snr_mask custom.line_index custom.continuum_norm io.read_cube binning.voronoi; do
  grep -q "$t" "$WORK/plugins.txt" || show "$WORK/plugins.txt" "$t not listed by 'cubeflow plugins'"
done
CUBEFLOW_PLUGIN_PATH="$EX/build" "$CF" inspect custom.snr_mask > "$WORK/inspect.txt"
grep -q "threshold : double, default 3" "$WORK/inspect.txt" || show "$WORK/inspect.txt" "inspect custom.snr_mask"

# 4. The pipelines, from the copy, without CUBEFLOW_PLUGIN_PATH, from another directory.
unset CUBEFLOW_PLUGIN_PATH
mkdir -p "$WORK/elsewhere" && cd "$WORK/elsewhere"
"$CF" run "$EX/pipeline.yaml" > "$WORK/run.log" 2>&1 || show "$WORK/run.log" "example: pipeline.yaml failed"
test -f "$EX/out/custom_maps.fits" && test -f "$EX/out/flat_spectra.fits" || fail "example: pipeline.yaml wrote no products in $EX/out"

# The README's YAML snippets are pipelines too: the first is pipeline.yaml; each one runs.
/usr/bin/python3 - "$EX" <<'PY'
import pathlib, re, sys
ex = pathlib.Path(sys.argv[1])
blocks = re.findall(r"```yaml\n(.*?)```", (ex / "README.md").read_text(), re.S)
assert len(blocks) >= 4, f"README.md has {len(blocks)} YAML snippets, expected the pipeline and one per node"
pipeline = "".join(l for l in (ex / "pipeline.yaml").read_text().splitlines(True) if not l.startswith("#"))
assert blocks[0] == pipeline, "README.md's first snippet differs from pipeline.yaml"
for i, b in enumerate(blocks[1:], 1):
    (ex / f"readme_{i}.yaml").write_text(b)
PY
for y in "$EX"/readme_*.yaml; do
  "$CF" run "$y" > "$WORK/$(basename "$y" .yaml).log" 2>&1 || show "$WORK/$(basename "$y" .yaml).log" "README snippet $(basename "$y") failed"
done

# A Check hook of the plugin, reported by the installed validator.
if "$CF" validate "$EX/pipeline.yaml" --set flat.exclude=[5150,5200,5300] > "$WORK/validate.log" 2>&1; then
  show "$WORK/validate.log" "validate accepted an odd number of exclude values"
fi
grep -q "exclude: needs pairs \[lo, hi, ...\]; got 3 values" "$WORK/validate.log" || show "$WORK/validate.log" "validate message"

# The numbers.
/usr/bin/python3 - "$EX" <<'PY'
import sys
import numpy as np
from astropy.io import fits
ex = sys.argv[1]

with fits.open(f"{ex}/out/custom_maps.fits") as h:
    snr, mask = h["SNR"].data, h["SNR_MASK"].data
    assert snr.shape == mask.shape == (8, 9), (snr.shape, mask.shape)
    want = np.where(~np.isfinite(snr), 1, np.where(snr < 60, 2, 0))  # NOCOV, LOWSNR
    assert np.array_equal(mask.astype(int), want), (mask, snr)
    assert 0 < (want == 2).sum() < np.isfinite(snr).sum(), "threshold 60 should split the field"
    assert "CTYPE1" in h["SNR_MASK"].header, "mask lost its WCS"
    bins = h["BINS"].data
    mgb, err = bins["MGB"], bins["MGB_ERR"]

# Mgb of the noiseless spectrum of cubes/tiny_cube.fits (scripts/make_tiny_cube.py:
# 1 - 0.3 exp(-(l - 5175)^2 / 18) + 2e-4 (l - 5000), times the spaxel's amplitude), measured
# with the Lick definition on a fine grid.
def model(l):
    return 1 - 0.3 * np.exp(-0.5 * ((l - 5175.0) / 3.0) ** 2) + 2e-4 * (l - 5000.0)
def mean(lo, hi):
    l = np.linspace(lo, hi, 20001)
    return model(l).mean()
blue, red, band = (5142.625, 5161.375), (5191.375, 5206.375), (5160.125, 5192.625)
fb, fr = mean(*blue), mean(*red)
lb, lr = np.mean(blue), np.mean(red)
l = np.linspace(*band, 20001)
cont = fb + (fr - fb) * (l - lb) / (lr - lb)
ew_true = (band[1] - band[0]) * (1 - np.mean(model(l) / cont))
assert len(mgb) >= 5 and np.all(np.isfinite(mgb)) and np.all(err > 0), (mgb, err)
pull = (mgb - ew_true) / err
assert np.all(np.abs(pull) < 4) and np.mean(pull ** 2) < 3, f"Mgb {mgb} +- {err}, expected {ew_true:.3f}"

with fits.open(f"{ex}/out/flat_spectra.fits") as h:
    flux, wave = h["SPECTRA"].data, h["WAVE"].data
    assert flux.shape[0] == len(mgb), (flux.shape, len(mgb))
    continuum = (wave < 5150) | (wave > 5200)
    core = np.abs(wave - 5175) < 1.5
    assert np.all(np.abs(np.median(flux[:, continuum], axis=1) - 1) < 0.02), np.median(flux[:, continuum], axis=1)
    assert np.all(np.mean(flux[:, core], axis=1) < 0.8), np.mean(flux[:, core], axis=1)

with fits.open(f"{ex}/out/snr_mask.fits") as h:
    assert "LOWSNR_MASK" in h, [x.name for x in h]
with fits.open(f"{ex}/out/indices.fits") as h:
    for name in ("MGB", "MGB_ERR", "HBETA", "MG_NARROW"):
        assert name in h, (name, [x.name for x in h])
    assert np.nanmean(h["BINS"].data["MGB"]) > 1.5, h["BINS"].data["MGB"]
with fits.open(f"{ex}/out/normalised.fits") as h:
    assert h["SPECTRA"].data.shape[0] == len(mgb)
print(f"out-of-tree plugin ok: Mgb {np.mean(mgb):.2f} (expected {ew_true:.2f}), mean pull^2 {np.mean(pull ** 2):.2f}")
PY
