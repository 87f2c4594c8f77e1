"""Datasets, batching and the one preprocessing path for distillation.

Images go through exactly what :class:`~mobilesam.inference.predictor.SamPredictor`
does: :meth:`ResizeLongestSide.apply_image` (Pillow bilinear on uint8) in the data
workers, then ``model.preprocess`` (normalise, zero-pad) on the device. The teacher
embeddings in a cache were made the same way, so student and teacher see
identical pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..inference.transforms import ResizeLongestSide
from .sources import BadImageError, ImageSource, load_rgb


def resize_for_model(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """HxWx3 uint8 -> 3xhxw uint8 tensor with the longest side ``image_size``."""
    resized = ResizeLongestSide(image_size).apply_image(rgb)
    return torch.as_tensor(resized).permute(2, 0, 1).contiguous()


def preprocess_batch(model: nn.Module, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Resized 3xhxw uint8 images -> Bx3xSxS float32 on ``model.device`` (``model.preprocess``)."""
    device = model.device
    return torch.cat([model.preprocess(t[None].to(device, non_blocking=True)) for t in images])


@dataclass
class Batch:
    """A collated micro-batch: resized uint8 images, cached targets (or None), keys."""

    images: list[torch.Tensor]
    targets: torch.Tensor | None
    keys: list[str]
    skipped: list[str]


def collate(samples: list[dict[str, Any]]) -> Batch:
    targets = [s["target"] for s in samples]
    stacked = torch.stack(targets) if all(t is not None for t in targets) else None
    skipped = [p for s in samples for p in s.get("skipped", ())]
    return Batch([s["image"] for s in samples], stacked, [s["key"] for s in samples], skipped)


class ImageDataset(Dataset):
    """Online mode: images of a source, resized for the model; no targets.

    An unreadable image is replaced by the next readable one in source order
    (deterministic, so resume still lines up) and its path is returned in
    ``skipped`` so the trainer reports and counts it.
    """

    def __init__(self, source: ImageSource, image_size: int) -> None:
        self.source = source
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        n = len(self.source)
        for k in range(n):
            item = self.source[(index + k) % n]
            try:
                rgb = load_rgb(item.path)
            except BadImageError as e:
                skipped.append(str(e))
                continue
            image = resize_for_model(rgb, self.image_size)
            return {"image": image, "target": None, "key": item.key, "skipped": skipped}
        raise BadImageError(f"no readable image in the source ({n} tried)")


class CachedDataset(Dataset):
    """Images plus their cached teacher embeddings (CxGxG float16)."""

    def __init__(self, cache: Any, verify: bool = True) -> None:
        self.cache = cache
        self.verify = verify

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.cache.entries[index]
        target = self.cache.embedding(index, verify=self.verify)
        rgb = load_rgb(self.cache.image_path(index))  # a cached image must still be readable
        image = resize_for_model(rgb, self.cache.image_size)
        return {"image": image, "target": torch.from_numpy(target), "key": entry["key"]}


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of ``n`` items in ``epoch`` (a pure function of its inputs)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class StepBatchSampler(Sampler[list[int]]):
    """Micro-batches of dataset indices for optimizer steps ``start_step .. total_steps``.

    Step ``s`` takes global batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch`` (``batch_size * grad_accum * world_size`` images of
    a seeded permutation of ``indices``; the incomplete tail is dropped). Its
    micro-batch ``m`` on rank ``r`` is chunk ``m * world_size + r``. The data
    position is therefore the step number alone, which makes resuming exact.
    """

    def __init__(
        self,
        indices: Sequence[int],
        *,
        batch_size: int,
        grad_accum: int,
        world_size: int,
        rank: int,
        seed: int,
        start_step: int,
        total_steps: int,
    ) -> None:
        self.indices = list(indices)
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.global_batch = batch_size * grad_accum * world_size
        self.steps_per_epoch = len(self.indices) // self.global_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(self.indices)} training images are fewer than one global batch "
                f"({batch_size} x {grad_accum} accumulation x {world_size} processes)"
            )

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.grad_accum

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` reads: epoch and global batch within it."""
        return {"epoch": step // self.steps_per_epoch, "batch": step % self.steps_per_epoch}

    def __iter__(self) -> Iterator[list[int]]:
        perm: list[int] = []
        perm_epoch = -1
        for step in range(self.start_step, self.total_steps):
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                perm = epoch_permutation(len(self.indices), self.seed, epoch)
                perm_epoch = epoch
            base = pos * self.global_batch
            for m in range(self.grad_accum):
                chunk = m * self.world_size + self.rank
                lo = base + chunk * self.batch_size
                yield [self.indices[perm[j]] for j in range(lo, lo + self.batch_size)]
