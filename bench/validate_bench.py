#!/usr/bin/env python3
"""Pipeline validation time against the number of nodes (issue #17: validation must be linear).

Writes pipelines of N/2 io.read_cube -> spectral.snr_map pairs (N nodes, N/2 edges), times
`cubeflow validate` on each and prints the seconds, the seconds per 1000 nodes and the ratio to
the previous size: about 2 per doubling when validation is linear, 4 when it is quadratic (the
first sizes are dominated by loading the plugins).

    /usr/bin/python3 bench/validate_bench.py [BUILD_DIR] [SIZES...]
"""
import os
import subprocess
import sys
import tempfile
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
sizes = [int(s) for s in sys.argv[2:]] or [12500, 25000, 50000, 100000, 200000]
cf = os.path.join(build, "bin", "cubeflow")
print(f"{'nodes':>8} {'seconds':>9} {'s/1000 nodes':>13} {'ratio':>7}")
prev = None
with tempfile.TemporaryDirectory() as tmp:
    for n in sizes:
        path = os.path.join(tmp, f"p{n}.yaml")
        with open(path, "w") as f:
            f.write("cubeflow: 1\nnodes:\n")
            for i in range(n // 2):
                f.write(f"  r{i}: {{type: io.read_cube, path: c.fits}}\n  s{i}: {{type: spectral.snr_map}}\n")
            f.write("edges:\n")
            for i in range(n // 2):
                f.write(f"  - r{i}.cube -> s{i}.cube\n")
        t0 = time.perf_counter()
        subprocess.run([cf, "validate", path], check=True, stdout=subprocess.DEVNULL)
        s = time.perf_counter() - t0
        ratio = f"{s / prev:7.2f}" if prev else ""
        print(f"{n:8d} {s:9.2f} {1000 * s / n:13.4f} {ratio:>7}")
        prev = s
