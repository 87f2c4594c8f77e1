"""The inference backends the benchmark compares, behind one small interface.

Every backend answers the same four questions on the same image and prompts:
encode a prepared input, decode one point, decode a batch of single points,
and run ``set_image`` + ``predict`` end to end. Outputs are numpy so the
suite can compare them with the exact torch path. The two torch backends are
the public predictors (``SamPredictor``, ``FastPredictor`` with its embedding
cache); every other one is a registered backend (:mod:`mobilesam.backends`)
in the predictor core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]

BACKENDS = ("torch-exact", "torch-optimised", "ort-fp32", "ort-int8")
TORCH_PREDICTORS = ("torch-exact", "torch-optimised")


@dataclass
class Backend:
    """Callables for one backend; ``prepare`` runs once per image, untimed."""

    name: str
    description: str
    fp32: bool
    prepare: Callable[[np.ndarray], Any]
    encode: Callable[[Any], np.ndarray]
    set_image: Callable[[np.ndarray], None]
    predict_one: Callable[[np.ndarray], Prediction]
    predict_many: Callable[[np.ndarray], Prediction]
    core: Any  # the PredictorCore (or predictor) behind it, for the fidelity evaluation
    precision: str = "fp32"
    clear_cache: Callable[[], None] = lambda: None


def torch_backend(model: Any, optimised: bool) -> Backend:
    """SamPredictor on the model as is, or FastPredictor (optimised copy + cache)."""
    import torch

    from ..inference.fast_predictor import FastPredictor
    from ..inference.predictor import SamPredictor

    pred = FastPredictor(model) if optimised else SamPredictor(model)
    sam = pred.model

    def prepare(image: np.ndarray) -> torch.Tensor:
        resized = pred.transform.apply_image(image)
        t = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
        return sam.preprocess(t)

    def encode(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return sam.image_encoder(x).numpy()

    def predict_one(point: np.ndarray) -> Prediction:
        return pred.predict(point_coords=point[None], point_labels=np.array([1]))

    def predict_many(points: np.ndarray) -> Prediction:
        # A batch of single-point prompt sets, as the automatic mask generator sends them.
        assert pred.original_size is not None
        coords = pred.transform.apply_coords(points[:, None, :], pred.original_size)
        ct = torch.as_tensor(coords, dtype=torch.float)
        lt = torch.ones(ct.shape[:2], dtype=torch.int)
        with torch.inference_mode():
            masks, iou, low = pred.predict_torch(ct, lt)
        return masks.numpy(), iou.numpy(), low.numpy()

    if optimised:
        name, desc = "torch-optimised", "BN folded into convs, SDPA attention, embedding cache"

        def clear() -> None:
            pred.cache = type(pred.cache)(pred.cache.max_items)
    else:
        name, desc = "torch-exact", "SamPredictor, eager float32 (the reference path)"

        def clear() -> None:
            return None

    return Backend(
        name=name,
        description=desc,
        fp32=True,
        prepare=prepare,
        encode=encode,
        set_image=pred.set_image,
        predict_one=predict_one,
        predict_many=predict_many,
        core=pred,
        clear_cache=clear,
    )


def registry_backend(
    name: str, model: Any, artifacts: str | Path, num_threads: int | None = None
) -> Backend:
    """Registered backend ``name`` in the predictor core; makes missing artifacts first.

    Raises ``ValueError`` when this machine cannot run it (the check's reason).
    """
    from ..backends import LoadContext, get_backend
    from ..backends.fidelity import _numpy
    from ..inference.core import PredictorCore

    spec = get_backend(name)
    reason = spec.check()
    if reason is not None:
        raise ValueError(f"backend {name!r} cannot run here: {reason}")
    ctx = LoadContext(artifacts=Path(artifacts), model=lambda: model, threads=num_threads)
    if spec.convert is not None and not all((ctx.artifacts / a).is_file() for a in spec.artifacts):
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        spec.convert(ctx)
    enc, dec = spec.load(ctx)
    core = PredictorCore(enc, dec)

    def prepare(image: np.ndarray) -> np.ndarray:
        # the resized image: the encoder's own input preparation (normalise, pad) is timed
        return core.prepare_image(image)[0]

    def encode(resized: np.ndarray) -> np.ndarray:
        return _numpy(enc.encode([resized]))

    def predict_one(point: np.ndarray) -> Prediction:
        return core.predict(point_coords=point[None], point_labels=np.array([1]))

    def predict_many(points: np.ndarray) -> Prediction:
        return core.predict_batch([points[:, None, :]], [np.ones((len(points), 1))])[0]

    return Backend(
        name=name,
        description=spec.description,
        fp32=spec.precision == "fp32",
        prepare=prepare,
        encode=encode,
        set_image=core.set_image,
        predict_one=predict_one,
        predict_many=predict_many,
        core=core,
        precision=spec.precision,
    )
