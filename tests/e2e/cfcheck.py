"""Shared pieces of the end-to-end checks: running the cubeflow binary (a failing run stops the
check with its output) and collecting named checks (each printed ok/FAIL; `finish` exits non-zero
when any failed)."""
import subprocess
import sys


def run_cubeflow(cf, *args, env=None):
    """`cf ARGS...`; on a non-zero exit, prints the tail of its output and stops the check."""
    r = subprocess.run([cf, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stdout[-6000:], r.stderr[-6000:])
        sys.exit(f"FAIL: cubeflow {' '.join(args)} exited {r.returncode}")
    return r


class Checks:
    """Named assertions that do not stop at the first failure."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, msg):
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            self.failures.append(msg)

    def finish(self):
        if self.failures:
            sys.exit(f"{len(self.failures)} check(s) failed")
