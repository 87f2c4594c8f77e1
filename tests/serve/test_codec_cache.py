"""Upload decoding (hostile bytes), mask encodings, and the memory-bounded LRU."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilesam.serve.cache import CachedImage, EmbeddingCache, content_id
from mobilesam.serve.codec import decode_image, mask_bbox, mask_to_png, mask_to_rle
from mobilesam.serve.errors import ServeError


def _encoded(fmt: str) -> bytes:
    rgb = np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_decodes_formats(fmt):
    rgb = decode_image(SAMPLES[fmt], max_pixels=10_000)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8


def test_refuses_other_formats():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PDF")
    with pytest.raises(ServeError) as e:
        decode_image(buf.getvalue(), max_pixels=10_000)
    assert e.value.status == 400


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
        rgb = decode_image(data, max_pixels=100_000)
    except ServeError as e:
        assert 400 <= e.status < 500 and e.message
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] * rgb.shape[1] <= 100_000


@given(st.binary(max_size=300))
def test_random_bytes_give_a_4xx(data):
    with pytest.raises(ServeError) as e:
        decode_image(data, max_pixels=100_000)
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


def _entry(key: str, side: int) -> CachedImage:
    return CachedImage(
        image_id=key,
        image=np.zeros((side, side, 3), np.uint8),
        features=torch.zeros(1, 4, 2, 2),
        original_size=(side, side),
        input_size=(side, side),
        encode_ms=0.0,
    )


def test_lru_is_bounded_by_bytes():
    one = _entry("a", 10).nbytes  # 300 + 64
    cache = EmbeddingCache(max_bytes=2 * one)
    cache.put(_entry("a", 10))
    cache.put(_entry("b", 10))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put(_entry("c", 10))  # evicts "b", the least recently used
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.stats()["bytes"] == 2 * one and cache.stats()["evictions"] == 1
    cache.put(_entry("big", 40))  # larger than the whole budget: kept alone
    assert len(cache) == 1 and "big" in cache
    assert cache.remove("big") and not cache.remove("big")
    assert cache.stats()["bytes"] == 0


def test_put_keeps_the_existing_entry():
    cache = EmbeddingCache(max_bytes=10**6)
    first = cache.put(_entry("a", 10))
    assert cache.put(_entry("a", 10)) is first
    assert cache.stats()["bytes"] == first.nbytes


def test_content_id_depends_on_pixels_and_shape():
    a = np.zeros((4, 6, 3), np.uint8)
    assert content_id(a) == content_id(a.copy())
    assert content_id(a) != content_id(np.zeros((6, 4, 3), np.uint8))
    b = a.copy()
    b[0, 0, 0] = 1
    assert content_id(a) != content_id(b)
