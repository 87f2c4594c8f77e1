"""measure_fidelity on constructed cases: an identical backend, perturbed decoders."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mobilesam.backends.fidelity import (
    FAITHFUL_IOU_MEAN,
    eval_boxes,
    grid_points,
    measure_fidelity,
)
from mobilesam.inference.core import DecodeRequest
from mobilesam.inference.torch_backend import TorchDecoder, TorchEncoder


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from mobilesam.backends.fidelity import example_photos

    return np.ascontiguousarray(example_photos(1)[0][::4, ::4])


class BiasedDecoder(TorchDecoder):
    """The exact decoder with ``bias`` added to every logit; ``invert`` flips the masks."""

    def __init__(self, model: Any, bias: float = 0.0, invert: bool = False) -> None:
        super().__init__(model)
        self.bias, self.invert = bias, invert

    def decode(self, prepared: Any, request: DecodeRequest) -> Any:
        logits, iou, low = super().decode(prepared, request.replace(return_logits=True))
        masks = (logits + self.bias) > self.mask_threshold
        return (~masks if self.invert else masks), iou, low + self.bias


def test_prompts_lie_inside_the_image():
    pts = grid_points(30, 50, 8)
    assert pts.shape == (64, 1, 2)
    assert (pts[..., 0] > 0).all() and (pts[..., 0] < 50).all()
    assert (pts[..., 1] > 0).all() and (pts[..., 1] < 30).all()
    boxes = eval_boxes(30, 50)
    assert boxes.shape == (4, 4) and (boxes[:, 2] <= 50).all() and (boxes[:, 3] <= 30).all()


def test_an_identical_backend_is_exact(small_model, photo):
    ref = (TorchEncoder(small_model), TorchDecoder(small_model))
    same = (TorchEncoder(small_model), TorchDecoder(small_model))
    f = measure_fidelity(same, ref, [photo], grid=4)
    assert f.masks == 16 * 3 + 4 + 4
    assert (f.mask_iou_mean, f.mask_iou_min) == (1.0, 1.0)
    assert f.low_res_max_abs == 0.0 and f.embedding_max_abs == 0.0
    assert f.iou_pred_max_abs == 0.0
    assert f.faithful and f.within_parity


def test_a_logit_bias_is_measured_and_breaks_parity(small_model, photo):
    ref = (TorchEncoder(small_model), TorchDecoder(small_model))
    biased = (TorchEncoder(small_model), BiasedDecoder(small_model, bias=0.5))
    f = measure_fidelity(biased, ref, [photo], grid=4)
    # the refinement step feeds each path its own logits, so the difference can grow there
    assert f.low_res_max_abs >= 0.5 - 1e-6
    assert f.embedding_max_abs == 0.0
    assert not f.within_parity
    assert f.mask_iou_mean < 1.0


def test_a_broken_decoder_is_unfaithful(small_model, photo):
    ref = (TorchEncoder(small_model), TorchDecoder(small_model))
    broken = (TorchEncoder(small_model), BiasedDecoder(small_model, invert=True))
    f = measure_fidelity(broken, ref, [photo], grid=4)
    assert f.mask_iou_mean < FAITHFUL_IOU_MEAN and f.mask_iou_min < 0.5
    assert not f.faithful
    assert f.to_json()["faithful"] is False


def test_no_images_is_an_error(small_model):
    pair = (TorchEncoder(small_model), TorchDecoder(small_model))
    with pytest.raises(ValueError, match="at least one image"):
        measure_fidelity(pair, pair, [])


def _outputs(embedding: np.ndarray, low: np.ndarray) -> list[dict[str, Any]]:
    masks = low > 0
    scores = np.ones(low.shape[:2], np.float32)
    part = (masks, scores, low)
    return [{"embedding": embedding, "grid": part, "boxes": part, "refine": part}]


@pytest.mark.parametrize("scale, within", [(1.0, False), (3.7, True)])
def test_the_parity_tolerance_grows_with_the_outputs(scale, within):
    from mobilesam.backends.fidelity import PARITY_EMBEDDING, compare, parity_tolerance

    rng = np.random.default_rng(0)
    emb = rng.uniform(-1, 1, (1, 8, 4, 4)).astype(np.float32)
    emb[0, 0, 0, 0] = 1.0
    emb *= scale  # largest |value| = scale
    low = rng.uniform(-5, 5, (2, 3, 8, 8)).astype(np.float32)
    off = emb.copy()
    off[0, 1, 2, 3] += 3e-5  # a float32 rounding-sized difference, over the unscaled 1.3e-5
    f = compare(_outputs(off, low), _outputs(emb, low))
    assert f.embedding_max_abs == pytest.approx(3e-5, rel=0.1)
    assert f.faithful
    assert f.within_parity is within
    assert f.embedding_tolerance == pytest.approx(parity_tolerance(PARITY_EMBEDDING, 1.22, scale))
    assert f.embedding_tolerance >= PARITY_EMBEDDING  # never tighter than the fixtures' rule
