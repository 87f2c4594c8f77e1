"""SamPredictor: input validation, conversions, eval mode, batches, consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilesam import SamPredictor, build_model


@pytest.fixture()
def predictor(small_model):
    p = SamPredictor(small_model)
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    p.set_image(img)
    return p


def test_predict_before_set_image_raises(small_model):
    p = SamPredictor(small_model)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(RuntimeError, match="set_image"):
        p.get_image_embedding()


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((10, 10, 2), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3, 1), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_images(small_model, image, match):
    with pytest.raises(ValueError, match=match):
        SamPredictor(small_model).set_image(image)


def test_bad_image_format(small_model):
    with pytest.raises(ValueError, match="image_format"):
        SamPredictor(small_model).set_image(np.zeros((8, 8, 3), np.uint8), image_format="HSV")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"point_coords": [[1, 2]]}, "together"),
        ({"point_coords": [[1, 2, 3]], "point_labels": [1]}, "Nx2"),
        ({"point_coords": [[1, 2]], "point_labels": [1, 0]}, "point_labels must have shape"),
        ({"point_coords": [[np.nan, 2]], "point_labels": [1]}, "NaN"),
        ({"point_coords": [[np.inf, 2]], "point_labels": [1]}, "NaN or infinite"),
        ({"point_coords": [[10**400, 2]], "point_labels": [1]}, "numeric"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, "1 \\(foreground\\)"),
        ({"point_coords": [[1, 2]], "point_labels": [0.5]}, "integers"),
        ({"box": [10, 10, 5, 20]}, "x1 >= x0"),
        ({"box": [10, 30, 20, 20]}, "y1 >= y0"),
        ({"box": [1, 2, 3]}, "shape"),
        ({"box": [[0, 0, 1, 1], [0, 0, 2, 2]]}, "shape"),
        ({"box": [0, 0, np.nan, 1]}, "NaN"),
        ({"mask_input": np.zeros((64, 64), np.float32)}, "1x64x64"),
        ({"mask_input": np.full((1, 64, 64), np.nan, np.float32)}, "NaN"),
    ],
)
def test_bad_prompts(predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)


def test_output_shapes_and_types(predictor):
    masks, scores, low = predictor.predict(point_coords=[[30, 40]], point_labels=[1])
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, 64, 64)
    masks, scores, low = predictor.predict(
        box=[10, 10, 90, 80], multimask_output=False, return_logits=True
    )
    assert masks.shape == (1, 120, 160) and masks.dtype == np.float32
    assert predictor.get_image_embedding().shape == (1, 256, 16, 16)


def test_predict_under_bf16_autocast_returns_float32(predictor):
    # numpy has no bfloat16: half-precision results must come back as SAM's float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks, scores, low = predictor.predict(
            point_coords=[[30, 40]], point_labels=[1], return_logits=True
        )
    assert masks.dtype == scores.dtype == low.dtype == np.float32
    assert masks.shape == (3, 120, 160) and np.isfinite(low).all()


def test_logits_and_masks_agree(predictor):
    logits, _, _ = predictor.predict(point_coords=[[50, 60]], point_labels=[1], return_logits=True)
    masks, _, _ = predictor.predict(point_coords=[[50, 60]], point_labels=[1])
    np.testing.assert_array_equal(masks, logits > 0.0)


def test_grayscale_and_rgba_are_converted(small_model):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (64, 80), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((64, 80, 1), 7, np.uint8)], axis=2)
    outs = []
    for img in (gray, gray[..., None], rgb, rgba):
        p = SamPredictor(small_model)
        p.set_image(img)
        outs.append(p.get_image_embedding())
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_bgr_equals_reversed_rgb(small_model):
    img = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a, b = SamPredictor(small_model), SamPredictor(small_model)
    a.set_image(img)
    b.set_image(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
    assert torch.equal(a.get_image_embedding(), b.get_image_embedding())


def test_predictor_forces_eval_mode(small_model):
    model = build_model("vit_t", image_size=256)
    model.load_state_dict(small_model.state_dict())
    model.train()
    p = SamPredictor(model)
    assert not model.training
    model.train()  # switched back by the user
    img = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    p.set_image(img)
    ref = SamPredictor(small_model)
    ref.set_image(img)
    assert torch.allclose(p.get_image_embedding(), ref.get_image_embedding())


def test_predict_equals_predict_torch_with_transformed_prompts(predictor):
    box = np.array([12.0, 15.0, 100.0, 90.0])
    pts = np.array([[40.0, 50.0]])
    m1, s1, l1 = predictor.predict(point_coords=pts, point_labels=[1], box=box)
    t = predictor.transform
    size = predictor.original_size
    m2, s2, l2 = predictor.predict_torch(
        torch.tensor(t.apply_coords(pts, size), dtype=torch.float)[None],
        torch.tensor([[1]]),
        torch.tensor(t.apply_boxes(box, size), dtype=torch.float),
    )
    np.testing.assert_array_equal(m1, m2[0].numpy())
    np.testing.assert_allclose(l1, l2[0].numpy(), atol=1e-5)


def test_batched_prompts_equal_single_calls(predictor):
    boxes = np.array([[5, 5, 60, 60], [30, 20, 150, 110], [0, 0, 159, 119]], dtype=float)
    ((masks, scores, low),) = predictor.predict_batch(box_batch=[boxes])
    assert masks.shape == (3, 3, 120, 160)
    for i, b in enumerate(boxes):
        m, s, lo = predictor.predict(box=b)
        np.testing.assert_allclose(scores[i], s, atol=1e-5)
        np.testing.assert_allclose(low[i], lo, atol=1e-4)
        assert (masks[i] != m).sum() <= 16


def test_image_batch_equals_one_by_one(small_model):
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((90, 120, 3), (200, 100, 3))]
    boxes = [
        np.array([[10, 10, 80, 70]], float),
        np.array([[5, 5, 50, 150], [0, 0, 99, 199]], float),
    ]
    pts = [np.array([[20.0, 30.0]]), None]
    labels = [np.array([1]), None]
    p = SamPredictor(small_model, encoder_batch_size=2)
    p.set_image_batch(imgs)
    assert p.get_image_embedding().shape[0] == 2
    with pytest.raises(RuntimeError, match="predict_batch"):
        p.predict(box=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="prompt sets"):
        p.predict_batch(
            point_coords_batch=[np.zeros((2, 1, 2)), None],
            point_labels_batch=[np.ones((2, 1)), None],
            box_batch=[boxes[0], None],
        )
    with pytest.raises(ValueError, match="entries"):
        p.predict_batch(box_batch=[boxes[0]])
    results = p.predict_batch(
        point_coords_batch=pts, point_labels_batch=labels, box_batch=boxes, multimask_output=False
    )
    single = SamPredictor(small_model)
    for i, (img, b, pc, pl, (masks, scores, low)) in enumerate(
        zip(imgs, boxes, pts, labels, results)
    ):
        single.set_image(img)
        batched_emb = p.get_image_embedding()[i : i + 1]
        assert torch.allclose(single.get_image_embedding(), batched_emb, atol=1e-5)
        assert masks.shape == (len(b), 1) + img.shape[:2]
        for k in range(len(b)):
            m, s, lo = single.predict(
                point_coords=pc, point_labels=pl, box=b[k], multimask_output=False
            )
            np.testing.assert_allclose(scores[k], s, atol=1e-4)
            np.testing.assert_allclose(low[k], lo, atol=1e-3)
            assert (masks[k] != m).sum() <= 16


def test_reset_image(predictor):
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(RuntimeError):
        predictor.predict(box=[0, 0, 10, 10])


def test_set_torch_image_checks_size(small_model):
    p = SamPredictor(small_model)
    with pytest.raises(ValueError, match="longest side"):
        p.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    with pytest.raises(ValueError, match="1x3xHxW"):
        p.set_torch_image(torch.zeros(3, 256, 256), (256, 256))


def test_too_thin_image_is_rejected(small_model):
    with pytest.raises(ValueError, match="too thin"):
        SamPredictor(small_model).set_image(np.zeros((1, 3000, 3), np.uint8))


def test_sam_forward_batched_api_matches_predictor(small_model):
    """segment-anything's Sam.forward(batched_input) gives the predictor's results."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    p = SamPredictor(small_model)
    p.set_image(img)
    boxes = np.array([[10, 10, 90, 80], [40, 30, 130, 95]], float)
    ((m_ref, s_ref, l_ref),) = p.predict_batch(box_batch=[boxes])
    t = p.transform
    image_t = torch.as_tensor(t.apply_image(img)).permute(2, 0, 1).contiguous()
    out = small_model(
        [
            {
                "image": image_t,
                "original_size": img.shape[:2],
                "boxes": torch.as_tensor(t.apply_boxes(boxes, img.shape[:2]), dtype=torch.float),
            }
        ],
        multimask_output=True,
    )[0]
    np.testing.assert_allclose(out["iou_predictions"].numpy(), s_ref, atol=1e-5)
    np.testing.assert_allclose(out["low_res_logits"].numpy(), l_ref, atol=1e-4)
    assert (out["masks"].numpy() != m_ref).sum() <= 16


def test_set_embedding_reuses_a_computed_embedding(predictor, small_model):
    other = SamPredictor(small_model)
    other.set_embedding(
        predictor.get_image_embedding(), [predictor.original_size], [predictor.input_size]
    )
    a = predictor.predict(point_coords=[[30, 40]], point_labels=[1])
    b = other.predict(point_coords=[[30, 40]], point_labels=[1])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="one original and input size"):
        other.set_embedding(predictor.get_image_embedding(), [], [])


def test_predictor_encodes_in_eval_mode_whatever_mode_the_model_is_in(small_model):
    """TinyViT has BatchNorm: the predictor must encode with running statistics."""
    model = build_model("vit_t", image_size=256)
    sd = small_model.state_dict()
    for k in sd:
        if k.endswith("running_mean"):
            sd[k] = torch.full_like(sd[k], 0.3)  # far from any batch's own statistics
    model.load_state_dict(sd)
    img = np.random.default_rng(2).integers(0, 256, (200, 256, 3), dtype=np.uint8)
    reference = SamPredictor(model.eval())
    reference.set_image(img)
    model.train()  # e.g. a training loop left it so
    predictor = SamPredictor(model)
    assert not model.training
    model.train()  # switched back after the predictor was made
    predictor.set_image(img)
    assert not model.training
    torch.testing.assert_close(
        predictor.get_image_embedding(), reference.get_image_embedding(), rtol=0, atol=0
    )
