"""The framework-free service: cache entries and their byte budget, options, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mobilesam.inference.cache import EmbeddingCache, ImageEmbedding
from mobilesam.serve.errors import ServeError
from mobilesam.serve.everything import EVERYTHING_DEFAULTS, everything_options
from mobilesam.serve.service import CachedImage, SegmentationService


@pytest.fixture(scope="module")
def image(dog_image) -> np.ndarray:
    return np.ascontiguousarray(dog_image[::2, ::2])


def _entry(key: str, side: int) -> CachedImage:
    embedding = ImageEmbedding(torch.zeros(1, 4, 2, 2), (side, side), (side, side))
    return CachedImage(key, np.zeros((side, side, 3), np.uint8), embedding, encode_ms=0.0)


def test_entry_counts_pixels_and_embedding():
    assert _entry("a", 10).nbytes == 10 * 10 * 3 + 16 * 4


def test_lru_of_entries_is_bounded_by_bytes():
    one = _entry("a", 10).nbytes
    cache: EmbeddingCache[CachedImage] = EmbeddingCache(max_bytes=2 * one)
    cache.put("a", _entry("a", 10))
    cache.put("b", _entry("b", 10))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", _entry("c", 10))  # evicts "b", the least recently used
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.stats()["bytes"] == 2 * one and cache.stats()["evictions"] == 1
    cache.put("big", _entry("big", 40))  # larger than the whole budget: kept alone
    assert len(cache) == 1 and "big" in cache
    assert cache.remove("big") and not cache.remove("big")
    assert cache.stats()["bytes"] == 0


def test_put_keeps_the_existing_entry():
    cache: EmbeddingCache[CachedImage] = EmbeddingCache(max_bytes=10**6)
    first = cache.put("a", _entry("a", 10))
    assert cache.put("a", _entry("a", 10)) is first
    assert cache.stats()["bytes"] == first.nbytes


def test_everything_options_fill_defaults_and_types():
    opts = everything_options({"points_per_side": 4.0, "box_nms_thresh": 1}, max_points_per_side=8)
    assert list(opts) == list(EVERYTHING_DEFAULTS)
    assert opts["points_per_side"] == 4 and type(opts["points_per_side"]) is int
    assert opts["box_nms_thresh"] == 1.0 and type(opts["box_nms_thresh"]) is float
    assert opts["pred_iou_thresh"] == EVERYTHING_DEFAULTS["pred_iou_thresh"]


@pytest.mark.parametrize(
    "options, words",
    [({"crop_n_layers": 1}, "unknown options: crop_n_layers"), ({"points_per_side": 9}, "1-8")],
)
def test_everything_options_refused(options, words):
    with pytest.raises(ServeError) as e:
        everything_options(options, max_points_per_side=8)
    assert (e.value.status, e.value.code) == (400, "bad_options") and words in e.value.message


def test_concurrent_requests_match_sequential(small_model, image):
    """Threads sharing one service get the same masks as one thread alone."""
    service = SegmentationService(small_model)
    images = [image[:128, :160].copy(), image[100:228, 200:360].copy()]
    ids = [service.add_array(im)[0].image_id for im in images]
    prompts = [[[20 + 7 * k, 30 + 5 * k]] for k in range(6)]
    want = {
        (i, k): service.predict(ids[i], points=p, labels=[1]).masks
        for i in range(2)
        for k, p in enumerate(prompts)
    }
    results: dict = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for k, p in enumerate(prompts):
                i = (t + k) % 2
                results[(t, i, k)] = service.predict(ids[i], points=p, labels=[1]).masks
            service.add_array(images[t % 2])  # cached: no second encoding
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(results) == 36
    for (_, i, k), masks in results.items():
        np.testing.assert_array_equal(masks, want[(i, k)])
    assert service.cache.stats()["entries"] == 2


def test_decoder_state_is_computed_once_per_image_and_bounded(monkeypatch, small_model, image):
    from mobilesam.inference.fast_predictor import FastTorchDecoder
    from mobilesam.serve import ServeLimits

    calls: list[int] = []
    real = FastTorchDecoder.prepare

    def counting(self, features):
        calls.append(1)
        return real(self, features)

    monkeypatch.setattr(FastTorchDecoder, "prepare", counting)
    service = SegmentationService(small_model, ServeLimits(prompt_states=2))
    ids = [service.add_array(np.ascontiguousarray(image[k:]))[0].image_id for k in range(3)]
    for _ in range(3):
        service.predict(ids[0], points=[[50, 60]], labels=[1])
    assert len(calls) == 1  # prompts on one image: its state computed once
    service.predict(ids[1], points=[[50, 60]], labels=[1])
    service.predict(ids[2], points=[[50, 60]], labels=[1])  # evicts ids[0]'s state (LRU of 2)
    assert len(calls) == 3
    service.predict(ids[0], points=[[50, 60]], labels=[1])
    assert len(calls) == 4
    service.remove(ids[2])
    assert ids[2] not in service._prompt_states


def test_unknown_decoder_is_refused(small_model):
    with pytest.raises(ValueError, match="decoder must be"):
        SegmentationService(small_model, decoder="bf16")
