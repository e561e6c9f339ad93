#!/usr/bin/env python3
"""Survey mode (issue #18 item 2, docs/survey.md): one pipeline over a manifest of cubes.

Four 16 x 16 mock galaxies go through tests/e2e/survey.yaml (binning -> rest frame -> bin
spectra; a manifest column overrides rest.z_sys for one cube):
  1. `cubeflow run --manifest` (serial) and `mpirun -np 2 cubeflow-mpi` give products identical
     (every HDU's data) to a plain `cubeflow run` of each cube with its variables and --set;
     the summary TSV says ok with the bins of each product.
  2. One cube truncated on purpose: reported failed (the reader's message), the other three ok
     and identical, exit status 1 (0 with --allow-failed); both front ends, --jobs 2 locally.
  3. Bad input: a missing file (that cube failed, the others run), a window outside the cube
     (failed with the reader's message), a malformed line, a duplicate name, two cubes writing
     the same product (refused before anything runs, exit 2, FILE:LINE messages).
  4. A cube's process killed (SIGKILL) while it runs: that cube failed "killed by signal 9",
     the others finish.
  5. An MPI rank killed mid-run: mpirun fails, the summary written so far survives and lists
     the cubes finished before (their products whole and identical), the cube in flight 'running'.
A cube that must stay running reads a FIFO that nobody writes (io.read_cube blocks in open).

usage: check_survey.py CUBEFLOW CUBEFLOW_MPI|- SOURCE_DIR WORK_DIR
"""
import csv
import os
import shutil
import signal
import subprocess
import sys
import time

from cfskip import skip

try:
    import numpy as np
    from astropy.io import fits
    from fits_compare import assert_same, hdu_data  # beside this script
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy ({e})")

cf, cf_mpi, src, work = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
pipeline = os.path.join(src, "tests", "e2e", "survey.yaml")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
t0 = time.time()
names = ["g1", "g2", "g3", "g4"]
sims = [subprocess.Popen([cf, "simulate", "galaxy", "--out", os.path.join(work, n), "--nx", "16", "--ny", "16",
                          "--seed", str(i + 1)], stdout=subprocess.DEVNULL) for i, n in enumerate(names)]
assert all(p.wait() == 0 for p in sims)
ZSYS = {"g2": "0.0025"}  # the others keep the pipeline's 0.00243


def manifest(path, outdir, cubes=None, extra_rows=()):
    """Writes a manifest: name, CUBE, KIN, OUT, rest.z_sys (tab-separated)."""
    cubes = cubes or {}
    os.makedirs(outdir, exist_ok=True)
    lines = ["name\tCUBE\tKIN\tOUT\trest.z_sys"]
    for n in names:
        cube = cubes.get(n, os.path.join(work, n, "cube.fits"))
        lines.append("\t".join([n, cube, os.path.join(work, n, "kinematics.fits"), os.path.join(outdir, n + ".fits"),
                                ZSYS.get(n, "")]))
    lines += extra_rows
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def summary(path):
    with open(path, newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f, delimiter="\t")}


def run(*args, env=None):
    r = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=120)
    return r.returncode, r.stdout + r.stderr


# The reference: a plain `cubeflow run` per cube, its variables in the environment.
ref = os.path.join(work, "ref")
os.makedirs(ref)
refs = []
for n in names:
    env = dict(os.environ, CUBE=os.path.join(work, n, "cube.fits"), KIN=os.path.join(work, n, "kinematics.fits"),
               OUT=os.path.join(ref, n + ".fits"))
    extra = ["--set", "rest.z_sys=" + ZSYS[n]] if n in ZSYS else []
    refs.append(subprocess.Popen([cf, "run", pipeline, "--no-progress", "--threads", "1", *extra], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
for p in refs:
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
refdata = {n: hdu_data(os.path.join(ref, n + ".fits")) for n in names}
# The override matters (otherwise check 1 would not see it ignored): g2 without it differs.
env = dict(os.environ, CUBE=os.path.join(work, "g2", "cube.fits"), KIN=os.path.join(work, "g2", "kinematics.fits"),
           OUT=os.path.join(ref, "g2_default.fits"))
rc, out = run(cf, "run", pipeline, "--no-progress", env=env)
assert rc == 0, out
assert not np.array_equal(hdu_data(os.path.join(ref, "g2_default.fits"))["SPECTRA"], refdata["g2"]["SPECTRA"])


def check_ok(summ_path, outdir, expect_failed=()):
    s = summary(summ_path)
    assert list(s) == names, s.keys()
    for n in names:
        if n in expect_failed:
            continue
        r = s[n]
        assert r["status"] == "ok" and r["exit"] == "0" and r["error"] == "", r
        p = os.path.join(outdir, n + ".fits")
        assert r["products"] == p, r
        with fits.open(p) as h:
            assert int(r["bins"]) == int(r["usable"]) > 0, r
        assert_same(hdu_data(p), refdata[n])
        assert float(r["wall_s"]) > 0 and float(r["peak_rss_mb"]) > 10, r
        assert os.path.isfile(r["log"]), r
    return s


# The plain cubeflow does not link MPI (a single machine needs none at run time).
if shutil.which("ldd"):
    libs = subprocess.run(["ldd", cf], capture_output=True, text=True).stdout
    assert "libmpi" not in libs, libs

# 1. Serial survey: identical products, summary.
m = manifest(os.path.join(work, "serial.tsv"), os.path.join(work, "serial"))
summ = os.path.join(work, "serial_summary.tsv")
rc, out = run(cf, "run", pipeline, "--manifest", m, "--summary", summ, "--no-progress")
assert rc == 0, out
check_ok(summ, os.path.join(work, "serial"))
print(out.split("summary:")[0], end="")  # the table (wall time and peak memory per cube)
for n in names:
    assert f"] {n}: ok, " in out, out
print(f"serial survey: 4 cubes ok, identical to `cubeflow run` ({time.time() - t0:.1f} s so far)")

# --only-row / --cube pick one line (the Slurm job-array recipe in docs/survey.md).
rc, out = run(cf, "run", pipeline, "--manifest", m, "--only-row", "3", "--summary", os.path.join(work, "row3.tsv"))
assert rc == 0, out
assert list(summary(os.path.join(work, "row3.tsv"))) == ["g3"], out
rc, out = run(cf, "run", pipeline, "--manifest", m, "--only-row", "5")
assert rc == 2 and "--only-row 5: " + m + " has 4 cubes (rows 1 to 4)" in out, out
rc, out = run(cf, "run", pipeline, "--manifest", m, "--cube", "g9")
assert rc == 2 and "--cube g9: no such cube in " + m + " (cubes: g1, g2, g3, g4)" in out, out
rc, out = run(cf, "validate", pipeline, "--manifest", m)
assert rc == 0 and out.count(": ok") == 4, out

# 2. A truncated cube: failed, the others ok; exit 1, or 0 with --allow-failed.
bad = os.path.join(work, "g3_truncated.fits")
shutil.copy(os.path.join(work, "g3", "cube.fits"), bad)
os.truncate(bad, 100000)
mb = manifest(os.path.join(work, "broken.tsv"), os.path.join(work, "broken"), cubes={"g3": bad})
summ = os.path.join(work, "broken_summary.tsv")
rc, out = run(cf, "run", pipeline, "--manifest", mb, "--summary", summ, "--jobs", "2")
assert rc == 1 and "not every cube gave a usable product" in out, out
s = check_ok(summ, os.path.join(work, "broken"), expect_failed=["g3"])
assert s["g3"]["status"] == "failed" and s["g3"]["exit"] == "1", s["g3"]
assert "node 'read' (io.read_cube) failed" in s["g3"]["error"] and "the file is truncated" in s["g3"]["error"], s["g3"]
assert not os.path.exists(os.path.join(work, "broken", "g3.fits"))
rc, out = run(cf, "run", pipeline, "--manifest", mb, "--summary", summ, "--allow-failed")
assert rc == 0, out

# 3. Bad input.
outdir = os.path.join(work, "badinput")
mbad = manifest(os.path.join(work, "badinput.tsv"), outdir, cubes={"g1": os.path.join(work, "nothere.fits")},
                extra_rows=["\t".join(["g5", os.path.join(work, "g4", "cube.fits"), os.path.join(work, "g4", "kinematics.fits"),
                                       os.path.join(outdir, "g5.fits"), ""])])
summ = os.path.join(work, "badinput_summary.tsv")
rc, out = run(cf, "run", pipeline, "--manifest", mbad, "--summary", summ)
assert rc == 1, out
s = summary(summ)
assert s["g1"]["status"] == "failed" and s["g1"]["error"] == (
    "input '" + os.path.join(work, "nothere.fits") + "' (nodes.read.path) does not exist; check the manifest's value on line 2"), s["g1"]
assert all(s[n]["status"] == "ok" for n in ["g2", "g3", "g4", "g5"]), s
# A window outside the cube: a per-cube override of the reader's window.
mwin = os.path.join(work, "window.tsv")
with open(mwin, "w") as f:
    f.write("name\tCUBE\tKIN\tOUT\tread.wave_min\tread.wave_max\n")
    f.write("\t".join(["w1", os.path.join(work, "g1", "cube.fits"), os.path.join(work, "g1", "kinematics.fits"),
                       os.path.join(work, "w1.fits"), "3000", "4000"]) + "\n")
    f.write("\t".join(["w2", os.path.join(work, "g2", "cube.fits"), os.path.join(work, "g2", "kinematics.fits"),
                       os.path.join(work, "w2.fits"), "", ""]) + "\n")
rc, out = run(cf, "run", pipeline, "--manifest", mwin, "--summary", os.path.join(work, "window_summary.tsv"))
assert rc == 1, out
s = summary(os.path.join(work, "window_summary.tsv"))
assert s["w1"]["status"] == "failed" and "wavelength window [3000.0, 4000.0] Angstrom is outside the cube" in s["w1"]["error"], s
assert s["w2"]["status"] == "ok", s
# Malformed line, duplicate name, bad column: refused with FILE:LINE, nothing run.
mm = os.path.join(work, "malformed.tsv")
lines = open(m).read().splitlines()
with open(mm, "w") as f:
    f.write("\n".join([lines[0], lines[1], "# a comment", "g2\tonly\tthree", lines[1], lines[3]]) + "\n")
rc, out = run(cf, "run", pipeline, "--manifest", mm)
assert rc == 2, out
assert f"{mm}:4: 3 fields, the header has 5 (fields are separated by tabs)" in out, out
assert f"{mm}:5: cube 'g1' is already named on line 2; give every cube its own name" in out, out
with open(mm, "w") as f:
    f.write("name\tCUBE\tbad-col\n")
rc, out = run(cf, "run", pipeline, "--manifest", mm)
assert rc == 2 and f"{mm}:1: column 'bad-col' is neither a variable" in out, out
# Two cubes writing one product: refused before anything runs.
mdup = os.path.join(work, "dup.tsv")
dupdir = os.path.join(work, "dup")
manifest(mdup, dupdir)
text = open(mdup).read().replace(os.path.join(dupdir, "g4.fits"), os.path.join(dupdir, "g2.fits"))
open(mdup, "w").write(text)
rc, out = run(cf, "run", pipeline, "--manifest", mdup)
assert rc == 2, out
assert (f"{mdup}:5: cube 'g4' writes {os.path.join(dupdir, 'g2.fits')} (nodes.spec.path), which cube 'g2' (line 3) "
        "writes too; give each cube its own product path") in out, out
assert "nothing was run" in out and not os.listdir(dupdir), out
print(f"bad input: messages as documented ({time.time() - t0:.1f} s so far)")

# 4. A cube's process killed while it runs: failed, the others finish.
fifo = os.path.join(work, "never_written.fits")
os.mkfifo(fifo)


def wait_running(summ_path, name, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = summary(summ_path).get(name)
        except (OSError, KeyError):
            r = None
        if r and r["status"] == "running" and " pid " in r["host"]:
            return int(r["host"].rsplit(" pid ", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"{name} never ran")


mk = manifest(os.path.join(work, "kill.tsv"), os.path.join(work, "kill"), cubes={"g1": fifo})
summ = os.path.join(work, "kill_summary.tsv")
p = subprocess.Popen([cf, "run", pipeline, "--manifest", mk, "--summary", summ, "--jobs", "2"], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
os.kill(wait_running(summ, "g1"), signal.SIGKILL)
out, _ = p.communicate(timeout=120)
assert p.returncode == 1, out
s = check_ok(summ, os.path.join(work, "kill"), expect_failed=["g1"])
assert s["g1"]["status"] == "failed" and s["g1"]["exit"] == "137", s["g1"]
assert s["g1"]["error"].startswith("killed by signal 9 (Killed), perhaps by the out-of-memory killer"), s["g1"]
s_killed = s
# SIGTERM to the survey: no further cube starts; the running one gets it (g1 is blocked in open(),
# where the runner cannot see it, so a second SIGTERM ends it, as it ends `cubeflow run`); 143.
summ = os.path.join(work, "term_summary.tsv")
p = subprocess.Popen([cf, "run", pipeline, "--manifest", mk, "--summary", summ], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
wait_running(summ, "g1")
p.send_signal(signal.SIGTERM)
time.sleep(0.5)
p.send_signal(signal.SIGTERM)
out, _ = p.communicate(timeout=60)
assert p.returncode == 143 and "stopped by signal 15; cubes not started are 'pending' in the summary" in out, out
s = summary(summ)
assert s["g1"]["status"] == "failed" and s["g1"]["exit"] == "143", s["g1"]
assert [s[n]["status"] for n in ["g2", "g3", "g4"]] == ["pending"] * 3, s
print(f"killed cube: reported (peak {s_killed['g1']['peak_rss_mb']} MB: its process had read nothing yet), the others "
      f"finished; SIGTERM stops the survey ({time.time() - t0:.1f} s so far)")

# MPI.
mpirun = shutil.which("mpirun")
if cf_mpi == "-" or not os.path.exists(cf_mpi) or not mpirun:
    skip("cubeflow-mpi or mpirun missing (install libopenmpi-dev openmpi-bin, scripts/install_deps.sh)")
# As root in a container, OpenMPI needs these; --oversubscribe: 2 ranks on fewer cores.
menv = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
            OMPI_MCA_rmaps_base_oversubscribe="1")
mpi = [mpirun, "-np", "2", cf_mpi, pipeline]
mm = manifest(os.path.join(work, "mpi.tsv"), os.path.join(work, "mpi"))
summ = os.path.join(work, "mpi_summary.tsv")
rc, out = run(*mpi, "--manifest", mm, "--summary", summ, "--no-progress", env=menv)
assert rc == 0, out
s = check_ok(summ, os.path.join(work, "mpi"))
assert {r["host"].split(" pid ")[0].rsplit(" ", 1)[1] for r in s.values()} == {"0", "1"}, s  # both ranks worked
print("mpirun -np 2: 4 cubes ok, identical to `cubeflow run`; ranks:",
      ", ".join(f"{n} {r['host'].split(' pid ')[0]}" for n, r in s.items()))
mb = manifest(os.path.join(work, "mpi_broken.tsv"), os.path.join(work, "mpi_broken"), cubes={"g3": bad})
summ = os.path.join(work, "mpi_broken_summary.tsv")
rc, out = run(*mpi, "--manifest", mb, "--summary", summ, env=menv)
assert rc == 1, out
s = check_ok(summ, os.path.join(work, "mpi_broken"), expect_failed=["g3"])
assert s["g3"]["status"] == "failed" and "the file is truncated" in s["g3"]["error"], s["g3"]
rc, out = run(*mpi, "--manifest", mdup, env=menv)
assert rc == 2 and "nothing was run" in out and not os.listdir(dupdir), out

# 5. A rank killed mid-run: g4 blocks on the FIFO; once the others are done, its rank is killed.
mk = manifest(os.path.join(work, "mpi_kill.tsv"), os.path.join(work, "mpi_kill"), cubes={"g4": fifo})
summ = os.path.join(work, "mpi_kill_summary.tsv")
p = subprocess.Popen(mpi + ["--manifest", mk, "--summary", summ], env=menv, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
child = wait_running(summ, "g4")
deadline = time.time() + 60
while time.time() < deadline and sum(r["status"] == "ok" for r in summary(summ).values()) < 3:
    time.sleep(0.05)
with open(f"/proc/{child}/stat") as f:
    rank_pid = int(f.read().rsplit(")", 1)[1].split()[1])  # the rank that forked g4's process
os.kill(rank_pid, signal.SIGKILL)
out, _ = p.communicate(timeout=120)
try:
    os.kill(child, signal.SIGKILL)  # the orphaned cube process, still blocked on the FIFO
except ProcessLookupError:
    pass
assert p.returncode != 0, out
s = summary(summ)
assert s["g4"]["status"] == "running", s["g4"]
check_ok(summ, os.path.join(work, "mpi_kill"), expect_failed=["g4"])
assert not os.path.exists(os.path.join(work, "mpi_kill", "g4.fits"))
print(f"rank killed ({s['g4']['host'].split(' pid ')[0]}, running g4): mpirun exit {p.returncode}; the summary kept "
      "3 ok cubes and g4 'running' "
      f"({time.time() - t0:.1f} s in all)")
print("OK")
