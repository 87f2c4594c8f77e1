"""The one embedding cache: image content -> its encoded form, least recently used first out.

Encoding an image is the expensive step (hundreds of milliseconds); everything
that answers prompts on an image seen before (the optimised predictor, the fast
automatic mask generator, the web service) keeps embeddings here, keyed by
:func:`image_digest` of the decoded pixels, so the same picture is encoded once.
Torch-free: values are opaque, their size is read by :func:`nbytes_of`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

V = TypeVar("V")


def image_digest(rgb: np.ndarray) -> str:
    """Content id of an image array: SHA-256 of its shape and bytes, 32 hex digits.

    The same pixels give the same id however they were decoded or re-encoded
    losslessly; a different shape with the same bytes gives another id. Meant
    for HxWx3 uint8 images (the dtype is not part of the id).
    """
    arr = np.ascontiguousarray(rgb)
    h = hashlib.sha256()
    h.update(np.asarray(arr.shape, dtype=np.int64).tobytes())
    h.update(arr.data)
    return h.hexdigest()[:32]


def nbytes_of(value: Any) -> int:
    """Memory held by an array, a tensor, an object with ``nbytes``, or a tuple/list of them."""
    if value is None:
        return 0
    if isinstance(value, (tuple, list)):
        return sum(nbytes_of(v) for v in value)
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # torch.Tensor
        return int(value.numel() * value.element_size())
    return int(getattr(value, "nbytes", 0))


@dataclass
class ImageEmbedding:
    """An encoded image: what a predictor needs to answer prompts without the encoder.

    features: 1xCxhxw embedding (torch tensor or numpy array, C=256, h=w=image_size/16);
    original_size / input_size: (H, W) of the image and of the resized encoder input.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.features)


class EmbeddingCache(Generic[V]):
    """Thread-safe LRU map ``key -> value`` bounded by bytes and/or by entries.

    ``max_bytes`` bounds the summed :func:`nbytes_of` (``size_of``) of the values,
    ``max_items`` their number; ``None`` leaves that bound off. The newest entry
    is never evicted by its own insertion, even if it alone exceeds the budget
    (otherwise a value could vanish before its first use).
    """

    def __init__(
        self,
        max_bytes: int | None = None,
        max_items: int | None = None,
        size_of: Callable[[Any], int] = nbytes_of,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be positive, got {max_items}")
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.max_items = None if max_items is None else int(max_items)
        self._size_of = size_of
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> V | None:
        """The value (now most recently used), or None."""
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: V) -> V:
        """Insert a value, evicting least recently used ones beyond the budget.

        If ``key`` is already present the existing value is kept and returned
        (two threads that encoded the same image end up sharing one embedding).
        """
        size = int(self._size_of(value))
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                self._entries.move_to_end(key)
                return old[0]
            self._entries[key] = (value, size)
            self._bytes += size
            while len(self._entries) > 1 and self._over_budget():
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
                self.evictions += 1
            return value

    def _over_budget(self) -> bool:
        too_big = self.max_bytes is not None and self._bytes > self.max_bytes
        too_many = self.max_items is not None and len(self._entries) > self.max_items
        return too_big or too_many

    def remove(self, key: str) -> bool:
        """Forget an entry; True if it was there."""
        with self._lock:
            item = self._entries.pop(key, None)
            if item is None:
                return False
            self._bytes -= item[1]
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, int]:
        """Entries, bytes held, the budgets (0 = unbounded) and hit/miss/eviction counts."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes or 0,
                "max_items": self.max_items or 0,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
