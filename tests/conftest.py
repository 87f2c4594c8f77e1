"""Shared fixtures: the shared folder beside the checkout, generated weights, photos."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mobilesam.io import file_lock

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARITY = SHARED / "parity"

# The suite runs in parallel processes (pytest-xdist, ``-n auto`` in pyproject.toml): much of
# it is single-threaded Python around small models, so two processes on two cores finish far
# sooner than one. Each process gets an equal share of the cores for torch and OpenMP
# (inherited by the subprocesses tests start), so they do not oversubscribe the machine.
MAX_WORKERS = 4  # each process holds its own models and exported graphs (~1.5 GB)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(MAX_WORKERS, _cores()))


if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores() // _workers))


def _run_root(tmp_path_factory) -> Path:
    """A folder shared by every process of this test run (the workers' temp folders' parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _weights_module():
    if not (PARITY / "weights.py").is_file():
        pytest.skip(f"{PARITY} not found (the shared folder beside the checkout)")
    if str(PARITY) not in sys.path:
        sys.path.insert(0, str(PARITY))
    import weights  # the deterministic weight generator beside the parity fixtures

    return weights


@pytest.fixture(scope="session", autouse=True)
def _private_weights_cache(tmp_path_factory):
    """Tests never read or write the user's weights cache (``$MOBILESAM_HOME``): backend
    choices and converted artifacts of the test models go to a folder of this test run."""
    old = os.environ.get("MOBILESAM_HOME")
    old_web = os.environ.get("MOBILESAM_WEB_RUNTIME")
    if old_web is None:  # what .ci/run installed for the browser test stays findable
        home = Path(old) if old else Path.home() / ".cache" / "mobilesam"
        os.environ["MOBILESAM_WEB_RUNTIME"] = str(home / "web-runtime")
    # One cache for all of this run's processes: a test model's backend choice is measured and
    # its artifacts converted once (the cache's own locks make concurrent first loads safe).
    home = _run_root(tmp_path_factory) / "mobilesam_home"
    home.mkdir(exist_ok=True)
    os.environ["MOBILESAM_HOME"] = str(home)
    yield
    for name, value in (("MOBILESAM_HOME", old), ("MOBILESAM_WEB_RUNTIME", old_web)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")
    return SHARED


@pytest.fixture(scope="session")
def generated_checkpoint(tmp_path_factory):
    """Factory: model type -> path of a ``.pt`` with deterministic generated weights."""
    import torch

    cache: dict[str, Path] = {}

    def make(model_type: str = "vit_t", seed: int = 0) -> Path:
        key = f"{model_type}_{seed}"
        if key not in cache:
            w = _weights_module()
            sd = w.generate_state_dict(w.load_keys(model_type), seed)
            path = tmp_path_factory.mktemp("weights") / f"{key}.pt"
            torch.save(sd, path)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def vit_t_model(generated_checkpoint):
    """MobileSAM with the parity weights (seed 0), eval mode. Do not modify it."""
    from mobilesam import sam_model_registry

    return sam_model_registry["vit_t"](checkpoint=generated_checkpoint("vit_t"))


@pytest.fixture(scope="session")
def small_model():
    """A random-weight vit_t at 256-pixel input: fast, for API-level tests."""
    import torch

    from mobilesam import build_model

    torch.manual_seed(0)
    return build_model("vit_t", image_size=256)


@pytest.fixture(scope="session")
def dog_image(shared_dir) -> np.ndarray:
    with np.load(shared_dir / "images" / "dog.rgb.npz") as z:
        return z["rgb"]


@pytest.fixture(scope="session")
def truck_image(shared_dir) -> np.ndarray:
    with np.load(shared_dir / "images" / "truck.rgb.npz") as z:
        return z["rgb"]


@pytest.fixture(scope="session")
def small_onnx_dir(small_model, tmp_path_factory):
    """``small_model`` exported to ONNX (fp32 + int8, validated); shared by export/runtime tests."""
    from mobilesam.export.onnx import export_onnx

    root = _run_root(tmp_path_factory)
    out = root / "onnx_small"
    with file_lock(root / "onnx_small.lock"):  # one export for all of this run's processes
        if not (out / "complete").is_file():
            shutil.rmtree(out, ignore_errors=True)
            export_onnx(small_model, out, quantize="int8", single_mask_decoder=True)
            (out / "complete").touch()
    return out
