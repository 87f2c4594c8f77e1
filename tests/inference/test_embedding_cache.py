"""The one embedding cache: LRU order, byte and entry budgets, thread safety, content ids."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mobilesam.inference.cache import EmbeddingCache, ImageEmbedding, image_digest, nbytes_of


def test_lru_by_entries():
    cache = EmbeddingCache(max_items=2)
    for key in "abc":
        cache.put(key, np.zeros(4))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is not None
    cache.get("b")  # b is now the most recent: inserting d evicts c
    cache.put("d", np.zeros(4))
    assert "c" not in cache and "b" in cache and "d" in cache
    assert cache.stats()["evictions"] == 2


def test_byte_budget_and_oversized_newest_entry():
    cache = EmbeddingCache(max_bytes=100)
    cache.put("a", np.zeros(10, np.float32))  # 40 bytes
    cache.put("b", np.zeros(10, np.float32))  # 80
    cache.put("c", np.zeros(10, np.float32))  # 120 -> a goes
    assert "a" not in cache and cache.stats()["bytes"] == 80
    cache.put("big", np.zeros(1000, np.float32))  # alone over budget: kept, others go
    assert list(cache.stats().values())[:2] == [1, 4000] and "big" in cache
    assert cache.remove("big") and not cache.remove("big")
    assert cache.stats()["bytes"] == 0


def test_put_keeps_the_existing_value():
    cache = EmbeddingCache(max_items=4)
    first = np.ones(3)
    assert cache.put("k", first) is first
    assert cache.put("k", np.zeros(3)) is first
    assert cache.stats()["bytes"] == first.nbytes


def test_sizes_of_tensors_records_and_tuples():
    t = torch.zeros(2, 3, dtype=torch.float16)
    assert nbytes_of(t) == 12
    assert nbytes_of((t, np.zeros(2, np.int64), None)) == 28
    assert ImageEmbedding(t, (1, 1), (1, 1)).nbytes == 12


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(max_bytes=0)
    with pytest.raises(ValueError, match="max_items"):
        EmbeddingCache(max_items=0)


def test_concurrent_puts_and_gets_keep_the_books_straight():
    cache = EmbeddingCache(max_bytes=64 * 8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                key = f"{(seed * 7 + i) % 40}"
                if cache.get(key) is None:
                    cache.put(key, np.zeros(8))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = cache.stats()
    assert not errors
    assert stats["entries"] == len(cache) <= 8
    assert stats["bytes"] == 64 * stats["entries"]
    assert stats["hits"] + stats["misses"] == 4 * 300


def test_image_digest_is_content_and_shape():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert image_digest(a) == image_digest(a.copy())
    assert image_digest(a) == image_digest(np.asfortranarray(a))  # layout does not matter
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert image_digest(a) != image_digest(b)
    assert image_digest(a) != image_digest(a.reshape(8, 6, 3))
    assert len(image_digest(a)) == 32
