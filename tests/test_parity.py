"""The shared parity check against the official implementation's outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

# Failing runs are kept here rather than under pytest's tmp_path: pytest keeps only its
# last three session folders, and several sessions (other checkouts) share them.
LOG_DIR = Path(tempfile.gettempdir()) / "mobilesam-parity-failures"
_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "ONEDNN_", "DNNL_", "TORCH", "PYTHON", "LD_")


def _run(check: Path, *args: str) -> tuple[bool, str, str]:
    """Run the check once (``-v``: tracebacks of errors); return (passed, whole output with a
    header saying when, where and with which thread settings it ran, its last lines)."""
    cmd = [sys.executable, str(check), "-v", *args]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    ok = proc.returncode == 0 and bool(lines) and lines[-1].startswith("parity:")
    ok = ok and not any(ln.startswith("FAIL") for ln in lines)
    env = "".join(
        f"#   {k}={v}\n" for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)
    )
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    header = (
        f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t0))}, {time.time() - t0:.0f}s, "
        f"exit status {proc.returncode}, load average {load}\n"
        f"# command: {' '.join(cmd)}\n# cwd: {os.getcwd()}\n# environment (selected):\n{env}"
    )
    whole = f"{header}--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
    return ok, whole, "\n".join(lines[-30:]) + "\n" + proc.stderr[-2000:]


def _keep(output: str, tag: str) -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    path = LOG_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{tag}.txt"
    path.write_text(output)
    return path


@pytest.mark.slow
def test_shared_parity_check_passes(shared_dir):
    check = shared_dir / "parity" / "check.py"
    if not check.is_file():
        pytest.skip("parity check not present")
    ok, out, tail = _run(check)
    if ok:
        return
    first = _keep(out, "run1")
    # The single retry stays only because the cause of a rare failure (seen twice, output
    # not kept, never reproduced since) is still unknown: a second run tells such a flake
    # (a warning naming the kept output) from a regression (fails both times). Drop the
    # retry once a kept output has shown the cause.
    ok, again, tail2 = _run(check)
    if not ok:
        second = _keep(again, "run2")
        pytest.fail(
            f"parity check failed twice; whole outputs in {first} and {second}\n"
            f"{tail}\n--- second run ---\n{tail2}"
        )
    warnings.warn(
        f"parity check failed once, passed on a second run; whole output of the failing run "
        f"in {first}\n{tail}",
        stacklevel=1,
    )
