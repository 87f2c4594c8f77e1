"""The shared parity check against the official implementation's outputs."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest


def _run(check, *args: str) -> tuple[bool, str]:
    proc = subprocess.run(
        [sys.executable, str(check), *args], capture_output=True, text=True, timeout=900
    )
    lines = proc.stdout.strip().splitlines()
    ok = proc.returncode == 0 and bool(lines) and lines[-1].startswith("parity:")
    ok = ok and not any(ln.startswith("FAIL") for ln in lines)
    return ok, "\n".join(lines[-30:]) + proc.stderr[-2000:]


@pytest.mark.slow
def test_shared_parity_check_passes(shared_dir):
    check = shared_dir / "parity" / "check.py"
    if not check.is_file():
        pytest.skip("parity check not present")
    ok, out = _run(check)
    if not ok:
        # Once in many runs the check has failed and then passed unchanged; a second
        # run tells a flake (reported as a warning, with the first output) from a
        # regression (fails both times).
        ok, again = _run(check)
        assert ok, out + "\n--- second run ---\n" + again
        warnings.warn("parity check failed once, passed on a second run:\n" + out, stacklevel=1)
