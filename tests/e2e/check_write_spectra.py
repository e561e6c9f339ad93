#!/usr/bin/env python3
"""Runs tests/e2e/write_spectra_udf.yaml on the real MUSE UDF sub-cube and checks both
io.write_spectra products with astropy, independently of cubeflow's code:

* observed frame: every SPECTRA row equals the sum of the cube's DATA over the spaxels that the
  product's own BINID map puts in that bin (scaled by nspax / ncontributing where some spaxels are
  NaN, as binning.voronoi documents), ERROR**2 the same sum of STAT; the spectral WCS of SPECTRA
  gives the cube's wavelengths; BUNIT is the cube's unit; RA/DEC of the centroids are the cube
  WCS at (X, Y); checksums verify.
* rest frame (spectral.restframe, ivar): normalised (BUNIT absent, FLUXUNIT = the cube unit,
  NORM column), mean 1 over good pixels of the normalisation window, SPECSYS = 'SOURCE'.
* a second run whose 3 A normalisation window makes spectral.restframe fail on some bins: the
  failures reach io.write_spectra through the runner and keep their rows (NaN, MASK NOSPEC,
  QUALITY FAILED, FAILMSG, NSPAX and RA/DEC from the binning).

usage: check_write_spectra.py CUBEFLOW SOURCE_DIR DATA_DIR WORK_DIR     (exit 77 = skipped)
"""
import os
import subprocess
import sys
import warnings

from cfskip import skip

cf, src, data, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
data = os.path.abspath(os.environ.get("CUBEFLOW_DATA_DIR", data))
cube_path = os.path.join(data, "muse", "mpdaf_subcub_mosaic_UDF.fits")
if not os.path.exists(cube_path):
    skip(f"real MUSE sub-cube not found at {cube_path} (set CUBEFLOW_TEST_DATA_DIR)")
try:
    import numpy as np
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS
except ImportError as e:
    skip(f"needs astropy/numpy ({e})")

os.makedirs(work, exist_ok=True)
obs_path = os.path.join(work, "udf_spectra_obs.fits")
rest_path = os.path.join(work, "udf_spectra_rest.fits")
for p in (obs_path, rest_path, os.path.join(work, "udf_spectra_fail.fits")):
    if os.path.exists(p):
        os.remove(p)
env = dict(os.environ, CUBEFLOW_DATA_DIR=data, CUBEFLOW_OUT=work)
r = subprocess.run([cf, "run", os.path.join(src, "tests", "e2e", "write_spectra_udf.yaml"), "--threads", "2"],
                   env=env, capture_output=True, text=True)
assert r.returncode == 0, r.stdout + r.stderr
# Nothing but the two products is left in the directory (no scratch or temporary files).
left = sorted(f for f in os.listdir(work) if f.startswith("udf_spectra") and "fail" not in f)
assert left == ["udf_spectra_obs.fits", "udf_spectra_rest.fits"], left


def open_checked(path):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = fits.open(path, checksum=True)
        for hdu in h:
            _ = hdu.data  # checksums are verified when the data are read
    bad = [str(x.message) for x in w if "checksum" in str(x.message).lower() or "datasum" in str(x.message).lower()]
    assert not bad, f"{path}: {bad}"
    return h


with fits.open(cube_path) as c:
    dh = c["DATA"].header
    data_cube = c["DATA"].data.astype(np.float64)
    stat_cube = c["STAT"].data.astype(np.float64)
    cube_wcs = WCS(dh)
    cube_unit = u.Unit(dh["BUNIT"])
nw, ny, nx = data_cube.shape
cube_wave = cube_wcs.spectral.pixel_to_world(np.arange(nw)).to_value(u.AA)

# ---- observed frame ----------------------------------------------------------------------------
h = open_checked(obs_path)
spec, err, mask = h["SPECTRA"].data, h["ERROR"].data, h["MASK"].data
binid = h["BINID"].data
bins = Table.read(h["BINS"])
nb = int(binid.max()) + 1
assert spec.dtype == np.dtype(">f4") and mask.dtype == np.dtype("uint8"), (spec.dtype, mask.dtype)
assert spec.shape == (nb, nw) and err.shape == spec.shape and mask.shape == spec.shape, spec.shape
assert len(bins) == nb and list(bins["BIN_ID"]) == list(range(nb))
assert h[0].header["NBINS"] == nb and h[0].header["NSPEC"] == nb and not h[0].header["PARTIAL"]
assert any(h[0].header.get(f"CFN{i:02d}TYP") == "io.write_spectra" for i in range(1, 10)), "provenance"
# Spectral WCS of axis 1 = the cube's wavelengths; WAVE the same; axis 2 world = bin id.
sw = WCS(h["SPECTRA"].header)
assert sw.wcs.ctype[0] == "AWAV" and sw.wcs.spec == 0, sw.wcs.ctype
world = sw.pixel_to_world(np.arange(nw), np.full(nw, 3))
assert np.allclose(world[0].to_value(u.AA), cube_wave, rtol=0, atol=1e-6), "SPECTRA WCS != cube wavelengths"
assert np.allclose(np.asarray(world[1]), 3), "axis 2 world is not the bin id"
assert np.allclose(h["WAVE"].data, cube_wave, rtol=0, atol=1e-6)
assert u.Unit(h["SPECTRA"].header["BUNIT"], format="fits") == cube_unit, h["SPECTRA"].header["BUNIT"]
assert u.Unit(h["ERROR"].header["BUNIT"], format="fits") == cube_unit
assert h["SPECTRA"].header["ERRDATA"] == "ERROR" and h["SPECTRA"].header["QUALDATA"] == "MASK"
# BINID map: the cube's celestial WCS.
bw = WCS(h["BINID"].header)
for (x, y) in [(0, 0), (29, 0), (7, 22)]:
    a, b = cube_wcs.celestial.pixel_to_world_values(x, y), bw.pixel_to_world_values(x, y)
    assert abs(a[0] - b[0]) < 1e-9 and abs(a[1] - b[1]) < 1e-9
# Every row against the cube.
worst_f = worst_e = 0.0
for b in range(nb):
    sel = binid == b
    n = int(sel.sum())
    assert bins["NSPAX"][b] == n, (b, bins["NSPAX"][b], n)
    f = data_cube[:, sel]
    v = stat_cube[:, sel]
    good = np.isfinite(f) & np.isfinite(v) & (v >= 0)
    cnt = good.sum(axis=1)
    fs = np.where(good, f, 0).sum(axis=1)
    vs = np.where(good, v, 0).sum(axis=1)
    has = cnt > 0
    scale = np.where(has, n / np.maximum(cnt, 1), 0)
    want_f, want_e = fs * scale, np.sqrt(vs) * scale
    assert np.array_equal(mask[b] != 0, ~has), f"bin {b}: MASK does not mark the pixels without data"
    assert np.all(np.isnan(err[b][~has])), f"bin {b}: ERROR of masked pixels must be NaN"
    df = np.abs(spec[b][has] - want_f[has]) / (np.abs(want_f[has]) + np.sqrt(vs[has]) * 1e-3 + 1e-30)
    de = np.abs(err[b][has] - want_e[has]) / want_e[has]
    worst_f, worst_e = max(worst_f, df.max(initial=0)), max(worst_e, de.max(initial=0))
    assert bins["NGOODPIX"][b] == int((mask[b] == 0).sum())
    ra, dec = cube_wcs.celestial.pixel_to_world_values(bins["X"][b], bins["Y"][b])
    assert abs(ra - bins["RA"][b]) < 1e-9 and abs(dec - bins["DEC"][b]) < 1e-9, b
assert worst_f < 1e-5 and worst_e < 1e-5, (worst_f, worst_e)
assert np.all(bins["SPECSTAT"] == 0) and np.all(bins["QUALITY"] == 0)
assert u.Unit(bins["SIGNAL"].unit.to_string("fits"), format="fits") == cube_unit

# ---- rest frame --------------------------------------------------------------------------------
g = open_checked(rest_path)
rs, ivar, rm = g["SPECTRA"].data, g["IVAR"].data, g["MASK"].data
rb = Table.read(g["BINS"])
hs = g["SPECTRA"].header
assert rs.shape == (nb, 480) and "BUNIT" not in hs and hs["NORMED"] and hs["SPECSYS"] == "SOURCE"
assert u.Unit(hs["FLUXUNIT"], format="fits") == cube_unit
assert g["IVAR"].header["ERRTYPE"] == "INVVAR"
rw = WCS(hs).pixel_to_world(np.arange(480), np.zeros(480))[0].to_value(u.AA)
assert np.allclose(rw, 4760 + 1.25 * np.arange(480), atol=1e-6)
ok = rb["SPECSTAT"] == 0
assert ok.any()
win = (rw >= 5000) & (rw <= 5300)
for b in np.nonzero(ok)[0]:
    good = win & (rm[b] == 0)
    assert abs(rs[b][good].mean() - 1) < 1e-5, (b, rs[b][good].mean())
    assert np.all(ivar[b][rm[b] != 0] == 0) and np.all(ivar[b][rm[b] == 0] > 0)
    # NORM is the mean observed flux of the window (broadening preserves the mean to ~1e-3)
    assert rb["NORM"][b] > 0
for b in np.nonzero(~ok)[0]:  # flagged, not dropped
    assert np.all(np.isnan(rs[b])) and np.all(rm[b] == 8) and rb["FAILMSG"][b].strip(), b
assert np.all(rb["VEL"][ok] == 0) and np.all(rb["Z_SYS"][ok] == 0)

# ---- failures in a real run are flagged, not dropped --------------------------------------------
# A 3 A normalisation window makes spectral.restframe fail (non-positive mean flux) on some of these
# faint bins; under on_error: flag the runner hands the failures to io.write_spectra.
fail_path = os.path.join(work, "udf_spectra_fail.fits")
r = subprocess.run([cf, "run", os.path.join(src, "tests", "e2e", "write_spectra_udf.yaml"), "--threads", "2",
                    "--set", "shift.norm_min=5200", "--set", "shift.norm_max=5203", "--set", f"rest.path={fail_path}"],
                   env=env, capture_output=True, text=True)
assert r.returncode == 0, r.stdout + r.stderr
nfail_run = [int(line.split()[4]) for line in r.stderr.splitlines() if line.split()[:2] == ["shift", "spectral.restframe"]]
assert len(nfail_run) == 1, r.stderr
fh = open_checked(fail_path)
fb = Table.read(fh["BINS"])
failed = np.nonzero(fb["SPECSTAT"] == 1)[0]
assert len(fb) == nb and len(failed) == nfail_run[0], (len(failed), nfail_run)
assert len(failed) >= 1, "no bin failed with the 3 A window: pick another window so that this check keeps its teeth"
assert fh[0].header["NFAILED"] == len(failed) and fh[0].header["NSPEC"] == nb - len(failed)
for b in failed:
    assert np.all(np.isnan(fh["SPECTRA"].data[b])) and np.all(fh["MASK"].data[b] == 8), b
    assert fb["QUALITY"][b] & 32 and "not positive" in fb["FAILMSG"][b], (b, fb["FAILMSG"][b])
    assert fb["NSPAX"][b] == int((binid == b).sum()) and np.isfinite(fb["RA"][b])  # still placed on the sky

print(f"OK: {nb} bins x {nw} px; observed rows vs cube sums: max rel diff flux {worst_f:.2e}, "
      f"error {worst_e:.2e}; rest frame: {int(ok.sum())} written, {int((~ok).sum())} flagged; "
      f"forced failures: {len(failed)} flagged rows")
