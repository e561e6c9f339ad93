"""models/expected_figures.yaml: the figures the shipped models are held to, and how to check a
measurement against them (used by check_shipped_figures.py, check_demo.py, check_mock_skill.py)."""
import os

import yaml


def load(source_dir):
    with open(os.path.join(source_dir, "models", "expected_figures.yaml")) as f:
        return yaml.safe_load(f)


def lookup(obj, path):
    """`a.b.0.c` or `ablation.replaced=band F275W.lw_logage_delta_scatter`: dicts by key, lists by
    index or by the element whose field equals a value."""
    for part in path.split("."):
        if isinstance(obj, list):
            if "=" in part:
                k, v = part.split("=", 1)
                hits = [e for e in obj if str(e.get(k)) == v]
                if not hits:
                    raise KeyError(f"no element with {k} = {v!r} in {path}")
                obj = hits[0]
            else:
                obj = obj[int(part)]
        else:
            if part not in obj:
                raise KeyError(f"{part!r} missing (looking up {path})")
            obj = obj[part]
    return obj


def compare(expect, measured, label):
    """Failures of `measured` (a JSON object) against `expect` ({path: [value, tolerance] or a
    bool/str that must match exactly}); and the lines of a measured-versus-expected table."""
    failures, table = [], []
    for path, want in expect.items():
        try:
            got = lookup(measured, path)
        except (KeyError, IndexError, ValueError) as e:
            failures.append(f"{label}: {e}")
            continue
        if isinstance(want, list):
            value, tol = want
            ok = got is not None and abs(got - value) <= tol
            table.append(f"  {path}: measured {got if got is None else round(got, 4)}, expected {value} +- {tol}"
                         f"{'' if ok else '   <-- OUT OF TOLERANCE'}")
        else:
            ok = got == want
            table.append(f"  {path}: measured {got}, expected {want}{'' if ok else '   <-- DIFFERS'}")
        if not ok:
            failures.append(f"{label}: {path} = {got}, expected {want}")
    return failures, table
