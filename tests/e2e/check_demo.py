#!/usr/bin/env python3
"""End to end: simulate a small mock galaxy, run pipelines/demo.yaml (Voronoi -> restframe with
kinematics maps -> HST photometry -> shipped CNN -> MAPS), read every extension with astropy and
check WCS, units, shapes and the physics of the outputs; then `cubeflow compare` against the truth.

usage: check_demo.py CUBEFLOW SOURCE_DIR WORK_DIR
"""
import json
import os
import subprocess
import sys

from cfskip import skip

try:
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy in /usr/bin/python3 ({e})")

cf, src, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
gal = os.path.join(work, "demo_galaxy")
maps = os.path.join(work, "demo_maps.fits")


def run(*args):
    r = subprocess.run([cf, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"FAIL: cubeflow {' '.join(args)} exited {r.returncode}")
    return r.stdout


run("simulate", "galaxy", "--out", gal, "--nx", "24", "--ny", "20", "--seed", "3")
os.environ["CUBEFLOW_DEMO_DIR"] = gal
run("run", os.path.join(src, "pipelines", "demo.yaml"), "--set", f"out.path={maps}")

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


with fits.open(maps, checksum=True) as h:
    names = [x.name for x in h]
    for ext in ["BINID", "QUALITY", "SNR", "LW_LOGAGE", "MW_LOGAGE", "LW_ZH", "MW_ZH", "MASS_FRAC", "ZH",
                "HST_F555W", "BINS"]:
        check(ext in names, f"missing extension {ext} (have {names})")
    prim = h[0].header
    check(prim.get("CFNNODES", 0) >= 9, "provenance: CFNNODES")
    check(any(str(v).startswith("model=") for k, v in prim.items() if k.startswith("CFN")), "provenance: model param")
    binid = h["BINID"].data
    check(binid.shape == (20, 24), f"BINID shape {binid.shape}")
    check(binid.dtype.kind == "i", f"BINID dtype {binid.dtype}")
    nbins = int(binid.max()) + 1
    check(nbins >= 5, f"only {nbins} bins")
    for ext, unit in [("LW_LOGAGE", "dex"), ("MW_LOGAGE", "dex"), ("LW_ZH", "dex"), ("MW_ZH", "dex")]:
        hdr = h[ext].header
        check(hdr.get("BUNIT") == unit, f"{ext} BUNIT {hdr.get('BUNIT')!r}")
        w = WCS(hdr)
        check(w.has_celestial, f"{ext} has no celestial WCS")
        d = h[ext].data
        check(d.shape == (20, 24), f"{ext} shape {d.shape}")
        check(np.all(np.isnan(d[binid < 0])), f"{ext} not NaN outside bins")
    lw = h["LW_LOGAGE"].data[binid >= 0]
    mw = h["MW_LOGAGE"].data[binid >= 0]
    check(np.all((lw > 6.5) & (lw < 10.3)), f"LW log age outside 6.5-10.3: {lw.min()}..{lw.max()}")
    check(np.all(mw >= lw - 0.05), "mass-weighted ages should not be younger than light-weighted ones")
    mf = h["MASS_FRAC"].data
    check(mf.shape == (16, 20, 24), f"MASS_FRAC shape {mf.shape}")
    s = mf[:, binid >= 0].sum(axis=0)
    check(np.allclose(s, 1, atol=1e-4), f"mass fractions do not sum to 1: {s.min()}..{s.max()}")
    check(h["MASS_FRAC"].header.get("C1") == "0.007Gyr", f"plane names: C1={h['MASS_FRAC'].header.get('C1')!r}")
    t = h["BINS"].data
    check(len(t) == nbins, f"BINS rows {len(t)} vs {nbins} bins")
    check(np.all(np.isfinite(t["LW_LOGAGE"])), "BINS LW_LOGAGE not finite")
    q = h["QUALITY"].data
    check(np.all((q[binid < 0] & 1) == 1), "NOCOV missing outside bins")

out = run("compare", maps, os.path.join(gal, "truth.fits"), "--json", os.path.join(work, "acc.json"))
print(out)
acc = json.load(open(os.path.join(work, "acc.json")))
check(acc["n_bins"] == nbins, f"compare used {acc['n_bins']} of {nbins} bins")
# Issue #7's accuracy targets, end to end (the mock galaxy's histories are from the training
# prior's family, so what remains is the pipeline plus the CNN's own error; measured with the
# shipped model on this galaxy: LW age -0.035 / 0.044, MW age +0.024 / 0.057, LW [Z/H]
# -0.005 / 0.015, MW [Z/H] -0.004 / 0.019 dex median offset / scatter).
for key, lim in [("mw_logage_median_offset", 0.05), ("mw_logage_scatter", 0.20),
                 ("lw_logage_median_offset", 0.05), ("lw_logage_scatter", 0.15),
                 ("mw_zh_median_offset", 0.05), ("mw_zh_scatter", 0.08),
                 ("lw_zh_median_offset", 0.05), ("lw_zh_scatter", 0.08)]:
    check(abs(acc[key]) < lim, f"{key} = {acc[key]:+.3f}, beyond {lim}")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: {nbins} bins, products checked")
