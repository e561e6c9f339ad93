"""`cubeflow validate` on broken pipelines: non-zero exit and one file:line:col error per fault.

The second pipeline holds the faults of issue #13 that used to pass `validate` and fail only at
`run`: an empty wavelength window (wave_min >= wave_max; the nodes' validation hooks report it on
the parameter's own line and column) next to a misspelt parameter."""
import os
import re
import subprocess
import sys
import tempfile

cubeflow, src = sys.argv[1:3]
broken = """cubeflow: 1
nodes:
  read: {type: io.read_cube, path: cube.fits, wave_mn: 4800}
  snr: {type: spectral.snr_mpa}
  out: {type: io.write_maps, path: maps.fits, overwrite: maybe}
edges:
  - read.cube -> snr.cube
  - read.cube -> out.maps
"""
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "broken.yaml")
    open(p, "w").write(broken)
    r = subprocess.run([cubeflow, "validate", p], capture_output=True, text=True)
    assert r.returncode != 0, r
    err = r.stderr
    expected = [
        rf"{re.escape(p)}:3:47: error: nodes.read: unknown parameter 'wave_mn' for io.read_cube; did you mean 'wave_min'\?",
        rf"{re.escape(p)}:4:15: error: unknown node type 'spectral.snr_mpa'; did you mean 'spectral.snr_map'\?",
        rf"{re.escape(p)}:5:58: error: nodes.out.overwrite: expected bool, got 'maybe'",
        rf"{re.escape(p)}:8:5: error: type mismatch: read.cube produces 'cube' but out.maps expects 'map'",
    ]
    for e in expected:
        assert re.search(e, err), f"missing /{e}/ in:\n{err}"
    good = subprocess.run([cubeflow, "validate", os.path.join(src, "pipelines", "quicklook.yaml")],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "ok (3 nodes, 3 edges)" in good.stdout, good.stdout

windows = """cubeflow: 1
nodes:
  read: {type: io.read_cube, path: cube.fits}
  snr: {type: spectral.snr_map, wave_min: 5500, wave_max: 5300}
  bin: {type: binning.voronoi, target_snr: 50, wave_mni: 5300}
  bin2: {type: binning.voronoi, wave_min: 5600}
  rest: {type: spectral.restframe, norm_min: 5500, norm_max: 5300}
edges:
  - read.cube -> snr.cube
  - read.cube -> bin.cube
  - read.cube -> bin2.cube
  - bin2.spectra -> rest.spectra
"""
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "windows.yaml")
    open(p, "w").write(windows)
    r = subprocess.run([cubeflow, "validate", p], capture_output=True, text=True)
    assert r.returncode != 0, r
    lines = r.stderr.splitlines()
    expected = [
        f"{p}:4:59: error: nodes.snr.wave_max: must be above wave_min (5500 Angstrom), got 5300: "
        "the window [wave_min, wave_max] is empty; set wave_min < wave_max",
        f"{p}:5:48: error: nodes.bin: unknown parameter 'wave_mni' for binning.voronoi; did you mean 'wave_min'?",
        # wave_max not given: reported at the node, with a note on its default.
        f"{p}:6:3: error: nodes.bin2.wave_max: must be above wave_min (5600 Angstrom), got 5500: "
        "the S/N window [wave_min, wave_max] is empty; set wave_min < wave_max",
        "    'wave_max' has its default value (5500)",
        f"{p}:7:62: error: nodes.rest.norm_max: must be above norm_min (5500 Angstrom), got 5300: "
        "the normalisation window [norm_min, norm_max] is empty; set norm_min < norm_max",
        f"{p}: 4 errors",
    ]
    for e in expected:
        assert e in lines, f"missing line\n{e}\nin:\n{r.stderr}"
print("validate ok")
