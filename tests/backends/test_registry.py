"""The backend registry: built-ins, unique names, honest checks, loads that plug into the core."""

from __future__ import annotations

import numpy as np
import pytest

from mobilesam.backends import BackendSpec, LoadContext, get_backend, list_backends
from mobilesam.backends.builtin import _needs as needs
from mobilesam.backends.registry import register_backend
from mobilesam.inference.core import PredictorCore


def test_builtins_and_unknown_names():
    names = list_backends()
    assert names[0] == "torch-exact" and get_backend("torch-exact").exact
    assert {"torch-optimised", "ort-fp32"} <= set(names)
    assert not get_backend("ort-fp32").needs_torch
    with pytest.raises(KeyError, match="registered: torch-exact"):
        get_backend("no-such-backend")


def test_a_name_is_registered_once():
    spec = get_backend("torch-exact")
    with pytest.raises(ValueError, match="already registered"):
        register_backend(spec)


def test_checks_say_why_not():
    missing = BackendSpec(
        name="t",
        description="",
        precision="fp32",
        needs_torch=False,
        check=lambda: needs("surely_not_a_module_xyz"),
        load=lambda ctx: (None, None),
    )
    assert "surely_not_a_module_xyz" in missing.check()
    assert get_backend("torch-exact").check() is None


def test_torch_backends_plug_into_the_core(small_model, tmp_path):
    ctx = LoadContext(artifacts=tmp_path, model=lambda: small_model)
    enc, dec = get_backend("torch-exact").load(ctx)
    core = PredictorCore(enc, dec)
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    core.set_image(img)
    masks, scores, low = core.predict(point_coords=[[40, 30]], point_labels=[1])
    from mobilesam import SamPredictor

    ref = SamPredictor(small_model)
    ref.set_image(img)
    rm, rs, rl = ref.predict(point_coords=[[40, 30]], point_labels=[1])
    np.testing.assert_array_equal(low, rl)
    np.testing.assert_array_equal(scores, rs)
