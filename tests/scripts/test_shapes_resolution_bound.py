"""scripts/shapes_resolution_bound.py: full resolution is exact, coarser grids lose."""

from __future__ import annotations

import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shapes_resolution_bound.py"


def test_bound_is_exact_at_full_size_and_falls_with_the_grid(capsys):
    script = runpy.run_path(str(SCRIPT))  # the script's functions, without running main
    result = script["bound"](3, [16, 64, 256])
    assert result[256]["all"] == 1.0  # every pixel its own cell: nothing is lost
    assert 0.0 < result[16]["all"] < result[64]["all"] < 1.0
    assert set(result[64]) - {"all"} <= {"polygon", "ellipse", "star", "ring", "thin"}
    assert script["main"](["--scenes", "1", "--grids", "32"]) == 0
    assert capsys.readouterr().out.startswith("32x32: all ")
