#!/usr/bin/env python3
"""Issue #18: a cube streamed from its file gives the same products as the cube in memory.

Simulates a small mock galaxy, then runs through the cubeflow binary, once with the cube in
memory (read.max_memory above the cube) and once streamed (read.max_memory=0, blocks of
1 MiB: one row of spaxels per block, and many bins waiting for their turn in the temporary file):
  - a spectra pipeline (S/N map, Voronoi binning, io.write_spectra, io.write_maps) on 2 threads;
  - with the CNN (if the build has libtorch, argument 4 = 1): pipelines/phangs_cnn.yaml on one
    thread (inference.cnn's batches follow the arrival order of the bins, which depends on the
    thread timing with more threads, streamed or not).
Every HDU of every product must be identical (NaN equal to NaN).

usage: check_streamed.py CUBEFLOW SOURCE_DIR WORK_DIR WITH_TORCH
"""
import os
import subprocess
import sys

from cfskip import skip

try:
    import numpy  # noqa: F401
    from astropy.io import fits  # noqa: F401
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy in /usr/bin/python3 ({e})")
from fits_compare import assert_same, hdu_data  # noqa: E402

cf, src, work, with_torch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
os.makedirs(work, exist_ok=True)
gal = os.path.join(work, "galaxy")


def run(*args):
    r = subprocess.run([cf, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"FAIL: cubeflow {' '.join(args)} exited {r.returncode}")
    return r.stdout + r.stderr


run("simulate", "galaxy", "--out", gal, "--nx", "36", "--ny", "30", "--seed", "5")
cube = os.path.join(gal, "cube.fits")
STREAMED = ["--set", "read.max_memory=0", "--set", "read.block_size=1"]

spectra_yaml = os.path.join(work, "spectra.yaml")
with open(spectra_yaml, "w") as f:
    f.write(f"""cubeflow: 1
nodes:
  read: {{type: io.read_cube, path: {cube}, wave_min: 4750, wave_max: 7100}}
  snr: {{type: spectral.snr_map, wave_min: 5300, wave_max: 5500}}
  bin: {{type: binning.voronoi, target_snr: 20, wave_min: 5300, wave_max: 5500}}
  spec: {{type: io.write_spectra, path: spectra.fits}}
  out: {{type: io.write_maps, path: maps.fits}}
edges:
  - read.cube -> snr.cube
  - read.cube -> bin.cube
  - bin.spectra -> spec.spectra
  - bin.binning -> spec.binning
  - snr.snr -> out.maps
  - snr.flux -> out.maps
  - bin.binid -> out.maps
  - bin.binning -> out.binning
""")
failures = []
MEMORY = ["--set", "read.max_memory=100000"]
for label, extra in [("memory", MEMORY), ("streamed", STREAMED)]:
    log = run("run", spectra_yaml, "--no-progress", "-v", "--threads", "2",
              "--set", f"spec.path={work}/spectra_{label}.fits", "--set", f"out.path={work}/maps_{label}.fits", *extra)
    streamed = "streamed from the file" in log
    if streamed != (label == "streamed"):
        failures.append(f"{label} run: io.read_cube {'streamed' if streamed else 'did not stream'} the cube")
for product in ["spectra", "maps"]:
    try:
        assert_same(hdu_data(f"{work}/{product}_memory.fits"), hdu_data(f"{work}/{product}_streamed.fits"))
    except AssertionError as e:
        failures.append(f"{product}: streamed and in-memory products differ in HDU {e}")

if with_torch:
    env_cnn = ["--set", "rest.z_sys=0.00243", "--set", "kin.z_sys=0.00243", "--set", "kin.lsf_pixel=0",
               "--set", "bin.covariance_alpha=0", "--set", "hst.pattern=hst_{band}.fits", "--set", "hst.psf_muse_fwhm=0",
               "--set", "bin.target_snr=20"]
    os.environ.update(CUBEFLOW_CUBE=cube, CUBEFLOW_HST_DIR=gal)
    for label, extra in [("memory", MEMORY), ("streamed", STREAMED)]:
        run("run", os.path.join(src, "pipelines", "phangs_cnn.yaml"), "--no-progress", "--threads", "1", *env_cnn,
            "--set", f"out.path={work}/cnn_{label}.fits", *extra)
    try:
        assert_same(hdu_data(f"{work}/cnn_memory.fits"), hdu_data(f"{work}/cnn_streamed.fits"))
    except AssertionError as e:
        failures.append(f"phangs_cnn: streamed and in-memory products differ in HDU {e}")

if failures:
    sys.exit("FAIL:\n  " + "\n  ".join(failures))
print("OK: streamed and in-memory products identical" + (" (spectra, maps, phangs_cnn)" if with_torch else ""))
