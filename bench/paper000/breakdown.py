#!/usr/bin/env python3
"""Where the SBI posterior medians lose skill: R^2 of t10 / t50 / t90 / [M/H] by the fraction of
the V-band light from stars younger than 100 Myr (outshining) and by [M/H].

usage: breakdown.py OBJECTS_CSV LIBRARY_FITS [FIRST_ROW]
  OBJECTS_CSV  `cubeflow evaluate ... --objects FILE` (or objects.csv of --out): truth and median
               per parameter, rows FIRST_ROW .. of LIBRARY_FITS
  LIBRARY_FITS the evaluated library (for LIGHT_FRAC and the age-bin edges)
Needs numpy and astropy (Debian: python3-numpy python3-astropy)."""
import csv
import sys

import numpy as np
from astropy.io import fits


def r2(t, m):
    t, m = np.asarray(t), np.asarray(m)
    sst = np.sum((t - t.mean()) ** 2)
    return 1 - np.sum((t - m) ** 2) / sst if sst > 0 and len(t) > 1 else float("nan")


def main():
    objects, library = sys.argv[1], sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rows = list(csv.DictReader(open(objects)))
    params = ["t10", "t50", "t90", "mh"]
    truth = {p: np.array([float(r[p + "_true"]) for r in rows]) for p in params}
    med = {p: np.array([float(r[p + "_median"]) for r in rows]) for p in params}
    n = len(rows)
    with fits.open(library) as h:
        light = h["LABELS"].data["LIGHT_FRAC"][first:first + n]
        edges = [h[0].header["AGEE%02d" % i] for i in range(17)]
    young_bins = sum(1 for e in edges[1:] if e <= 0.1 + 1e-9)  # bins ending at <= 100 Myr
    young = light[:, :young_bins].sum(1)
    print(f"{n} objects; young light = V-band light fraction of stars < {edges[young_bins]:.3g} Gyr")
    print(f"{'subset':<28} {'n':>6} " + " ".join(f"{'R2 ' + p:>8}" for p in params))

    def row(name, sel):
        print(f"{name:<28} {sel.sum():6d} " + " ".join(f"{r2(truth[p][sel], med[p][sel]):8.3f}" for p in params))

    row("all", np.ones(n, bool))
    for lo, hi in [(0, 0.01), (0.01, 0.1), (0.1, 0.5), (0.5, 1.01)]:
        row(f"young light {lo:g}-{min(hi, 1):g}", (young >= lo) & (young < hi))
    for lo, hi in [(-2.31, -1.5), (-1.5, -0.5), (-0.5, 0.41)]:
        row(f"[M/H] {lo:g} .. {hi:g}", (truth["mh"] >= lo) & (truth["mh"] < hi))


if __name__ == "__main__":
    main()
