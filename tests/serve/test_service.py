"""The framework-free service: its cache entries and their byte budget."""

from __future__ import annotations

import numpy as np
import torch

from mobilesam.inference.cache import EmbeddingCache, ImageEmbedding
from mobilesam.serve.service import CachedImage


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
