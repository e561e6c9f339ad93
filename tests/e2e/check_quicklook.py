"""Runs pipelines/quicklook.yaml on the real MUSE sub-cube and checks the product with astropy:
sky coordinates of several pixels of the FLUX/SNR maps against the cube's own WCS, the S/N values
against a numpy computation, units and provenance. Exit 77 = skipped (no shared data)."""
import os
import subprocess
import sys

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from cfskip import skip

cubeflow, src, data_dir, work = sys.argv[1:5]
data_dir = os.environ.get("CUBEFLOW_DATA_DIR", data_dir)
cube_path = os.path.join(data_dir, "muse", "mpdaf_subcub_mosaic_UDF.fits")
if not os.path.exists(cube_path):
    skip(f"real MUSE cube not found at {cube_path} (set CUBEFLOW_DATA_DIR)")
out = os.path.join(work, "quicklook_maps.fits")
if os.path.exists(out):
    os.remove(out)
env = dict(os.environ, CUBEFLOW_DATA_DIR=data_dir)
r = subprocess.run([cubeflow, "run", os.path.join(src, "pipelines", "quicklook.yaml"),
                    "--set", f"out.path={out}", "--threads", "1"], capture_output=True, text=True, env=env)
assert r.returncode == 0, r.stderr
assert "io.write_maps" in r.stderr, "summary table missing:\n" + r.stderr

with fits.open(cube_path) as c, fits.open(out, checksum=True) as m:
    cw = WCS(c["DATA"].header).celestial
    data = c["DATA"].data.astype(np.float64)
    var = c["STAT"].data.astype(np.float64)
    wave = c["DATA"].header["CRVAL3"] + (np.arange(data.shape[0]) + 1 - c["DATA"].header["CRPIX3"]) * c["DATA"].header["CD3_3"]
    for ext in ("FLUX", "SNR"):
        h = m[ext].header
        assert m[ext].data.shape == (30, 30), m[ext].data.shape
        mw = WCS(h)
        assert mw.naxis == 2
        for (x, y) in [(0, 0), (29, 0), (0, 29), (15, 12), (29, 29)]:
            a = cw.pixel_to_world_values(x, y)
            b = mw.pixel_to_world_values(x, y)
            assert abs(a[0] - b[0]) < 1e-9 and abs(a[1] - b[1]) < 1e-9, (ext, x, y, a, b)
    assert m["FLUX"].header["BUNIT"] == c["DATA"].header["BUNIT"], m["FLUX"].header["BUNIT"]
    assert m["SNR"].header.get("BUNIT", "") == ""
    # S/N = sum(f) / sqrt(sum(var)) over good pixels in 4800-5300 A
    sel = (wave >= 4800) & (wave <= 5300)
    f = data[sel]
    v = var[sel]
    good = np.isfinite(f) & np.isfinite(v) & (v > 0)
    num = np.where(good, f, 0).sum(0)
    den = np.sqrt(np.where(good, v, 0).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.where(good.any(0), num / den, np.nan)
    got = m["SNR"].data
    both = np.isfinite(want) & np.isfinite(got)
    assert both.sum() > 600, both.sum()
    assert np.array_equal(np.isfinite(want), np.isfinite(got)), "NaN spaxels differ"
    rel = np.abs(got[both] - want[both]) / np.maximum(np.abs(want[both]), 1e-6)
    assert np.nanmax(rel) < 1e-3, np.nanmax(rel)
    p = m[0].header
    assert p["CFVERS"], "no cubeflow version"
    assert "quicklook.yaml" in p["PIPEFILE"]
print("quicklook product ok")
