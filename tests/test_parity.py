"""The shared parity check against the official implementation's outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_shared_parity_check_passes(shared_dir):
    check = shared_dir / "parity" / "check.py"
    if not check.is_file():
        pytest.skip("parity check not present")
    proc = subprocess.run([sys.executable, str(check)], capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    failed = [ln for ln in lines if ln.startswith("FAIL")]
    assert proc.returncode == 0 and not failed, "\n".join(lines[-30:]) + proc.stderr[-2000:]
    assert lines[-1].startswith("parity:")
