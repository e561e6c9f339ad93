#!/usr/bin/env python3
"""The shipped models' documented accuracy and calibration figures, reproduced by the documented
commands and compared with models/expected_figures.yaml (issue #15: a regression fails CI).

Runs every check of models/expected_figures.yaml whose `group` is GROUP: its `run` commands
(cubeflow sub-commands; {work}, {models}, {source} and {data} -- CUBEFLOW_DATA_DIR or shared/data
beside the clone -- are substituted), then compares the JSON
they wrote with `expect` ([value, tolerance] per key). Prints a measured-versus-expected table:
after retraining a model, run the group, copy the measured values into the YAML and the docs.

usage: check_shipped_figures.py CUBEFLOW SOURCE_DIR WORK_DIR GROUP
"""
import json
import os
import subprocess
import sys

from cfskip import skip

try:
    import yaml  # noqa: F401
except ImportError as e:  # pragma: no cover
    skip(f"needs PyYAML (python3-yaml) in /usr/bin/python3 ({e})")
import expected_figures  # noqa: E402  (beside this script)

cf, src, work, group = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]), sys.argv[4]
os.makedirs(work, exist_ok=True)
spec = expected_figures.load(src)
checks = {k: v for k, v in spec["checks"].items() if v.get("group") == group}
if not checks:
    sys.exit(f"FAIL: no check of group {group!r} in models/expected_figures.yaml")
data = os.environ.get("CUBEFLOW_DATA_DIR") or os.path.join(src, "..", "shared", "data")
subst = {"work": work, "models": os.path.join(src, "models"), "source": src, "data": data}
if any(c.get("needs_data") for c in checks.values()) and not os.path.isdir(os.path.join(data, "ssp")):
    skip(f"group {group} needs the SSP libraries of shared/data, not found at {data} (set CUBEFLOW_DATA_DIR)")
done = set()
failures = []
for name, c in checks.items():
    print(f"== {name}: {c.get('doc', '')}\n   covers: {c.get('covers', '')}")
    for cmd in c["run"]:
        args = [str(a).format(**subst) for a in cmd]
        key = " ".join(args)
        if key in done:
            continue
        print("   cubeflow " + key, flush=True)
        r = subprocess.run([cf, *args], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-4000:], r.stderr[-4000:])
            sys.exit(f"FAIL: cubeflow {key} exited {r.returncode}")
        done.add(key)
    measured = json.load(open(str(c["json"]).format(**subst)))
    f, table = expected_figures.compare(c["expect"], measured, name)
    print("\n".join(table))
    failures += f
if failures:
    print("FAIL (if a model was retrained on purpose, update models/expected_figures.yaml and the docs it names):\n  "
          + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: {len(checks)} check(s) of group {group}")
