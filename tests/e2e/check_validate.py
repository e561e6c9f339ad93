"""`cubeflow validate` on a broken pipeline: non-zero exit and one file:line:col error per fault."""
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
print("validate ok")
