#!/usr/bin/env python3
"""cubeflow's spectrum-only MILES CNN against pPXF on the nGIST tutorial run (issue #7: a report,
not a target; the numbers are in docs/cnn.md).

The 28 bin spectra of shared/data/reference/ngist_tutorial_NGC0000 (rest frame, 4800-5500 A,
nGIST's REDSHIFT 0.008764) are put back in the observed frame as a 28 x 1 cube (one spaxel per
nGIST bin, STAT = ESPEC^2) with V_STARS / SIGMA_STARS maps from nGIST's own pPXF kinematics, run
through tests/e2e/ngist_cnn.yaml (binning.voronoi keeps each spaxel as its own bin,
spectral.restframe, inference.cnn with models/cnn_ngist_miles.pt, io.write_maps), and the
light-weighted mean log age and [M/H] of every bin are compared with those of nGIST's pPXF
weights (sum w log10(age) / sum w over the 636 MILES templates; the weights are light
fractions, NORM_TEMP: LIGHT).

Asserted: every bin gets finite, unflagged estimates at the right place; the kinematics used are
nGIST's; the light-weighted ages and [M/H] agree with pPXF within 0.35 dex (median offset) and
0.3 dex (scatter) - loose bounds, wide enough for the two methods' different light weighting,
priors and regularisation, tight enough to catch a wrong frame, normalisation or unit.

Skill (issue #15): the offset and scatter bounds alone pass a constant output (pPXF's ages span
only 0.33 dex here). Bin by bin the data cannot show skill: the CNN-pPXF rank correlation is 0.36
for the age and -0.20 for [M/H], and with 28 bins |rho| < 0.37 is what unrelated values give 95 %
of the time, so pPXF's own bin-to-bin errors hide any agreement (printed, not asserted). What both
methods see clearly is the galaxy's radial age gradient: rank correlation of the LW age with the
bin's distance from the flux-weighted centre (nGIST's XBIN, YBIN) -0.82 for pPXF. Asserted: the
CNN's is <= -0.5 (-0.62 measured), which a constant output (no ranking) fails and an output
unrelated to the spectra (rho ~ N(0, 0.19) for 28 bins) fails about 99.5 % of the time; the test checks that a
constant indeed fails it. pPXF's [M/H] falls with radius too (rho -0.92), the CNN's does not
(+0.18): the same bound is missed there, a known failure of this model (docs/cnn.md) kept visible
below; the test fails if it starts to pass, so that the docs are updated with it.

usage: check_ngist_cnn.py CUBEFLOW SOURCE_DIR DATA_DIR WORK_DIR [MODEL]
"""
import os
import subprocess
import sys

from cfskip import skip

cf, src, data, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
ref = os.path.join(data, "reference", "ngist_tutorial_NGC0000")
# An optional 5th argument measures another model (bench use): the figures are printed, the
# shipped model's known miss below is then reported, not asserted.
default_model = os.path.join(src, "models", "cnn_ngist_miles.pt")
model = os.path.abspath(sys.argv[5]) if len(sys.argv) > 5 else default_model
if not os.path.isdir(ref):
    skip(f"nGIST reference run not found at {ref} (set CUBEFLOW_TEST_DATA_DIR)")
try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:
    skip(f"needs astropy/numpy ({e})")
assert os.path.exists(model), f"{model} is missing (see models/cnn_ngist_miles.train.yaml)"
os.makedirs(work, exist_ok=True)
Z = 0.008764          # nGIST CONFIG REDSHIFT
C_KMS = 299792.458

# ---- nGIST products ----------------------------------------------------------------------------
with fits.open(os.path.join(ref, "NGC0000Example_BinSpectra_linear.fits")) as h:
    spec = np.asarray(h["BIN_SPECTRA"].data["SPEC"], dtype=np.float64)
    espec = np.asarray(h["BIN_SPECTRA"].data["ESPEC"], dtype=np.float64)
    lam_rest = np.asarray(h["LOGLAM"].data["LOGLAM"], dtype=np.float64)  # linear Angstrom despite the name
with fits.open(os.path.join(ref, "NGC0000Example_kin.fits")) as h:
    kin = h["KIN_DATA"].data
    v_ngist, sig_ngist = np.asarray(kin["V"], float), np.asarray(kin["SIGMA"], float)
with fits.open(os.path.join(ref, "NGC0000Example_sfh-weights.fits")) as h:
    w = np.asarray(h["WEIGHTS"].data["WEIGHTS"], dtype=np.float64)
    grid_logage = np.asarray(h["GRID"].data["LOGAGE"], float) + 9.0   # log10(age / yr)
    grid_metal = np.asarray(h["GRID"].data["METAL"], float)
with fits.open(os.path.join(ref, "NGC0000Example_sfh.fits")) as h:
    metal_table = np.asarray(h["SFH"].data["METAL"], float)
nbin, nw = spec.shape
step = np.diff(lam_rest)
assert np.allclose(step, step.mean(), rtol=1e-6), "nGIST linear grid is not uniform"
ppxf_lw_age = (w * grid_logage).sum(1) / w.sum(1)
ppxf_lw_mh = (w * grid_metal).sum(1) / w.sum(1)
assert np.allclose(ppxf_lw_mh, metal_table, atol=1e-6), "weights do not reproduce nGIST's METAL column"

# ---- a 28 x 1 observed-frame cube and kinematics maps ------------------------------------------
def celestial(hdr):
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = 150.0, 2.0
    hdr["CRPIX1"], hdr["CRPIX2"] = 1.0, 1.0
    hdr["CDELT1"], hdr["CDELT2"] = -0.2 / 3600, 0.2 / 3600
    hdr["CUNIT1"], hdr["CUNIT2"] = "deg", "deg"

cube_path, kin_path, maps_path = (os.path.join(work, f) for f in ("ngist_cube.fits", "ngist_kin.fits", "ngist_maps.fits"))
dh = fits.ImageHDU(spec.T.reshape(nw, 1, nbin).astype(np.float32), name="DATA")
sh = fits.ImageHDU((espec.T ** 2).reshape(nw, 1, nbin).astype(np.float32), name="STAT")
for hdu in (dh, sh):
    celestial(hdu.header)
    hdu.header["CTYPE3"], hdu.header["CUNIT3"] = "AWAV", "Angstrom"
    hdu.header["CRPIX3"] = 1.0
    hdu.header["CRVAL3"] = lam_rest[0] * (1 + Z)     # f_lambda unchanged (nGIST's convention)
    hdu.header["CDELT3"] = step.mean() * (1 + Z)
    hdu.header["BUNIT"] = "10**(-20)*erg/s/cm**2/Angstrom"
fits.HDUList([fits.PrimaryHDU(), dh, sh]).writeto(cube_path, overwrite=True)
kh = []
for name, val in (("V_STARS", v_ngist), ("SIGMA_STARS", sig_ngist)):
    hdu = fits.ImageHDU(val.reshape(1, nbin).astype(np.float32), name=name)
    celestial(hdu.header)
    hdu.header["BUNIT"] = "km/s"
    kh.append(hdu)
fits.HDUList([fits.PrimaryHDU()] + kh).writeto(kin_path, overwrite=True)

r = subprocess.run([cf, "run", os.path.join(src, "tests", "e2e", "ngist_cnn.yaml"), "--set", f"cnn.model={model}",
                    "--set", f"read.path={cube_path}", "--set", f"velocity.path={kin_path}",
                    "--set", f"dispersion.path={kin_path}", "--set", f"out.path={maps_path}"],
                   capture_output=True, text=True)
assert r.returncode == 0, r.stdout + r.stderr

# ---- compare -----------------------------------------------------------------------------------
with fits.open(maps_path) as h:
    binid = h["BINID"].data
    bins = h["BINS"].data
    assert binid.shape == (1, nbin) and len(set(binid.ravel())) == nbin, "each spaxel must be its own bin"
    cnn_age = np.full(nbin, np.nan)
    cnn_mh = np.full(nbin, np.nan)
    cnn_mw = np.full(nbin, np.nan)
    for row in bins:
        i = int(round(row["X"]))
        assert int(row["QUALITY"]) == 0, f"nGIST bin {i}: quality {row['QUALITY']}"
        assert abs(row["V_USED"] - v_ngist[i]) < 0.01 and abs(row["SIGMA_USED"] - sig_ngist[i]) < 0.01, \
            f"bin {i}: kinematics used {row['V_USED']}, {row['SIGMA_USED']} != nGIST {v_ngist[i]}, {sig_ngist[i]}"
        cnn_age[i], cnn_mh[i], cnn_mw[i] = row["LW_LOGAGE"], row["LW_ZH"], row["MW_LOGAGE"]
assert np.all(np.isfinite(cnn_age)) and np.all(np.isfinite(cnn_mh)), "missing estimates"

with fits.open(os.path.join(ref, "NGC0000Example_table.fits")) as h:
    tab = h["TABLE"].data
    sel = tab["BIN_ID"] >= 0
    cx = (tab["X"][sel] * tab["FLUX"][sel]).sum() / tab["FLUX"][sel].sum()
    cy = (tab["Y"][sel] * tab["FLUX"][sel]).sum() / tab["FLUX"][sel].sum()
    radius = np.full(nbin, np.nan)
    for i in range(nbin):
        row = np.flatnonzero(tab["BIN_ID"] == i)[0]
        radius[i] = np.hypot(tab["XBIN"][row] - cx, tab["YBIN"][row] - cy)
assert np.all(np.isfinite(radius)), "nGIST's table lacks a bin"
d_age, d_mh = ppxf_lw_age - cnn_age, ppxf_lw_mh - cnn_mh
print("bin  pPXF LW log age  CNN LW log age  CNN MW log age   pPXF LW [M/H]  CNN LW [Z/H]")
for i in range(nbin):
    print(f"{i:3d}  {ppxf_lw_age[i]:15.3f} {cnn_age[i]:15.3f} {cnn_mw[i]:15.3f} {ppxf_lw_mh[i]:15.3f} {cnn_mh[i]:13.3f}")
def spearman(a, b):
    """Rank correlation; NaN when either side does not vary (a constant has no ranking)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def follows_the_gradient(age):
    """The radial age gradient both methods see: LW age falls with radius (rank correlation)."""
    rho = spearman(age, radius)
    return rho <= -0.5, rho
summary = {
    "lw_logage_offset": float(np.median(d_age)), "lw_logage_scatter": float(np.std(d_age)),
    "lw_mh_offset": float(np.median(d_mh)), "lw_mh_scatter": float(np.std(d_mh)),
    "spearman_age": spearman(ppxf_lw_age, cnn_age), "spearman_mh": spearman(ppxf_lw_mh, cnn_mh),
}
print("pPXF - CNN: LW log age median offset %+.3f dex, scatter %.3f dex; LW [M/H] %+.3f / %.3f dex; "
      "Spearman rank correlation age %.2f, [M/H] %.2f" % tuple(summary.values()))
ok_ppxf, rho_ppxf = follows_the_gradient(ppxf_lw_age)
ok_cnn, rho_cnn = follows_the_gradient(cnn_age)
print(f"LW age versus radius, Spearman: pPXF {rho_ppxf:+.2f}, CNN {rho_cnn:+.2f}; [M/H] versus radius: pPXF "
      f"{spearman(ppxf_lw_mh, radius):+.2f}, CNN {spearman(cnn_mh, radius):+.2f}")
assert ok_ppxf, f"pPXF's ages no longer fall with radius (rho {rho_ppxf:+.2f}): the reference changed"
assert not follows_the_gradient(np.full(nbin, np.median(cnn_age)))[0], "the gradient check passes a constant"
assert ok_cnn, f"the CNN's LW ages do not fall with radius as pPXF's do (rank correlation {rho_cnn:+.2f} > -0.5)"
# Known miss (docs/cnn.md, "Against nGIST / pPXF"): the CNN's [M/H] does not follow pPXF's gradient.
MH_GRADIENT_KNOWN_MISS = True
ok_mh, rho_mh = follows_the_gradient(cnn_mh)
if model != default_model:
    print(f"[M/H] versus radius: rank correlation {rho_mh:+.2f} (bound <= -0.5: {'met' if ok_mh else 'missed'})")
elif MH_GRADIENT_KNOWN_MISS:
    print(f"KNOWN MISS: the CNN's [M/H] versus radius has rank correlation {rho_mh:+.2f}, bound <= -0.5 "
          f"(pPXF {spearman(ppxf_lw_mh, radius):+.2f})")
    assert not ok_mh, "the CNN's [M/H] now follows pPXF's radial gradient: set MH_GRADIENT_KNOWN_MISS = False " \
                      "and update docs/cnn.md"
else:
    assert ok_mh, f"the CNN's [M/H] does not fall with radius as pPXF's does (rank correlation {rho_mh:+.2f} > -0.5)"
assert abs(summary["lw_logage_offset"]) < 0.35 and summary["lw_logage_scatter"] < 0.3, summary
assert abs(summary["lw_mh_offset"]) < 0.35 and summary["lw_mh_scatter"] < 0.3, summary
print("OK")
