#!/usr/bin/env python3
"""`cubeflow compare` tells a model from a constant map (issue #15).

A small spiral mock galaxy is simulated; MAPS files are written by hand with one bin per 2x2
spaxels: (a) the bins' own truths (every target met: exit 0), (b) a constant map at the median
truth, which meets the |median offset| target by construction (exit 1, R^2 named as missed;
with --report-only exit 0), (c) the truth plus a 0.1 dex offset (exit 1, the offset named),
(d) an SBI-like MH map with P16/P84 (the truth: met, coverage reported) and a prior-like MH
(constant median, wide interval: missed), (e) bad input (exit 2).

usage: check_compare.py CUBEFLOW WORK_DIR
"""
import json
import os
import subprocess
import sys

from cfskip import skip

try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy in /usr/bin/python3 ({e})")

cf, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
gal = os.path.join(work, "galaxy")
r = subprocess.run([cf, "simulate", "galaxy", "--out", gal, "--nx", "24", "--ny", "20", "--seed", "21",
                    "--nwave", "640", "--no-noise"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
truth_path = os.path.join(gal, "truth.fits")
with fits.open(truth_path) as t:
    truth = {q: t[q].data.astype(float) for q in ("LW_LOGAGE", "MW_LOGAGE", "LW_ZH", "MW_ZH", "MASS", "PHOT_F555W")}
ny, nx = truth["MASS"].shape
yy, xx = np.mgrid[0:ny, 0:nx]
valid = np.isfinite(truth["MASS"])
binid = np.where(valid, (yy // 2) * (nx // 2) + xx // 2, -1)
nbins = len(np.unique(binid[binid >= 0]))


def bin_truth(q):
    """Per-bin truth as compare computes it: mass- (MW) or F555W-light-weighted (LW) mean."""
    w = truth["PHOT_F555W"] if q.startswith("LW") else truth["MASS"]
    out = np.full(binid.shape, np.nan)
    for b in np.unique(binid[binid >= 0]):
        s = (binid == b) & np.isfinite(truth[q]) & np.isfinite(w)
        out[binid == b] = (w[s] * truth[q][s]).sum() / w[s].sum()
    return out


per_bin = {q: bin_truth(q) for q in ("LW_LOGAGE", "MW_LOGAGE", "LW_ZH", "MW_ZH")}


def write_maps(path, maps):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(binid.astype(np.int32), name="BINID")]
    for name, m in maps.items():
        hdus.append(fits.ImageHDU(np.where(binid >= 0, m, np.nan).astype(np.float32), name=name))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def compare(path, *extra):
    js = path + ".json"
    r = subprocess.run([cf, "compare", path, truth_path, "--json", js, *extra], capture_output=True, text=True)
    print(r.stdout + r.stderr)
    return r, (json.load(open(js)) if os.path.exists(js) and r.returncode != 2 else None)


failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


# (a) the truth itself
r, acc = compare(write_maps(os.path.join(work, "exact.fits"), per_bin))
check(r.returncode == 0, f"exact maps: exit {r.returncode}, expected 0")
check(acc and acc["all_pass"] and acc["n_bins"] == nbins, f"exact maps: {acc}")
for q in ("lw_logage", "mw_logage", "lw_zh", "mw_zh"):
    check(abs(acc[f"{q}_r2"] - 1) < 1e-3 and acc[f"{q}_spearman"] > 0.999, f"exact {q}: R2/rho {acc}")
    check(acc[f"{q}_constant_scatter"] > 0.1, f"{q}: the mock's bins barely vary ({acc[q + '_constant_scatter']})")

# (b) a constant map at the median truth: offsets 0, no skill
bins = np.unique(binid[binid >= 0])
first = {b: np.flatnonzero(binid.ravel() == b)[0] for b in bins}  # one spaxel per bin
const = {q: np.full(binid.shape, np.median([per_bin[q].ravel()[first[b]] for b in bins])) for q in per_bin}
p = write_maps(os.path.join(work, "constant.fits"), const)
r, acc = compare(p)
check(r.returncode == 1, f"constant maps: exit {r.returncode}, expected 1")
check("R2" in r.stdout and "MISSED" in r.stdout, "constant maps: R2 not named as missed")
for q in ("lw_logage", "mw_logage", "lw_zh", "mw_zh"):
    check(abs(acc[f"{q}_median_offset"]) <= 0.05, f"constant {q}: median offset {acc[q + '_median_offset']}")
    check(acc[f"{q}_r2"] < 0.8 and not acc[f"{q}_pass"], f"constant {q}: R2 {acc[q + '_r2']} passes")
    check(acc[f"{q}_spearman"] is None, f"constant {q}: a constant has no rank correlation")
r, _ = compare(p, "--report-only")
check(r.returncode == 0 and "MISSED" in r.stdout, f"--report-only: exit {r.returncode}")

# (c) a 0.1 dex offset: skilful in rank, but the offset target is missed
r, acc = compare(write_maps(os.path.join(work, "offset.fits"), {q: per_bin[q] - 0.1 for q in per_bin}))
check(r.returncode == 1 and "median offset" in r.stdout, f"offset maps: exit {r.returncode}")
check(acc["mw_logage_spearman"] > 0.999, "offset maps: ranks should be perfect")

# (d) SBI-like MH (mass-weighted [M/H] = the truth's MW_ZH) with its 68 % interval
mh = per_bin["MW_ZH"]
r, acc = compare(write_maps(os.path.join(work, "mh.fits"), {"MH": mh, "MH_P16": mh - 0.05, "MH_P84": mh + 0.05}))
check(r.returncode == 0 and acc["mh_pass"] and acc["mh_coverage68"] == 1.0, f"exact MH: {acc}")
check("MH_P16-MH_P84" in r.stdout, "MH interval coverage not reported")
prior = np.full(binid.shape, np.mean([mh.ravel()[first[b]] for b in bins]))
r, acc = compare(write_maps(os.path.join(work, "mh_prior.fits"),
                            {"MH": prior, "MH_P16": prior - 0.3, "MH_P84": prior + 0.3}))
check(r.returncode == 1 and not acc["mh_pass"] and acc["mh_r2"] < 0.8, f"prior-like MH passes: {acc}")

# (e) bad input: exit 2 with the cause
r, _ = compare(os.path.join(work, "no_such.fits"))
check(r.returncode == 2 and "no_such.fits" in r.stderr, f"missing MAPS: exit {r.returncode}: {r.stderr}")
hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(binid.astype(np.int32), name="BINID")])
hdus.writeto(os.path.join(work, "empty.fits"), overwrite=True)
r, _ = compare(os.path.join(work, "empty.fits"))
check(r.returncode == 2 and "inference.cnn" in r.stderr, f"MAPS without estimates: exit {r.returncode}")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: {nbins} bins")
