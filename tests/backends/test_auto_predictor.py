"""Predictor.load: the automatic choice, remembered; forced backends; fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mobilesam import SamPredictor
from mobilesam.backends.predictor import Predictor
from mobilesam.loading import ModelLoadError

SMALL = {"image_size": 256}


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    p = Predictor.load(
        "vit_t",
        random_weights=True,
        root=root,
        overrides=SMALL,
        candidates=["torch-exact", "ort-fp32"],
        progress=False,
    )
    return root, p


def test_auto_measures_then_remembers(chosen):
    root, p = chosen
    names = [c["backend"] for c in p.choice["candidates"]]
    assert names == ["torch-exact", "ort-fp32"]
    by = {c["backend"]: c for c in p.choice["candidates"]}
    assert by["ort-fp32"]["faithful"] and by["ort-fp32"]["fidelity"]["mask_iou_mean"] >= 0.98
    assert p.backend in names
    again = Predictor.load("vit_t", random_weights=True, root=root, overrides=SMALL)
    assert again.backend == p.backend and again.choice == p.choice


def test_the_chosen_predictor_matches_the_exact_path(chosen):
    _, p = chosen
    img = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    p.set_image(img)
    ours = p.predict(point_coords=[[60, 40]], point_labels=[1])
    import torch

    from mobilesam.loading import load_model

    torch.manual_seed(0)
    exact = SamPredictor(load_model("vit_t", random_weights=True, **SMALL))
    exact.set_image(img)
    ref = exact.predict(point_coords=[[60, 40]], point_labels=[1])
    np.testing.assert_allclose(ours[2], ref[2], atol=1e-3)


def test_a_torch_free_choice_loads_without_torch(chosen, tmp_path):
    root, p = chosen
    store_choice = p.choice
    forced = {**store_choice, "backend": "ort-fp32"}
    choice_file = next(root.glob("vit_t-*/choice.json"))
    choice_file.write_text(json.dumps(forced))
    code = (
        "import sys\n"
        "from mobilesam.backends.predictor import Predictor\n"
        f"p = Predictor.load('vit_t', random_weights=True, root={str(root)!r}, overrides={SMALL})\n"
        "print(p.backend, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ort-fp32", "False"]
    (choice_file.parent / "encoder.onnx").write_bytes(b"broken")  # corrupt: rebuilt on load
    q = Predictor.load("vit_t", random_weights=True, root=root, overrides=SMALL)
    assert q.backend == "ort-fp32"
    assert (choice_file.parent / "encoder.onnx").stat().st_size > 1000


def test_forced_and_unknown_backends(chosen):
    root, _ = chosen
    p = Predictor.load(
        "vit_t", random_weights=True, root=root, overrides=SMALL, backend="torch-exact"
    )
    assert p.backend == "torch-exact" and p.choice is None
    with pytest.raises(ModelLoadError, match="unknown backend 'nope'"):
        Predictor.load("vit_t", random_weights=True, root=root, overrides=SMALL, backend="nope")
    with pytest.raises(ModelLoadError, match="unknown model"):
        Predictor.load("vit_q", random_weights=True, root=root)


def test_loads_starting_at_once_measure_once(tmp_path, monkeypatch):
    """Two first loads at the same time (threads here; processes alike: the lock is a file
    lock): one measures, the other waits for its choice instead of measuring again."""
    import threading

    from mobilesam.backends import select

    calls = []
    real = select.choose

    def counting_choose(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(select, "choose", counting_choose)
    loaded = []

    def load() -> None:
        p = Predictor.load(
            "vit_t", random_weights=True, root=tmp_path, overrides=SMALL,
            candidates=["torch-exact"], progress=False,
        )  # fmt: skip
        loaded.append(p.choice)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(calls) == 1 and len(loaded) == 2 and loaded[0] == loaded[1]
