#!/usr/bin/env python3
"""Issue #16 through the pipeline: the nGIST tutorial's 28 real MUSE bin spectra, as cubes,
through binning.voronoi -> kinematics.fit (tests/e2e/ngist_kinematics.yaml, nGIST's settings) ->
io.write_maps, against nGIST's pPXF kinematics (NGC0000Example_kin.fits). nGIST's V is corrected
for its known zero-point offset of +velscale / 4 = 17.5 km/s (see
tests/libs/kinematics/ngist_comparison_test.cpp).

1. The spectra nGIST fitted: _BinSpectra (log-rebinned at 70 km/s), written as a 28 x 1 cube with
   a logarithmic wavelength axis (CTYPE3 AWAV-LOG) in the observed frame, STAT = ESPEC^2.
   Asserted (issue #16 bounds): V and sigma within nGIST's 1-sigma formal errors for >= 90 % of
   the bins; median |dV| <= 5 km/s; median |dsigma / sigma| <= 5 %; every bin fitted and
   unflagged in QUALITY; the product has V_STARS, SIGMA_STARS, H3_STARS, H4_STARS with _ERR
   companions, CHI2_STARS and KIN_FLAGS.
2. The same bins before nGIST's log-rebinning (_BinSpectra_linear: MUSE's own 1.25 A pixels,
   relabelled to the rest frame), as a linear cube: different pixels (with their own noise
   sampling), so the comparison is not like for like. Asserted: median |dV| <= 5 km/s (V differs
   by up to ~2 of nGIST's errors in a few bins: printed). sigma comes out lower than nGIST's,
   and the test shows why instead of asserting the 5 % bound there: the
   log-rebinning smoothed nGIST's data by about (1.24^2 + 1.19^2) / 12 A^2 (the linear pixels
   taken as piecewise constant, then averaged over each log pixel), ~29 km/s in quadrature at
   5150 A, which pPXF's model only partly reproduces. The quadrature difference
   q = sqrt(sigma_nGIST^2 - sigma_linear^2) is printed and asserted to lie in 15-45 km/s, and
   sqrt(sigma_linear^2 + q^2) with the median q is then within nGIST's errors for >= 90 % of bins.

usage: check_ngist_kinematics.py CUBEFLOW SOURCE_DIR DATA_DIR WORK_DIR
"""
import os
import subprocess
import sys

cf, src, data, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
ref = os.path.join(data, "reference", "ngist_tutorial_NGC0000")
ssp = os.path.join(data, "ssp", "miles_basti_kb_ngist")
if not os.path.isdir(ref) or not os.path.isdir(ssp):
    print(f"SKIP: nGIST reference run or its templates not found under {data} (set CUBEFLOW_TEST_DATA_DIR)")
    sys.exit(77)
try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:
    print(f"SKIP: needs astropy/numpy ({e})")
    sys.exit(77)
os.makedirs(work, exist_ok=True)
Z = 0.008764          # nGIST CONFIG REDSHIFT
VELSCALE, VELSCALE_RATIO = 70.0, 2
V_ZERO_POINT = 0.5 * VELSCALE / VELSCALE_RATIO

with fits.open(os.path.join(ref, "NGC0000Example_BinSpectra.fits")) as h:
    spec_log = np.asarray(h["BIN_SPECTRA"].data["SPEC"], dtype=np.float64)
    espec_log = np.asarray(h["BIN_SPECTRA"].data["ESPEC"], dtype=np.float64)
    loglam = np.asarray(h["LOGLAM"].data["LOGLAM"], dtype=np.float64)  # ln(rest lambda)
with fits.open(os.path.join(ref, "NGC0000Example_BinSpectra_linear.fits")) as h:
    spec_lin = np.asarray(h["BIN_SPECTRA"].data["SPEC"], dtype=np.float64)
    espec_lin = np.asarray(h["BIN_SPECTRA"].data["ESPEC"], dtype=np.float64)
    lam_rest = np.asarray(h["LOGLAM"].data["LOGLAM"], dtype=np.float64)  # linear Angstrom despite the name
with fits.open(os.path.join(ref, "NGC0000Example_kin.fits")) as h:
    kin = h["KIN_DATA"].data
    v_ng = np.asarray(kin["V"], float) - V_ZERO_POINT
    s_ng = np.asarray(kin["SIGMA"], float)
    ev_ng, es_ng = np.asarray(kin["FORM_ERR_V"], float), np.asarray(kin["FORM_ERR_SIGMA"], float)
nbin = spec_log.shape[0]
cfg = os.path.join(ref, "configFiles")
failures = []


def write_cube(path, spec, espec, log_axis):
    nw = spec.shape[1]
    dh = fits.ImageHDU(spec.T.reshape(nw, 1, nbin).astype(np.float32), name="DATA")
    sh = fits.ImageHDU((espec.T ** 2).reshape(nw, 1, nbin).astype(np.float32), name="STAT")
    for hdu in (dh, sh):
        hdr = hdu.header
        hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
        hdr["CRVAL1"], hdr["CRVAL2"] = 150.0, 2.0
        hdr["CRPIX1"], hdr["CRPIX2"] = 1.0, 1.0
        hdr["CDELT1"], hdr["CDELT2"] = -0.2 / 3600, 0.2 / 3600
        hdr["CUNIT1"], hdr["CUNIT2"] = "deg", "deg"
        hdr["CUNIT3"], hdr["CRPIX3"] = "Angstrom", 1.0
        if log_axis:  # FITS -LOG: lambda = CRVAL exp(CDELT (p - CRPIX) / CRVAL)
            dln = np.diff(loglam).mean()
            hdr["CTYPE3"] = "AWAV-LOG"
            hdr["CRVAL3"] = np.exp(loglam[0]) * (1 + Z)
            hdr["CDELT3"] = hdr["CRVAL3"] * dln
        else:
            hdr["CTYPE3"] = "AWAV"
            hdr["CRVAL3"] = lam_rest[0] * (1 + Z)
            hdr["CDELT3"] = np.diff(lam_rest).mean() * (1 + Z)
        hdr["BUNIT"] = "10**(-20)*erg/s/cm**2/Angstrom"
    fits.HDUList([fits.PrimaryHDU(), dh, sh]).writeto(path, overwrite=True)


def run_kinematics(tag, spec, espec, log_axis):
    cube_path, maps_path = os.path.join(work, f"ngist_cube_{tag}.fits"), os.path.join(work, f"ngist_kin_{tag}.fits")
    write_cube(cube_path, spec, espec, log_axis)
    r = subprocess.run([cf, "run", os.path.join(src, "tests", "e2e", "ngist_kinematics.yaml"),
                        "--set", f"read.path={cube_path}", "--set", f"out.path={maps_path}",
                        "--set", f"kin.ssp={ssp}", "--set", f"kin.lsf_file={os.path.join(cfg, 'lsf_MUSE-WFM')}",
                        "--set", f"kin.mask_file={os.path.join(cfg, 'specMask_KIN')}", "-v"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    print("\n".join(l for l in r.stderr.splitlines() if "[kin]" in l))
    with fits.open(maps_path) as h:
        names = [x.name for x in h]
        for ext in ["V_STARS", "V_STARS_ERR", "SIGMA_STARS", "SIGMA_STARS_ERR", "H3_STARS", "H3_STARS_ERR", "H4_STARS",
                    "H4_STARS_ERR", "CHI2_STARS", "KIN_FLAGS"]:
            if ext not in names:
                failures.append(f"{tag}: missing extension {ext}")
        if h["V_STARS"].header.get("BUNIT") != "km/s":
            failures.append(f"{tag}: V_STARS BUNIT {h['V_STARS'].header.get('BUNIT')!r}")
        bins = h["BINS"].data
    v = np.full(nbin, np.nan)
    s = np.full(nbin, np.nan)
    for row in bins:
        i = int(round(row["X"]))
        if int(row["QUALITY"]) != 0:
            failures.append(f"{tag}: bin at x={i}: QUALITY {row['QUALITY']}")
        v[i], s[i] = row["V_STARS"], row["SIGMA_STARS"]
    if not np.all(np.isfinite(v) & np.isfinite(s)):
        failures.append(f"{tag}: missing or non-finite kinematics")
    return v, s


def compare(tag, v, s, assert_sigma):
    dv, ds = v - v_ng, s - s_ng
    okv, oks = np.abs(dv) <= ev_ng, np.abs(ds) <= es_ng
    print(f"{tag}: bin  V_nGIST  V_cubeflow  dV/err | SIG_nGIST SIG_cubeflow dS/err")
    for i in range(nbin):
        print(f"{tag}: {i:3d} {v_ng[i]:8.2f} {v[i]:10.2f} {dv[i] / ev_ng[i]:7.2f} | {s_ng[i]:9.2f} {s[i]:11.2f} "
              f"{ds[i] / es_ng[i]:6.2f}")
    med_dv, med_ds = float(np.median(np.abs(dv))), float(np.median(np.abs(ds) / s_ng))
    print(f"{tag}: within nGIST's 1-sigma errors: V {okv.sum()}/{nbin}, sigma {oks.sum()}/{nbin}, both "
          f"{(okv & oks).sum()}/{nbin}; median |dV| {med_dv:.2f} km/s (<= 5); median |dsigma/sigma| "
          f"{100 * med_ds:.2f} % (<= 5 %)")
    if med_dv > 5.0:
        failures.append(f"{tag}: median |dV| {med_dv:.2f} km/s > 5")
    if assert_sigma:
        if (okv & oks).sum() < 0.9 * nbin:
            failures.append(f"{tag}: only {(okv & oks).sum()} of {nbin} bins within nGIST's errors in V and sigma")
        if med_ds > 0.05:
            failures.append(f"{tag}: median |dsigma/sigma| {med_ds:.3f} > 5 %")


v, s = run_kinematics("log", spec_log, espec_log, True)
compare("log", v, s, True)
v, s = run_kinematics("linear", spec_lin, espec_lin, False)
compare("linear", v, s, False)
q = np.sqrt(np.clip(s_ng ** 2 - s ** 2, 0, None))
qm = float(np.median(q))
within_q = np.abs(np.sqrt(s ** 2 + qm ** 2) - s_ng) <= es_ng
print(f"linear: quadrature difference sqrt(sigma_nGIST^2 - sigma^2): median {qm:.1f} km/s (range {q.min():.1f}-"
      f"{q.max():.1f}; log-rebinning smoothing expected ~29 km/s); with it, sigma within nGIST's errors for "
      f"{within_q.sum()}/{nbin} bins")
if not 15 <= qm <= 45:
    failures.append(f"linear: the quadrature difference {qm:.1f} km/s is not the log-rebinning smoothing (15-45)")
if within_q.sum() < 0.9 * nbin:
    failures.append(f"linear: with the median quadrature difference only {within_q.sum()} bins within errors")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("OK")
