#!/usr/bin/env python3
"""Resume after a crash (issue #17): a run of tests/e2e/resume_sbi.yaml is killed with SIGKILL at
several points while the SBI node works through the bins; each rerun with --resume takes the
posteriors already computed from the checkpoints, computes only the missing bins, and the final
product is identical (every HDU's data) to an uninterrupted run. A changed parameter or input
invalidates the checkpoints.

usage: check_resume.py CUBEFLOW SOURCE_DIR WORK_DIR
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from cfskip import skip

try:
    from fits_compare import assert_same, hdu_data  # beside this script; numpy, astropy
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy ({e})")

cf, src, work = (os.path.abspath(a) for a in sys.argv[1:4])
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
gal = os.path.join(work, "galaxy")
pipeline = os.path.join(src, "tests", "e2e", "resume_sbi.yaml")
subprocess.run([cf, "simulate", "galaxy", "--out", gal, "--nx", "30", "--ny", "30", "--seed", "11"], check=True,
               capture_output=True)
env = dict(os.environ, CUBEFLOW_GALAXY=gal)


def run(out, *extra, kill_after_entries=None):
    """Runs the pipeline; with kill_after_entries, SIGKILLs it once the checkpoint holds that many
    more records than when it started. Returns (exit status, output)."""
    e = dict(env, CUBEFLOW_OUT=out)
    ckpt = os.path.join(os.path.dirname(out), ".cubeflow-checkpoints", "resume_sbi", "sbi.ckpt")
    p = subprocess.Popen([cf, "run", pipeline, "--no-progress", "--threads", "2", *extra], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_after_entries is not None:
        start = records(ckpt)
        deadline = time.time() + 240
        while p.poll() is None and time.time() < deadline:
            if records(ckpt) >= start + kill_after_entries:
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    out_text, _ = p.communicate(timeout=600)
    return p.returncode, out_text


def records(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"CFCK")
    except OSError:
        return 0


# 1. The reference: one uninterrupted run (its checkpoints are removed after success).
ref_dir = os.path.join(work, "ref")
os.makedirs(ref_dir)
rc, text = run(os.path.join(ref_dir, "maps.fits"))
assert rc == 0, text
m = re.search(r"sbi\s+inference\.sbi\s+\d+\s+(\d+)", text)
nbins = int(m.group(1))
assert nbins >= 20, f"too few bins for the test: {nbins}"
assert not os.path.exists(os.path.join(ref_dir, ".cubeflow-checkpoints", "resume_sbi")), "checkpoints kept after success"
ref = hdu_data(os.path.join(ref_dir, "maps.fits"))

# 2. Killed three times at different points, resumed each time.
res_dir = os.path.join(work, "resumed")
os.makedirs(res_dir)
out = os.path.join(res_dir, "maps.fits")
total_resumed = []
for i, (extra, entries) in enumerate([((), 3), (("--resume",), 4), (("--resume",), 5)]):
    rc, text = run(out, *extra, kill_after_entries=entries)
    assert rc == -signal.SIGKILL, f"kill {i}: the run was not killed mid-way (exit {rc}): {text}"
    if i > 0:
        total_resumed.append(i)
assert not os.path.exists(out), "a killed run must not leave a product"
ckpt = os.path.join(res_dir, ".cubeflow-checkpoints", "resume_sbi", "sbi.ckpt")
kept = records(ckpt)
assert 0 < kept < nbins, f"checkpoint holds {kept} of {nbins} bins"
rc, text = run(out, "--resume")
assert rc == 0, text
m = re.search(r"checkpoints: (\d+) item result\(s\) resumed, (\d+) computed and stored", text)
assert m, text
resumed, computed = int(m.group(1)), int(m.group(2))
print(f"{nbins} bins; after three SIGKILLs the checkpoint held {kept}; the final --resume run took {resumed} from "
      f"it and computed {computed}")
assert resumed + computed == nbins, (resumed, computed, nbins)
assert resumed >= kept - 2, "results in the checkpoint were computed again"  # a torn last record may be lost
assert_same(ref, hdu_data(out))
assert not os.path.exists(os.path.join(res_dir, ".cubeflow-checkpoints", "resume_sbi")), "checkpoints kept after success"

# 3. A changed parameter invalidates every entry: nothing is taken from the checkpoint.
inv_dir = os.path.join(work, "invalidated")
os.makedirs(inv_dir)
out = os.path.join(inv_dir, "maps.fits")
rc, text = run(out, kill_after_entries=4)
assert rc == -signal.SIGKILL, text
rc, text = run(out, "--resume", "--set", "sbi.seed=8")
assert rc == 0, text
m = re.search(r"checkpoints: (\d+) item result\(s\) resumed, (\d+) computed", text)
assert m and int(m.group(1)) == 0 and int(m.group(2)) == nbins, text
print("resume ok: identical product after SIGKILLs; a changed seed computes everything again")
