"""A thread-safe LRU of encoded images, bounded by the memory its entries hold."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def content_id(rgb: np.ndarray) -> str:
    """Id of an image from its decoded pixels (SHA-256 of shape + RGB bytes, 32 hex digits).

    The same picture uploaded twice, even re-encoded losslessly, maps to one id.
    """
    h = hashlib.sha256()
    h.update(np.asarray(rgb.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()[:32]


@dataclass
class CachedImage:
    """One uploaded image and its embedding.

    image: HxWx3 uint8 RGB (kept for segment-everything).
    features: 1xCxhxw float32 embedding (C=256, h=w=image_size/16), on the model's device.
    original_size / input_size: (H, W) of the upload and of the resized encoder input.
    everything: segment-everything results by their parameters.
    """

    image_id: str
    image: np.ndarray
    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    encode_ms: float
    everything: dict[tuple, list[dict]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        feats = int(self.features.numel() * self.features.element_size())
        return int(self.image.nbytes) + feats


class EmbeddingCache:
    """LRU map image id -> :class:`CachedImage`, holding at most ``max_bytes``.

    Every method takes the cache's lock, so concurrent requests may share it.
    The newest entry is never evicted by its own insertion, even if it alone
    exceeds the budget (otherwise an upload could vanish before its first use).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, image_id: str) -> CachedImage | None:
        """The entry (now most recently used), or None."""
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(image_id)
            self.hits += 1
            return entry

    def put(self, entry: CachedImage) -> CachedImage:
        """Insert (or refresh) an entry, evicting least recently used ones beyond the budget.

        If the id is already present the existing entry is kept and returned.
        """
        with self._lock:
            old = self._entries.get(entry.image_id)
            if old is not None:
                self._entries.move_to_end(entry.image_id)
                return old
            self._entries[entry.image_id] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1
            return entry

    def remove(self, image_id: str) -> bool:
        """Forget an entry; True if it was there."""
        with self._lock:
            entry = self._entries.pop(image_id, None)
            if entry is None:
                return False
            self._bytes -= entry.nbytes
            return True

    def __contains__(self, image_id: object) -> bool:
        with self._lock:
            return image_id in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
