"""The predictor core with a stand-in backend: what every backend gets for free.

A backend is two small objects; these tests plug in a numpy stand-in that
records its inputs, and check that validation, the resize, the BGR rule, the
batch rules and the per-image preparation are the core's, not the backend's.
"""

from __future__ import annotations

import numpy as np
import pytest

from mobilesam.inference.core import PredictorCore


class RecordingEncoder:
    image_size = 64
    image_format = "RGB"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def encode(self, images):
        self.seen.extend(images)
        # A fake "embedding" that remembers each image's mean red value.
        return np.stack([np.full((2, 4, 4), im[..., 0].mean(), np.float32) for im in images])


class RecordingDecoder:
    mask_threshold = 0.0
    mask_input_size = 16

    def __init__(self) -> None:
        self.prepared_with: list[float] = []
        self.calls: list[dict] = []

    def prepare(self, features):
        self.prepared_with.append(float(features[0, 0, 0, 0]))
        return features

    def decode(self, prepared, r):
        self.calls.append(dict(coords=r.coords, labels=r.labels, boxes=r.boxes, mask=r.mask_input))
        b = r.num_sets
        c = 3 if r.multimask_output else 1
        masks = np.zeros((b, c, *r.original_size), bool)
        return masks, np.full((b, c), float(prepared[0, 0, 0, 0])), np.zeros((b, c, 16, 16))


@pytest.fixture()
def core():
    return PredictorCore(RecordingEncoder(), RecordingDecoder())


def test_prompts_reach_the_backend_validated_and_in_the_input_frame(core):
    img = np.zeros((32, 16, 3), np.uint8)  # longest side 32 -> resized to 64x32
    core.set_image(img)
    assert core.encoder.seen[0].shape == (64, 32, 3)
    assert (core.original_size, core.input_size) == ((32, 16), (64, 32))
    masks, scores, low = core.predict(
        point_coords=[[4, 8]], point_labels=[1], box=[0, 0, 8, 16], multimask_output=False
    )
    call = core.decoder.calls[-1]
    np.testing.assert_allclose(call["coords"], [[[8.0, 16.0]]])
    assert call["labels"].tolist() == [[1]]
    np.testing.assert_allclose(call["boxes"], [[0, 0, 16, 32]])
    assert masks.shape == (1, 32, 16) and scores.shape == (1,) and low.shape == (1, 16, 16)
    with pytest.raises(ValueError, match="NaN"):
        core.predict(point_coords=[[np.nan, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="1x16x16"):
        core.predict(box=[0, 0, 1, 1], mask_input=np.zeros((16, 16)))


def test_bgr_input_and_bgr_models(core):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    core.set_image(np.ascontiguousarray(rgb[..., ::-1]), image_format="BGR")
    assert core.encoder.seen[-1][..., 0].mean() == 200  # converted back to RGB
    core.encoder.image_format = "BGR"  # a network trained on BGR gets BGR
    core.set_image(rgb)
    assert core.encoder.seen[-1][..., 2].mean() == 200


def test_predicting_before_an_image_and_too_thin_images(core):
    with pytest.raises(RuntimeError, match="set_image"):
        core.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="too thin"):
        core.set_image(np.zeros((1, 500, 3), np.uint8))


def test_batches_prepare_each_image_once_per_switch(core):
    a = np.full((8, 8, 3), 10, np.uint8)
    b = np.full((8, 8, 3), 20, np.uint8)
    core.set_image_batch([a, b])
    with pytest.raises(RuntimeError, match="predict_batch"):
        core.predict(box=[0, 0, 1, 1])
    out = core.predict_batch(box_batch=[[[0, 0, 4, 4]], [[0, 0, 2, 2], [1, 1, 3, 3]]])
    assert [o[1][:, 0].tolist() for o in out] == [[10.0], [20.0, 20.0]]
    assert core.decoder.prepared_with == [10.0, 20.0]
    core.predict_batch(
        box_batch=[None, [[0, 0, 2, 2]]],
        point_coords_batch=[[[1, 1]], None],
        point_labels_batch=[[1], None],
    )
    assert core.decoder.prepared_with == [10.0, 20.0, 10.0, 20.0]
    with pytest.raises(ValueError, match="2 images are set"):
        core.predict_batch(box_batch=[[[0, 0, 1, 1]]])
    with pytest.raises(ValueError, match="different numbers of prompt sets"):
        core.predict_batch(
            box_batch=[[[0, 0, 1, 1]], None],
            point_coords_batch=[np.zeros((2, 1, 2)), None],
            point_labels_batch=[np.ones((2, 1)), None],
        )


def test_set_embedding_forgets_the_prepared_state(core):
    core.set_embedding(np.full((1, 2, 4, 4), 5.0, np.float32), (30, 60))
    assert core.input_size == (32, 64)  # computed from the original when not given
    core.predict(box=[0, 0, 10, 10])
    core.set_embedding(np.full((1, 2, 4, 4), 7.0, np.float32), [(30, 60)], [(32, 64)])
    core.predict(box=[0, 0, 10, 10])
    assert core.decoder.prepared_with == [5.0, 7.0]
    with pytest.raises(ValueError, match="one original and input size per image"):
        core.set_embedding(np.zeros((2, 2, 4, 4)), [(30, 60)])


def test_set_image_prepares_the_decoder_so_clicks_do_not(core):
    core.set_image(np.full((8, 8, 3), 30, np.uint8))
    assert core.decoder.prepared_with == [30.0]  # at set_image, before any click
    core.predict(point_coords=[[1, 1]], point_labels=[1])
    core.predict(point_coords=[[2, 2]], point_labels=[1])
    assert core.decoder.prepared_with == [30.0]  # and never again for this image
