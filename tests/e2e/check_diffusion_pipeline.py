#!/usr/bin/env python3
"""Issue #19: a mock galaxy through pipelines/demo_diffusion.yaml (inference.diffusion with the
shipped prior models/diffusion_builtin.pt), checked against the galaxy's truth.

`cubeflow simulate galaxy --nx 30 --ny 30 --seed 14` (spiral layout, built-in SSPs; the seed is
used by no training) goes through the pipeline; `cubeflow compare --report-only --json` gives the
per-bin figures. Asserted (what the sampler meets on this galaxy, docs/diffusion.md: LW log age
R^2 0.899, MW log age 0.747, MW [Z/H] 0.587 with Spearman 0.939; bounds stated here, never
loosened):
  - the run finishes and writes the posterior maps with their intervals (LW_LOGAGE, _P16, _P84,
    _ERR, MW_LOGAGE, MW_ZH, T50, TAU_ISM, MASS_FRAC, ZH) and QUALITY; every bin has a result or
    is flagged (none dropped), and at least 90 % of the bins have one;
  - LW log age: R^2 >= 0.5 against the truth (a constant map has R^2 <= 0), Spearman >= 0.7;
  - MW log age: R^2 >= 0.6 (the CNN's on this galaxy: 0.746); MW [Z/H]: R^2 >= 0.3, Spearman >= 0.8
    (before the Metropolis-adjusted steps: 0.674, 0.100 and 0.792, which fail them);
  - the 68 % interval is ordered (P16 <= median <= P84) in every bin.
Printed, not asserted (docs/diffusion.md says why they miss): LW [Z/H] R^2 (its median offset is
-0.25 dex), median offsets, and how often the 68 % intervals hold the truth.

usage: check_diffusion_pipeline.py CUBEFLOW SOURCE_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

from cfcheck import Checks, run_cubeflow
from cfskip import skip

try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy in /usr/bin/python3 ({e})")

cf, src, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
check = Checks()


def run(*args, env=None):
    return run_cubeflow(cf, *args, env=env)


gal = os.path.join(work, "galaxy")
maps = os.path.join(work, "maps.fits")
run("simulate", "galaxy", "--out", gal, "--nx", "30", "--ny", "30", "--seed", "14")
env = dict(os.environ, CUBEFLOW_DEMO_DIR=gal)
run("run", os.path.join(src, "pipelines", "demo_diffusion.yaml"), "--set", "out.path=" + maps, env=env)

with fits.open(maps) as h:
    for ext in ("LW_LOGAGE", "LW_LOGAGE_P16", "LW_LOGAGE_P84", "LW_LOGAGE_ERR", "MW_LOGAGE", "MW_ZH", "T50",
                "TAU_ISM", "MASS_FRAC", "ZH", "QUALITY", "BINID"):
        check(ext in h, f"{ext} in the MAPS product")
    binid = h["BINID"].data
    lw, lo, hi = h["LW_LOGAGE"].data, h["LW_LOGAGE_P16"].data, h["LW_LOGAGE_P84"].data
    quality = h["QUALITY"].data
    bins = np.unique(binid[binid >= 0])
    first = {b: np.flatnonzero(binid.ravel() == b)[0] for b in bins}
    have = [b for b in bins if np.isfinite(lw.ravel()[first[b]])]
    unflagged_nan = [b for b in bins if not np.isfinite(lw.ravel()[first[b]]) and quality.ravel()[first[b]] == 0]
    check(not unflagged_nan, f"every bin without a result is flagged in QUALITY (unflagged: {unflagged_nan[:10]})")
    check(len(have) >= 0.9 * len(bins), f"{len(have)} of {len(bins)} bins have a result (>= 90 %)")
    ordered = all(lo.ravel()[first[b]] <= lw.ravel()[first[b]] <= hi.ravel()[first[b]] for b in have)
    check(ordered, "P16 <= median <= P84 in every bin")

js = os.path.join(work, "compare.json")
r = subprocess.run([cf, "compare", maps, os.path.join(gal, "truth.fits"), "--report-only", "--json", js],
                   capture_output=True, text=True)
print(r.stdout + r.stderr)
check(r.returncode == 0 and os.path.exists(js), f"cubeflow compare --report-only exit {r.returncode}")
acc = json.load(open(js))
check(acc["lw_logage_r2"] >= 0.5, f"LW log age R^2 {acc['lw_logage_r2']:.3f} >= 0.5")
check((acc["lw_logage_spearman"] or 0) >= 0.7, f"LW log age Spearman {acc['lw_logage_spearman']} >= 0.7")
check(acc["mw_logage_r2"] >= 0.6, f"MW log age R^2 {acc['mw_logage_r2']:.3f} >= 0.6")
check(acc["mw_zh_r2"] >= 0.3, f"MW [Z/H] R^2 {acc['mw_zh_r2']:.3f} >= 0.3")
check((acc["mw_zh_spearman"] or 0) >= 0.8, f"MW [Z/H] Spearman {acc['mw_zh_spearman']} >= 0.8")
print(f"not asserted: lw_zh R^2 {acc['lw_zh_r2']:.3f}, Spearman {acc['lw_zh_spearman']}")
for q in ("lw_logage", "mw_logage", "lw_zh", "mw_zh"):
    print(f"not asserted: {q} median offset {acc[q + '_median_offset']:+.3f}")
check.finish()
print("PASS")
