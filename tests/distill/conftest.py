"""Tiny distillation setups: a small random ViT teacher and a folder of images.

The teacher is a real SAM ViT encoder (2 blocks, 64 wide) at 128-pixel input
(8x8 embeddings), saved as a mobilesam checkpoint that records its config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = 128


def tiny_teacher_config():
    from mobilesam.build import SamConfig, ViTConfig

    return SamConfig(
        "tiny_teacher",
        ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
        image_size=IMAGE_SIZE,
        decoder_mlp_dim=256,
    )


def make_images(folder: Path, count: int, seed: int, photos: list[np.ndarray]) -> list[Path]:
    """Crops of the shared photos and drawn shapes, of varied sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(60, 160)), int(rng.integers(60, 160))
        if i % 2 == 0 and photos:
            photo = photos[i // 2 % len(photos)]
            y = int(rng.integers(0, photo.shape[0] - h))
            x = int(rng.integers(0, photo.shape[1] - w))
            img = np.ascontiguousarray(photo[y : y + h, x : x + w])
        else:
            img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
            for _ in range(4):
                y0, x0 = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
                img[y0 : y0 + int(rng.integers(8, 40)), x0 : x0 + int(rng.integers(8, 40))] = (
                    rng.integers(0, 256, 3)
                )
        path = folder / f"sub{i % 3}" / f"img_{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory) -> Path:
    import torch

    from mobilesam.build import build_model
    from mobilesam.checkpoint import save_checkpoint

    torch.manual_seed(123)
    model = build_model(tiny_teacher_config())
    return save_checkpoint(model, tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


@pytest.fixture(scope="session")
def photos(dog_image, truck_image) -> list[np.ndarray]:
    return [dog_image, truck_image]


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, photos) -> Path:
    """36 readable images in three sub-folders."""
    root = tmp_path_factory.mktemp("images")
    make_images(root, 36, seed=5, photos=photos)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, image_folder, teacher_checkpoint) -> Path:
    """A complete teacher-embedding cache of the 36 test images."""
    from mobilesam.distill.cache import build_cache
    from mobilesam.distill.sources import open_source
    from mobilesam.distill.teacher import load_teacher

    out = tmp_path_factory.mktemp("train_cache") / "cache"
    teacher = load_teacher(None, teacher_checkpoint)
    report = build_cache(out, open_source(image_folder), teacher, shard_size=16, progress=False)
    assert report.complete and report.cached == 36
    return out


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core runner, two spinning OpenMP threads per
    process made these tiny models up to 10x slower. Subprocesses get OMP_NUM_THREADS=1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
