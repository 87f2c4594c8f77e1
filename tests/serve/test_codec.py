"""Upload decoding (hostile bytes) and its HTTP errors; mask encodings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilesam.io import ImageReadError
from mobilesam.serve.codec import (
    UPLOAD_ERRORS,
    decode_mask_input,
    decode_upload,
    mask_bbox,
    mask_to_png,
    mask_to_rle,
)
from mobilesam.serve.errors import ServeError


def _encoded(fmt: str) -> bytes:
    rgb = np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_decodes_formats(fmt):
    rgb = decode_upload(SAMPLES[fmt], max_pixels=10_000)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8


def test_refuses_other_formats():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PDF")
    with pytest.raises(ServeError) as e:
        decode_upload(buf.getvalue(), max_pixels=10_000)
    assert (e.value.status, e.value.code) == (400, "not_an_image")


@pytest.mark.parametrize(
    "data, max_pixels, status, code",
    [
        (b"", 10_000, 400, "empty_upload"),
        (b"hello", 10_000, 400, "not_an_image"),
        (SAMPLES["PNG"][:200], 10_000, 400, "bad_image"),
        (SAMPLES["PNG"], 1_000, 413, "image_too_large"),
    ],
)
def test_read_errors_map_to_http_errors(data, max_pixels, status, code):
    """Each reason of mobilesam.io's decoder becomes the status and code the API documents."""
    with pytest.raises(ServeError) as e:
        decode_upload(data, max_pixels=max_pixels)
    assert (e.value.status, e.value.code) == (status, code)
    assert e.value.message


def test_every_mapped_reason_exists():
    reasons = {"not_found", "empty", "not_an_image", "bad_image", "too_many_pixels"}
    assert set(UPLOAD_ERRORS) <= reasons
    assert ImageReadError("x").reason == "bad_image"  # the default: a 400 bad_image


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.integers(0, 10**6),
)
def test_corrupted_files_give_a_4xx_or_an_image(fmt, flips, cut):
    """Bit flips and truncation anywhere: either a valid image or a ServeError 4xx."""
    data = bytearray(SAMPLES[fmt])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = bytes(data[: max(0, len(data) - cut % len(data))])
    try:
        rgb = decode_upload(data, max_pixels=100_000)
    except ServeError as e:
        assert 400 <= e.status < 500 and e.message
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] * rgb.shape[1] <= 100_000


@given(st.binary(max_size=300))
def test_random_bytes_give_a_4xx(data):
    with pytest.raises(ServeError) as e:
        decode_upload(data, max_pixels=100_000)
    assert 400 <= e.value.status < 500


def test_mask_encodings_round_trip():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    rle = mask_to_rle(mask)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    back = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(back.astype(bool), mask)
    png = np.asarray(Image.open(io.BytesIO(mask_to_png(mask))).convert("L"))
    np.testing.assert_array_equal(png > 127, mask)
    empty = np.zeros((4, 5), bool)
    assert mask_bbox(empty) == [0, 0, 0, 0]
    box = np.zeros((10, 12), bool)
    box[2:5, 3:9] = True
    assert mask_bbox(box) == [3, 2, 6, 3]


def test_mask_input_is_decoded_not_validated():
    import base64

    values = np.arange(16, dtype="<f4").reshape(1, 4, 4)
    b64 = base64.b64encode(values.tobytes()).decode()
    np.testing.assert_array_equal(decode_mask_input(b64, 4), values)
    as_lists = decode_mask_input([[1.0, 2.0]], 4)  # the wrong shape is the predictor's to refuse
    assert as_lists.dtype == np.float32 and as_lists.shape == (1, 2)
    for bad in (b64[:-8], "@@@@", [[1.0], [2.0, 3.0]], [["a"]], [10**400]):
        with pytest.raises(ServeError) as e:
            decode_mask_input(bad, 4)
        assert (e.value.status, e.value.code) == (400, "bad_prompt")
