#!/usr/bin/env python3
"""The bad-input catalogue (issue #17): what a hostile or careless user can do to cubeflow, and
the exact answer each case must get -- exit status and message -- with no crash, no silent
nonsense and no lost data.

Every case runs the real `cubeflow` binary on files made here from cubes/tiny_cube.fits. A case
passes when the exit status is the expected one, every `expect` regex is found in stderr+stdout,
no `forbid` regex is, and its `check` (if any) holds (e.g. the input file is byte-identical
afterwards, no temporary file is left).

usage: catalogue.py CUBEFLOW SOURCE_DIR FIXTURE_PLUGIN_DIR WORK_DIR [CASE_ID ...]
"""
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from cfskip import skip  # noqa: E402

try:
    import numpy as np
    from astropy.io import fits
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy in /usr/bin/python3 ({e})")

cf, src, fixtures, work = [os.path.abspath(a) for a in sys.argv[1:5]]
only = set(sys.argv[5:])
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
os.chdir(work)
TINY = os.path.join(src, "cubes", "tiny_cube.fits")
CRASH = re.compile(r"terminate called|Aborted|Segmentation fault|core dumped|std::|basic_string|bad_alloc|YAML::")


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def variant(name, edit):
    """A copy of the tiny cube with `edit(hdulist)` applied."""
    with fits.open(TINY) as h:
        h = fits.HDUList([x.copy() for x in h])
        edit(h)
        h.writeto(name, overwrite=True)
    return name


def window_channels(h, lo, hi):
    hd = h[1].header
    step = hd.get("CD3_3", hd.get("CDELT3"))
    w = hd["CRVAL3"] + (np.arange(h[1].data.shape[0]) + 1 - hd["CRPIX3"]) * step
    return (w >= lo) & (w <= hi)


def write(name, text):
    with open(name, "w") as f:
        f.write(text)
    return name


QUICKLOOK = """cubeflow: 1
nodes:
  read: {{type: io.read_cube, path: {cube}}}
  snr: {{type: spectral.snr_map, wave_min: 4800, wave_max: 5300}}
  out: {{type: io.write_maps, path: {out}}}
edges:
  - read.cube -> snr.cube
  - snr.flux -> out.maps
  - snr.snr -> out.maps
"""


def quicklook(name, cube="c.fits", out="m.fits"):
    return write(name, QUICKLOOK.format(cube=cube, out=out))


def no_temporaries(directory="."):
    left = [f for f in os.listdir(directory) if re.search(r"\.(tmp|part|scratch)-\d+", f)]
    return (not left, f"temporary files left: {left}")


cases = []


def case(cid, category, what, args, rc, expect=(), forbid=(), check=None, setup=None, env=None, timeout=120,
         interrupt=None, file_size_limit=None):
    cases.append(dict(id=cid, category=category, what=what, args=args, rc=rc, expect=list(expect),
                      forbid=list(forbid), check=check, setup=setup, env=env, timeout=timeout, interrupt=interrupt,
                      file_size_limit=file_size_limit))


def limit_file_size(nbytes):
    """For subprocess preexec_fn: writes beyond nbytes fail with EFBIG, as on a full disk (SIGXFSZ
    ignored, so the write returns the error instead of killing the process)."""
    def f():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return f


# ---------------------------------------------------------------------------------------------
# Data loss: an output must never replace an input or a good earlier product.
# ---------------------------------------------------------------------------------------------
def setup_same():
    shutil.copy(TINY, "c.fits")
    quicklook("q.yaml")
    return {"input": sha("c.fits")}


def input_unchanged(state):
    return (sha("c.fits") == state["input"], "the input cube changed")


case("D1", "data loss", "output path equal to the input",
     ["run", "q.yaml", "--set", "out.path=c.fits"], 1,
     [r"nodes\.out\.path: output '.*/c\.fits' is the input of nodes\.read\.path; writing it would destroy the input"],
     setup=setup_same, check=input_unchanged)


def setup_link(kind):
    def f():
        st = setup_same()
        (os.symlink if kind == "sym" else os.link)("c.fits", "alias.fits")
        return st
    return f


case("D2", "data loss", "output is a symbolic link to the input", ["run", "q.yaml", "--set", "out.path=alias.fits"], 1,
     [r"is the input of nodes\.read\.path \(the same file through a link\)"], setup=setup_link("sym"),
     check=input_unchanged)
case("D3", "data loss", "output is a hard link to the input", ["run", "q.yaml", "--set", "out.path=alias.fits"], 1,
     [r"is the input of nodes\.read\.path \(the same file through a link\)"], setup=setup_link("hard"),
     check=input_unchanged)


def setup_readonly():
    st = setup_same()
    os.chmod("c.fits", stat.S_IRUSR | stat.S_IRGRP)
    return st


case("D4", "data loss", "a read-only input named as the output", ["run", "q.yaml", "--set", "out.path=c.fits"], 1,
     [r"is the input of nodes\.read\.path"], setup=setup_readonly, check=input_unchanged)
case("D5", "data loss", "output is /dev/null (a device; root could replace it)",
     ["run", "q.yaml", "--set", "out.path=/dev/null"], 1,
     [r"output '/dev/null' is a character device; give the path of a regular file \(or run with "
      r"--allow-special-outputs"], setup=setup_same,
     check=lambda st: (stat.S_ISCHR(os.stat("/dev/null").st_mode), "/dev/null is no longer a device"))
case("D6", "data loss", "output is /dev/full", ["run", "q.yaml", "--set", "out.path=/dev/full"], 1,
     [r"output '/dev/full' is a character device"], setup=setup_same)


def setup_spectra_same():
    shutil.copy(TINY, "c.fits")
    write("s.yaml", """cubeflow: 1
nodes:
  read: {type: io.read_cube, path: c.fits}
  bin: {type: binning.voronoi, target_snr: 5, wave_min: 4800, wave_max: 5300}
  out: {type: io.write_spectra, path: s.fits}
edges:
  - read.cube -> bin.cube
  - bin.spectra -> out.spectra
  - bin.binning -> out.binning
""")
    return {"input": sha("c.fits")}


case("D7", "data loss", "io.write_spectra output equal to the input",
     ["run", "s.yaml", "--set", "out.path=c.fits"], 1,
     [r"nodes\.out\.path: output '.*/c\.fits' is the input of nodes\.read\.path"], setup=setup_spectra_same,
     check=input_unchanged)


def setup_good_product():
    shutil.copy(TINY, "c.fits")
    quicklook("q.yaml")
    subprocess.run([cf, "run", "q.yaml", "--no-progress"], check=True, capture_output=True)
    variant("nan.fits", lambda h: h[1].data.__setitem__(window_channels(h, 4800, 5300), np.nan))
    return {"product": sha("m.fits")}


def product_kept(st):
    ok = sha("m.fits") == st["product"]
    return ok and no_temporaries()[0], "the good earlier product changed" if not ok else no_temporaries()[1]


case("D8", "data loss", "a failed run after a good one keeps the good product",
     ["run", "q.yaml", "--set", "read.path=nan.fits"], 1,
     [r"the earlier product .*m\.fits is kept", r"no product holds a usable result"],
     setup=setup_good_product, check=product_kept)

# ---------------------------------------------------------------------------------------------
# Crashes: never an abort, always a message naming the option and what to do.
# ---------------------------------------------------------------------------------------------
for cid, opt, val, msg in [
        ("C1", "--wave-step", "-1", r"--wave-step"),
        ("C2", "--wave-start", "-100", r"--wave-start"),
        ("C3", "--redshift", "-2", r"--redshift"),
        ("C4", "--redshift", "nan", r"--redshift"),
        ("C5", "--wave-step", "inf", r"--wave-step")]:
    case(cid, "crash", f"simulate galaxy {opt} {val}",
         ["simulate", "galaxy", "--out", "g", "--nx", "8", "--ny", "8", opt, val], 2, [msg], forbid=[CRASH])
case("C6", "crash", "simulate library with a config that is not YAML",
     ["simulate", "library", "--n", "4", "--out", "lib.fits", "--config", "notyaml.yaml"], 2,
     [r"notyaml\.yaml"], forbid=[CRASH], setup=lambda: write("notyaml.yaml", "this: [is: not\n  - yaml {\n") and {})
case("C7", "crash", "simulate library with a config that is YAML but not a mapping",
     ["simulate", "library", "--n", "4", "--out", "lib.fits", "--config", "list.yaml"], 2,
     [r"list\.yaml"], forbid=[CRASH], setup=lambda: write("list.yaml", "- 1\n- 2\n") and {})
case("C8", "crash", "simulate galaxy larger than memory",
     ["simulate", "galaxy", "--out", "huge", "--nx", "100000", "--ny", "100000"], 2,
     [r"GB"], forbid=[CRASH],
     check=lambda st: (not os.path.exists("huge/cube.fits"), "a cube file was left behind"))

# ---------------------------------------------------------------------------------------------
# Silent nonsense: a product of NaNs or a guess must come with a word (and a non-zero exit when
# nothing usable came out).
# ---------------------------------------------------------------------------------------------


def setup_cube(edit):
    def f():
        variant("bad.fits", edit)
        quicklook("q.yaml", cube="bad.fits")
        return {}
    return f


def neg_stat(h):
    h[2].data[:] = -np.abs(h[2].data)


case("S1", "silent", "negative STAT", ["run", "q.yaml"], 1,
     [r"\[snr\] warning: 72 of 72 spaxels have no S/N .*variance not positive .*check the STAT extension",
      r"no product holds a usable result"], setup=setup_cube(neg_stat))
case("S2", "silent", "zero STAT", ["run", "q.yaml"], 1,
     [r"variance not positive \(\d+ negative or zero", r"no product holds a usable result"],
     setup=setup_cube(lambda h: h[2].data.__setitem__(slice(None), 0.0)))
case("S3", "silent", "NaN across the S/N window", ["run", "q.yaml"], 1,
     [r"NaN flux in 100 % of the window's pixels", r"Run with --allow-empty to accept an empty product"],
     setup=setup_cube(lambda h: h[1].data.__setitem__(window_channels(h, 4800, 5300), np.nan)))
case("S4", "silent", "--allow-empty accepts an empty product (and still warns)", ["run", "q.yaml", "--allow-empty"],
     0, [r"NaN flux in 100 %"],
     setup=setup_cube(lambda h: h[1].data.__setitem__(window_channels(h, 4800, 5300), np.nan)))
case("S5", "silent", "no CTYPE3", ["run", "q.yaml"], 0,
     [r"has no CTYPE3: the wavelength axis is taken as linear, in air Angstrom \(AWAV\); add CTYPE3"],
     setup=setup_cube(lambda h: h[1].header.remove("CTYPE3")))
case("S6", "silent", "no BUNIT", ["run", "q.yaml"], 0, [r"has no BUNIT: the flux unit is unknown"],
     setup=setup_cube(lambda h: [x.header.remove("BUNIT") for x in h[1:] if "BUNIT" in x.header]))
case("S7", "silent", "BUNIT 'banana'", ["run", "q.yaml"], 0, [r"unit 'banana' is not a flux density"],
     setup=setup_cube(lambda h: [x.header.__setitem__("BUNIT", "banana") for x in h[1:]]))
case("S8", "silent", "two DATA HDUs", ["run", "q.yaml"], 1,
     [r"has 2 image HDUs named DATA \(HDUs 1 and 2\); which one holds the cube is ambiguous"],
     setup=setup_cube(lambda h: h.insert(2, fits.ImageHDU(h[1].data, h[1].header.copy()))))


def setup_window():
    shutil.copy(TINY, "c.fits")
    write("w.yaml", QUICKLOOK.format(cube="c.fits", out="m.fits").replace(
        "{type: io.read_cube, path: c.fits}", "{type: io.read_cube, path: c.fits, wave_min: 4000, wave_max: 5000}"))
    return {}


case("S9", "silent", "read window partly outside the cube", ["run", "w.yaml"], 0,
     [r"window \[4000\.0, 5000\.0\] Angstrom is partly outside .* reading 4750\.0 - 5000\.0 Angstrom only"],
     setup=setup_window)
case("S10", "silent", "a parameter given twice in one node",
     ["validate", "dup.yaml"], 1, [r"dup\.yaml:3:\d+: error: nodes\.read: 'path' is given twice \(also at line 3\)"],
     setup=lambda: write("dup.yaml", QUICKLOOK.format(cube="c.fits, path: d.fits", out="m.fits")) and {})
case("S11", "silent", "a NUL character in a path", ["validate", "nul.yaml"], 1,
     [r"nodes\.read\.path: contains a NUL character; remove it"],
     setup=lambda: write("nul.yaml", QUICKLOOK.format(cube='"c\\0.fits"', out="m.fits")) and {})
case("S12", "silent", "an unset ${VARIABLE} in a path", ["validate", "env.yaml"], 1,
     [r"nodes\.read\.path: environment variable CUBEFLOW_SURELY_UNSET is not set; set it, or give a default as "
      r"\$\{CUBEFLOW_SURELY_UNSET:-value\}"],
     setup=lambda: write("env.yaml", QUICKLOOK.format(cube='"${CUBEFLOW_SURELY_UNSET}/c.fits"', out="m.fits")) and {})
case("S13", "silent", "a top-level key given twice", ["validate", "top.yaml"], 1,
     [r"top-level key 'nodes' is given twice"],
     setup=lambda: write("top.yaml", QUICKLOOK.format(cube="c.fits", out="m.fits") +
                         "nodes:\n  x: {type: io.read_cube, path: c.fits}\n") and {})

# ---------------------------------------------------------------------------------------------
# Unclear messages.
# ---------------------------------------------------------------------------------------------
case("U1", "unclear", "duplicate node name", ["validate", "dupnode.yaml"], 1,
     [r"dupnode\.yaml:4:3: error: duplicate node name 'read'"],
     setup=lambda: write("dupnode.yaml", QUICKLOOK.format(cube="c.fits", out="m.fits").replace(
         "  snr:", "  read: {type: io.read_cube, path: d.fits}\n  snr:", 1)) and {})
case("U2", "unclear", "1e400 as a number", ["validate", "big.yaml"], 1,
     [r"nodes\.snr\.wave_min: expected a finite number, got '1e400'"],
     setup=lambda: write("big.yaml", QUICKLOOK.format(cube="c.fits", out="m.fits").replace(
         "wave_min: 4800", "wave_min: 1e400")) and {})
case("U3", "unclear", "--threads abc", ["run", "q.yaml", "--threads", "abc"], 2,
     [r"--threads expects a whole number from 1 to 4096, got 'abc'"], setup=setup_same)
case("U4", "unclear", "a directory as the pipeline", ["validate", "."], 1,
     [r"is a directory, not a pipeline file"])


def huge_header():
    with fits.open(TINY) as h:
        h = fits.HDUList([x.copy() for x in h])
        h.writeto("huge.fits", overwrite=True)
    # Rewrite NAXIS3 in place: the header now claims 10^14 pixels; the file stays 0.3 MB.
    with open("huge.fits", "r+b") as f:
        raw = f.read()
        start = raw.index(b"XTENSION")
        pos = raw.index(b"NAXIS3  =", start)
        f.seek(pos)
        f.write(b"NAXIS3  = %20d" % 1000000000000)
    quicklook("q.yaml", cube="huge.fits")
    return {}


case("U5", "unclear", "a header claiming 10^12 x 72 pixels in a 0.3 MB file", ["run", "q.yaml"], 1,
     [r"declares .* GB of pixels, but the file holds .* GB: the file is truncated or its header \(NAXISn\) is wrong"],
     forbid=[r"narrower"], setup=huge_header)


def setup_loop():
    os.symlink("loopdir", "loopdir")
    return {}


case("U6", "unclear", "a symbolic-link loop in CUBEFLOW_PLUGIN_PATH", ["plugins"], 0,
     [r"io\.read_cube"], setup=setup_loop, env={"CUBEFLOW_PLUGIN_PATH": "loopdir"})

SLOW = """cubeflow: 1
plugins: [{fixtures}/testkit.so]
nodes:
  src: {{type: testkit.numbers, count: 100000, delay_us: 2000}}
  out: {{type: io.write_maps, path: slow.fits}}
edges:
  - src.items -> out.records
"""


def setup_slow():
    write("slow.yaml", SLOW.format(fixtures=fixtures))
    return {}


def interrupted_cleanly(st):
    if not os.path.exists("slow.fits"):
        return False, "no partial product written"
    with fits.open("slow.fits") as h:
        if h[0].header.get("PARTIAL") is not True:
            return False, "product not marked PARTIAL"
    return no_temporaries()


case("U7", "unclear", "SIGINT during a run", ["run", "slow.yaml", "--no-progress"], 130,
     [r"interrupted by signal 2 \(SIGINT\); the run stopped and its products are partial",
      r"partial product .*slow\.fits"], setup=setup_slow, interrupt=signal.SIGINT, check=interrupted_cleanly)
case("U8", "unclear", "SIGTERM during a run", ["run", "slow.yaml", "--no-progress"], 143,
     [r"interrupted by signal 15 \(SIGTERM\)"], setup=setup_slow, interrupt=signal.SIGTERM, check=interrupted_cleanly)


def setup_stale():
    shutil.copy(TINY, "c.fits")
    quicklook("q.yaml")
    # What a run killed with SIGKILL leaves: a temporary file named after a process that is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    write(f"m.fits.tmp-{dead.pid}", "half a FITS file")
    write(f"m.fits.tmp-{os.getpid()}", "a live writer's file")  # this process is alive: kept
    return {"live": f"m.fits.tmp-{os.getpid()}"}


case("U9", "unclear", "a temporary file left by a killed run", ["run", "q.yaml", "--no-progress"], 0,
     [r"removed .*m\.fits\.tmp-\d+, a temporary file left by a killed run"], setup=setup_stale,
     check=lambda st: (os.path.exists(st["live"]) and len([f for f in os.listdir(".") if ".tmp-" in f]) == 1,
                       "the dead run's file was not removed, or the live one was"))



def setup_earlier_galaxy():
    subprocess.run([cf, "simulate", "galaxy", "--out", "g", "--nx", "10", "--ny", "10", "--seed", "1"], check=True,
                   capture_output=True)
    return {f: sha(os.path.join("g", f)) for f in os.listdir("g")}


def galaxy_kept(st):
    now = {f: sha(os.path.join("g", f)) for f in os.listdir("g")}
    return now == st, f"the earlier galaxy's files changed or temporaries were left: {sorted(set(now) ^ set(st))}"


case("U10", "unclear", "the disk fills while simulate galaxy writes the cube (writes beyond 6 MB fail)",
     ["simulate", "galaxy", "--out", "g", "--nx", "20", "--ny", "20", "--seed", "2"], 1,
     [r"cannot write cube '.*g/cube\.fits' \(HDU '(DATA|STAT)'\): could not write the file: the disk of .* may be full"],
     forbid=[CRASH, r"error reading"], setup=setup_earlier_galaxy, check=galaxy_kept, file_size_limit=6 << 20)

# ---------------------------------------------------------------------------------------------
failures = []
for c in cases:
    if only and c["id"] not in only:
        continue
    d = os.path.join(work, c["id"])
    os.makedirs(d)
    os.chdir(d)
    state = (c["setup"]() if c["setup"] else None) or {}
    env = dict(os.environ)
    env.update(c["env"] or {})
    t0 = time.time()
    if c["interrupt"]:
        p = subprocess.Popen([cf] + c["args"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        # Signal once the run has its handler (SigCgt in /proc/PID/status) and has run a moment.
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as st:
                    cgt = int(next(line for line in st if line.startswith("SigCgt:")).split()[1], 16)
            except (OSError, StopIteration):
                cgt = 0
            if cgt & (1 << (int(c["interrupt"]) - 1)):
                break
            time.sleep(0.05)
        time.sleep(1.0)
        p.send_signal(c["interrupt"])
        out, _ = p.communicate(timeout=c["timeout"])
        rc = p.returncode
    else:
        limit = limit_file_size(c["file_size_limit"]) if c["file_size_limit"] else None
        r = subprocess.run([cf] + c["args"], capture_output=True, text=True, env=env, timeout=c["timeout"],
                           preexec_fn=limit)
        out, rc = r.stdout + r.stderr, r.returncode
    problems = []
    if rc != c["rc"]:
        problems.append(f"exit status {rc}, expected {c['rc']}")
    if rc < 0 or rc in (134, 139):
        problems.append("crashed")
    for e in c["expect"]:
        if not re.search(e, out):
            problems.append(f"missing /{e}/")
    for e in c["forbid"]:
        if re.search(e, out if isinstance(e, str) else out) if isinstance(e, str) else e.search(out):
            problems.append(f"forbidden /{e if isinstance(e, str) else e.pattern}/ found")
    if c["check"]:
        ok, why = c["check"](state)
        if not ok:
            problems.append(why)
    os.chmod(d, 0o755)
    status = "ok  " if not problems else "FAIL"
    print(f"{status} {c['id']:4s} {c['category']:10s} {c['what']} ({time.time() - t0:.1f} s)")
    if problems:
        failures.append(c["id"])
        for pr in problems:
            print(f"       {pr}")
        print("       output:\n" + "\n".join("         " + line for line in out.strip().splitlines()[-12:]))
    os.chdir(work)

print(f"{len(cases) - len(failures) if not only else len(only) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
