#!/usr/bin/env python3
"""Issue #15: a deliberately broken model fails the end-to-end checks, and the shipped SBI model's
figures on a mock galaxy are guarded.

On the check_demo galaxy (`cubeflow simulate galaxy --nx 40 --ny 40 --seed 12`, spiral layout):

1. A constant CNN: a TorchScript model (python3-torch) whose output ignores its input and is the
   galaxy's own median history (per-bin median mass fraction and [Z/H] of the truth), i.e. the
   best-informed constant map. Through pipelines/demo.yaml, `cubeflow compare` must exit 1 with
   R^2 < 0.8 for every quantity, and the figures recorded for the shipped model in
   models/expected_figures.yaml (what check_demo.py asserts) must not match.
2. A prior sampler: an SBI model trained by `cubeflow train` for one batch of each stage with a
   learning rate of 1e-9, so that its flow is still the identity it starts as: every posterior is
   the Gaussian approximation of the training prior, whatever the spectrum. Through
   pipelines/demo_sbi.yaml, `cubeflow compare` must exit 1 with R^2(MH) < 0.8.
3. The shipped sbi_builtin through pipelines/demo_sbi.yaml: MH figures (offset, scatter, R^2,
   Spearman, 68 % interval coverage) as models/expected_figures.yaml records (sbi_builtin_demo_mock).

usage: check_mock_skill.py CUBEFLOW SOURCE_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

from cfskip import skip

try:
    import numpy as np
    from astropy.io import fits
    import yaml  # noqa: F401
except ImportError as e:  # pragma: no cover
    skip(f"needs astropy/numpy/PyYAML in /usr/bin/python3 ({e})")
if subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode != 0:
    skip("needs python3-torch (scripts/install_deps.sh) to write the constant TorchScript model")
import expected_figures  # noqa: E402  (beside this script)

cf, src, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
gal = os.path.join(work, "galaxy")
truth = os.path.join(gal, "truth.fits")
spec = expected_figures.load(src)["checks"]


def run(*args, expect_rc=0, env=None):
    r = subprocess.run([cf, *args], capture_output=True, text=True, env=env)
    if r.returncode != expect_rc:
        print(r.stdout[-6000:], r.stderr[-6000:])
        sys.exit(f"FAIL: cubeflow {' '.join(args)} exited {r.returncode}, expected {expect_rc}")
    return r


def compare(maps, name):
    js = os.path.join(work, name + ".json")
    r = subprocess.run([cf, "compare", maps, truth, "--json", js], capture_output=True, text=True)
    print(f"== cubeflow compare ({name}): exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.returncode, json.load(open(js)) if r.returncode in (0, 1) else None


failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


run("simulate", "galaxy", "--out", gal, "--nx", "40", "--ny", "40", "--seed", "12")
env = dict(os.environ, CUBEFLOW_DEMO_DIR=gal)

# 1. the constant CNN ------------------------------------------------------------------------
with fits.open(truth) as t:
    sfh, zhb = t["SFH"].data.astype(float), t["ZH_BINS"].data.astype(float)
ok = np.isfinite(sfh[0])
mf = np.median(sfh[:, ok], axis=1)
mf /= mf.sum()
zh = np.median(zhb[:, ok], axis=1)
const_pt = os.path.join(work, "constant_cnn.pt")
script = os.path.join(work, "constant_cnn.py")
with open(script, "w") as f:
    f.write(f"""import torch
class Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mf", torch.tensor({mf.tolist()}, dtype=torch.float32))
        self.register_buffer("zh", torch.tensor({zh.tolist()}, dtype=torch.float32))
    def forward(self, spectra, phot):
        b = spectra.shape[0]
        return self.mf.expand(b, 16).clone(), self.zh.expand(b, 16).clone()
torch.jit.save(torch.jit.script(Constant()), {const_pt!r})
""")
r = subprocess.run(["/usr/bin/python3", script], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
# metadata: the shipped model's (inputs, photometry standardisation, light-to-mass table), as TorchScript
meta = open(os.path.join(src, "models", "cnn_builtin.pt.yaml")).read()
assert "format: state_dict" in meta
open(const_pt + ".yaml", "w").write(meta.replace("format: state_dict", "format: torchscript", 1))
maps = os.path.join(work, "constant_maps.fits")
run("run", os.path.join(src, "pipelines", "demo.yaml"), "--set", f"cnn.model={const_pt}", "--set", f"out.path={maps}",
    env=env)
with fits.open(maps) as h:
    binid = h["BINID"].data
    lw = h["LW_LOGAGE"].data[binid >= 0]
check(np.ptp(lw) < 1e-5, f"the constant model's LW ages vary by {np.ptp(lw)}")
rc, acc = compare(maps, "constant_cnn")
check(rc == 1, f"constant CNN: cubeflow compare exited {rc}, expected 1")
for q in ("lw_logage", "mw_logage", "lw_zh", "mw_zh"):
    check(acc[q + "_r2"] is not None and acc[q + "_r2"] < 0.8, f"constant CNN: {q} R2 {acc[q + '_r2']}")
    check(not acc[q + "_pass"], f"constant CNN passes the {q} targets")
f, _ = expected_figures.compare(spec["cnn_builtin_demo_mock"]["expect"], acc, "constant CNN")
check(len(f) > 0, "the constant CNN matches the shipped model's recorded figures (check_demo would pass it)")

# 2. the prior sampler -----------------------------------------------------------------------
lib = os.path.join(work, "prior_lib.fits")
run("simulate", "library", "--n", "400", "--seed", "5", "--config",
    os.path.join(src, "models", "library_noisefree.yaml"), "--out", lib, "--quiet")
cfg = os.path.join(work, "prior_sampler.yaml")
with open(cfg, "w") as f:
    f.write("""kind: sbi
library: prior_lib.fits
output: prior_sampler.pt
augment_noise: {snr: [15, 20, 35, 50], phot_snr: 50}
epochs: 1
batches_per_epoch: 1
batch_size: 32
lr: 1.0e-9
flow_epochs: 1
flow_batches_per_epoch: 1
flow_batch_size: 32
flow_lr: 1.0e-9
eval_samples: 20
threads: 1
seed: 3
""")
run("train", cfg)
prior_pt = os.path.join(work, "prior_sampler.pt")
maps = os.path.join(work, "prior_maps.fits")
run("run", os.path.join(src, "pipelines", "demo_sbi.yaml"), "--set", f"sbi.model={prior_pt}", "--set",
    f"out.path={maps}", env=env)
rc, acc = compare(maps, "prior_sampler")
check(rc == 1, f"prior sampler: cubeflow compare exited {rc}, expected 1")
check(acc["mh_r2"] is None or acc["mh_r2"] < 0.8, f"prior sampler: MH R2 {acc['mh_r2']}")
check(not acc["mh_pass"], "the prior sampler passes the MH targets")

# 3. the shipped SBI -------------------------------------------------------------------------
entry = spec["sbi_builtin_demo_mock"]
maps = os.path.join(work, "sbi_maps.fits")
run("run", os.path.join(src, "pipelines", "demo_sbi.yaml"), "--set", f"out.path={maps}", env=env)
rc, acc = compare(maps, "sbi_builtin")
check(rc == entry["compare_exit"], f"sbi_builtin: cubeflow compare exited {rc}, expected {entry['compare_exit']}")
f, table = expected_figures.compare(entry["expect"], acc, "sbi_builtin_demo_mock")
print("measured versus models/expected_figures.yaml:\n" + "\n".join(table))
failures += f

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("OK: the constant CNN and the prior sampler fail; the shipped SBI's figures hold")
