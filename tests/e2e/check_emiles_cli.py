#!/usr/bin/env python3
"""Issue #14 item 1: `--ssp emiles` through the cubeflow binary.

* `cubeflow simulate library --ssp emiles` (directories from CUBEFLOW_DATA_DIR) writes a library
  whose SSPNAME is emiles, whose CONFIG table records `ssp: emiles` and the two directories used,
  with finite spectra and five finite, positive HST fluxes; its spectra differ from the built-in
  model's for the same seed (the set is really used).
* Without CUBEFLOW_DATA_DIR and without directories it exits 2 and says how to set them.
* `cubeflow simulate galaxy --ssp emiles` warns that E-MILES is coarser than the MUSE LSF beyond
  8950 A (rest frame) and writes finite HST truth fluxes.
* `cubeflow simulate ssp --ssp emiles` prints the join table.

usage: check_emiles_cli.py CUBEFLOW DATA_DIR WORK_DIR
"""
import os
import subprocess
import sys

from cfskip import skip

cf, data, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:
    skip(f"needs astropy/numpy ({e})")
for d in ("emiles_basti_kb", "maraston05_kroupa"):
    if not os.path.isdir(os.path.join(data, "ssp", d)):
        skip(f"no {data}/ssp/{d} (set CUBEFLOW_DATA_DIR)")
os.makedirs(work, exist_ok=True)
env = dict(os.environ, CUBEFLOW_DATA_DIR=data)


def run(args, expect=0, environ=env):
    r = subprocess.run([cf, *args], capture_output=True, text=True, env=environ)
    if r.returncode != expect:
        sys.exit(f"FAIL: {' '.join(args)} exited {r.returncode}, expected {expect}\n{r.stdout}\n{r.stderr}")
    return r


lib = os.path.join(work, "emiles.fits")
ref = os.path.join(work, "builtin.fits")
run(["simulate", "library", "--ssp", "emiles", "--n", "64", "--seed", "3", "--out", lib, "--quiet"])
run(["simulate", "library", "--n", "64", "--seed", "3", "--out", ref, "--quiet"])
with fits.open(lib) as h, fits.open(ref) as b:
    assert h[0].header["SSPNAME"] == "emiles", h[0].header["SSPNAME"]
    cfg = "\n".join(str(r[0]) for r in h["CONFIG"].data)
    assert "ssp: emiles" in cfg, cfg[:400]
    assert os.path.join(data, "ssp", "emiles_basti_kb") in cfg and "maraston05_kroupa" in cfg, cfg[:600]
    s, p = h["SPECTRA"].data, h["PHOT"].data
    assert s.shape == (64, 1761) and np.isfinite(s).all()
    assert p.shape == (64, 5) and np.isfinite(p).all() and (p > 0).all(), p.min(axis=0)
    d = np.abs(s - b["SPECTRA"].data).mean()
    assert d > 0.01, f"emiles and builtin spectra agree to {d}: the set was not used"
print("library: ok")

no_env = {k: v for k, v in os.environ.items() if k != "CUBEFLOW_DATA_DIR"}
r = run(["simulate", "library", "--ssp", "emiles", "--n", "4", "--out", os.path.join(work, "x.fits")], 2, no_env)
assert "CUBEFLOW_DATA_DIR is not set" in r.stderr and "--emiles-dir" in r.stderr, r.stderr
r = run(["simulate", "library", "--ssp", "emiles", "--emiles-dir", "/nonexistent", "--n", "4",
         "--out", os.path.join(work, "x.fits")], 2)
assert "'/nonexistent' (ssp_emiles_dir) does not exist" in r.stderr, r.stderr
assert not os.path.exists(os.path.join(work, "x.fits"))
print("missing data: ok")

gal = os.path.join(work, "galaxy")
r = run(["simulate", "galaxy", "--ssp", "emiles", "--nx", "8", "--ny", "8", "--no-noise", "--out", gal])
assert "coarser than the target resolution at 8950-" in r.stderr, r.stderr
with fits.open(os.path.join(gal, "truth.fits")) as t:
    for b in ("F275W", "F336W", "F438W", "F555W", "F814W"):
        v = t["PHOT_" + b].data
        ok = np.isfinite(v)
        assert ok.sum() > 10 and (v[ok] > 0).all(), b
print("galaxy: ok")

r = run(["simulate", "ssp", "--ssp", "emiles"])
assert "largest excess" in r.stdout and "520 of 520 grid points" in r.stdout, r.stdout[-2000:]
print("ssp report: ok")
