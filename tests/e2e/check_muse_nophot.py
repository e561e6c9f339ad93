#!/usr/bin/env python3
"""The real MUSE sub-cube through pipelines/muse_cnn_nophot.yaml (spectrum-only CNN, no HST):
the run must finish without error and flag what it cannot infer instead of dropping it.

usage: check_muse_nophot.py CUBEFLOW SOURCE_DIR DATA_DIR WORK_DIR
"""
import os
import subprocess
import sys

from cfskip import skip

cf, src, data, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
cube = os.path.join(data, "muse", "mpdaf_subcub_mosaic_UDF.fits")
if not os.path.exists(cube):
    skip(f"real MUSE sub-cube not found at {cube} (set CUBEFLOW_TEST_DATA_DIR)")
try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:
    skip(f"needs astropy/numpy ({e})")
os.makedirs(work, exist_ok=True)
out = os.path.join(work, "muse_nophot.fits")
env = dict(os.environ, CUBEFLOW_DATA_DIR=data, CUBEFLOW_OUT=out)
r = subprocess.run([cf, "run", os.path.join(src, "pipelines", "muse_cnn_nophot.yaml")], env=env,
                   capture_output=True, text=True)
assert r.returncode == 0, r.stdout + r.stderr
with fits.open(out) as h:
    binid = h["BINID"].data
    q = h["QUALITY"].data
    nan_cube = np.all(~np.isfinite(fits.getdata(cube, "DATA")), axis=0)
    # every spaxel is accounted for: in a bin, or flagged as not covered
    assert np.all((binid >= 0) | ((q & 1) == 1)), "spaxels missing from both bins and NOCOV"
    assert np.all(binid[nan_cube] == -1), "NaN spaxels were binned"
    # the cube covers < half of the model's 4800-7000 A grid: every bin is flagged FAILED, NaN
    inb = binid >= 0
    assert inb.any(), "no bin"
    assert np.all((q[inb] & 32) == 32), f"bins not flagged FAILED: {np.unique(q[inb])}"
    assert np.all(np.isnan(h["LW_LOGAGE"].data[inb])), "results of failed bins must be NaN"
    assert h["LW_LOGAGE"].header.get("BUNIT") == "dex"
print("OK")
