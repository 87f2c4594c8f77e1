"""The bench's use of the backend registry: names, skips with reasons, the fidelity table."""

from __future__ import annotations

import pytest

from mobilesam.backends import get_backend, list_backends
from mobilesam.bench.report import _faithfulness_table
from mobilesam.bench.suite import resolve_backends


def test_all_means_every_registered_backend_runnable_here():
    names, skipped = resolve_backends(("all",))
    assert set(names) | set(skipped) == set(list_backends())
    assert names[0] == "torch-exact"
    for name, reason in skipped.items():
        assert reason == get_backend(name).check() and reason


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'gpu'.*or all"):
        resolve_backends(("torch-exact", "gpu"))


def test_faithfulness_table_rows_and_skips():
    f = {
        "mask_iou_mean": 0.956,
        "mask_iou_min": 0.90,
        "low_res_max_abs": 0.03,
        "embedding_max_abs": 0.5,
        "iou_pred_max_abs": 0.004,
        "masks": 200,
        "faithful": False,
        "within_parity": False,
    }
    model = {
        "backends": {"ort-int8-static": {"precision": "int8", "faithfulness": f}},
        "skipped": {"openvino-bf16": "CPU has no native bf16"},
    }
    text = "\n".join(_faithfulness_table(model))
    assert "200 masks" in text
    assert "| ort-int8-static | int8 | 0.9560 | 0.9000 | 0.03 | 0.5 | NO | no |" in text
    assert "Skipped openvino-bf16: CPU has no native bf16" in text
