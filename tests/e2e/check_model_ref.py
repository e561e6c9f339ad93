"""`cubeflow validate` on the `model` parameter of inference.cnn: a bare name is a shipped model
and a mistyped one gets "no shipped model named ... (did you mean ...)"; anything else is a path
and a missing one gets "model file ... does not exist"; neither is ever looked up as the other.
Errors are reported at the value's file:line:col, including the node's own checks on the model."""
import os
import re
import subprocess
import sys
import tempfile

cubeflow, src = sys.argv[1:3]
demo = open(os.path.join(src, "pipelines", "demo.yaml")).read()
model_line = "    model: cnn_builtin\n"
assert demo.count(model_line) == 1, "pipelines/demo.yaml no longer has one 'model: cnn_builtin' line"
line = demo[: demo.index(model_line)].count("\n") + 1
col = len("    model: ") + 1
env = {k: v for k, v in os.environ.items() if k != "CUBEFLOW_MODEL_DIR"}


def validate(d, model, extra_env=None):
    p = os.path.join(d, "pipeline.yaml")
    open(p, "w").write(demo.replace(model_line, f"    model: {model}\n"))
    r = subprocess.run([cubeflow, "validate", p], capture_output=True, text=True, env={**env, **(extra_env or {})})
    return p, r


def expect_error(d, model, pattern, absent, extra_env=None):
    p, r = validate(d, model, extra_env)
    assert r.returncode != 0, f"model: {model}: validate passed:\n{r.stdout}{r.stderr}"
    e = rf"{re.escape(p)}:{line}:{col}: error: nodes\.cnn\.model: {pattern}"
    assert re.search(e, r.stderr), f"model: {model}: missing /{e}/ in:\n{r.stderr}"
    assert absent not in r.stderr, f"model: {model}: '{absent}' in:\n{r.stderr}"


def expect_ok(d, model, extra_env=None):
    _, r = validate(d, model, extra_env)
    assert r.returncode == 0, f"model: {model}: validate failed:\n{r.stderr}"


with tempfile.TemporaryDirectory() as d:
    expect_ok(d, "cnn_builtin")
    # A mistyped shipped name: a name error with the closest shipped model, never a file lookup.
    expect_error(d, "cnn_bultin", r"no shipped model named 'cnn_bultin' \(did you mean 'cnn_builtin'\?\)",
                 "does not exist")
    # A mistyped path: a file error (relative to the pipeline), never a shipped-model lookup, even
    # though a shipped model of that name exists.
    expect_error(d, "./cnn_builtin.pt", re.escape(f"model file '{d}/cnn_builtin.pt' does not exist"),
                 "shipped model named")
    expect_error(d, "models/cnn_builtin", re.escape(f"model file '{d}/models/cnn_builtin' does not exist"),
                 "shipped model named")
    # A model file beside the pipeline is a path: its bare name is not looked up there ...
    for ext in ("", ".yaml"):
        os.symlink(os.path.join(src, "models", "cnn_builtin.pt" + ext), os.path.join(d, "mine.pt" + ext))
    expect_error(d, "mine", "no shipped model named 'mine'", "does not exist")
    expect_ok(d, "./mine.pt")
    # ... unless CUBEFLOW_MODEL_DIR says that the directory holds shipped models.
    expect_ok(d, "mine", {"CUBEFLOW_MODEL_DIR": d})
    # The node's own check, before the run: an SBI model is not a CNN.
    expect_error(d, "sbi_builtin", r"'[^']*sbi_builtin\.pt' is an SBI model .*inference\.sbi", "does not exist")
print("model references ok")
