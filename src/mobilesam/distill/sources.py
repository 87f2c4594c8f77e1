"""Image sources for distillation: a folder tree, the SA-1B layout, or a list file.

A source is a deterministic, sorted list of :class:`ImageItem` (a stable key plus
a path). Listing never opens images; decoding happens in :func:`load_rgb` (the
package's one decoder, :func:`mobilesam.io.read_image`), which raises
:class:`BadImageError` for a file that cannot be read, so callers can report and
count it instead of dropping it silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import IMAGE_SUFFIXES, ImageReadError, read_image


class BadImageError(ImageReadError):
    """An image file that cannot be decoded (missing, empty, truncated, not an image).

    An :class:`~mobilesam.io.ImageReadError` whose message names the file and
    says "unreadable image"; ``reason`` is the decoder's code.
    """


@dataclass(frozen=True)
class ImageItem:
    """One image: ``key`` is its path relative to the source root (stable across machines)."""

    key: str
    path: Path


@dataclass(frozen=True)
class ImageSource:
    """A sorted list of images plus where it came from.

    ``kind`` is ``"folder"``, ``"sa1b"`` or ``"list"``; ``root`` is the folder the
    keys are relative to; ``notes`` are problems found while listing (for example
    SA-1B images without their annotation file).
    """

    kind: str
    root: Path
    items: tuple[ImageItem, ...]
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ImageItem:
        return self.items[i]

    def fingerprint(self) -> str:
        """A hash of the ordered keys: two listings with the same images agree."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(item.key.encode("utf-8") + b"\n")
        return h.hexdigest()[:16]

    def subset(self, indices: Iterable[int]) -> ImageSource:
        return ImageSource(self.kind, self.root, tuple(self.items[i] for i in indices), self.notes)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def folder_source(root: str | Path, recursive: bool = True) -> ImageSource:
    """Every image file under ``root`` (by extension), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    pattern = root.rglob("*") if recursive else root.glob("*")
    paths = sorted(p for p in pattern if p.is_file() and _is_image(p))
    items = tuple(ImageItem(p.relative_to(root).as_posix(), p) for p in paths)
    return ImageSource("folder", root, items)


def sa1b_source(root: str | Path) -> ImageSource:
    """SA-1B layout: ``sa_<id>.jpg`` images with ``sa_<id>.json`` beside them (any depth).

    Images whose annotation file is missing are still listed (distillation uses
    only the pixels) and noted, so a partly extracted tarball is visible.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: SA-1B folder not found")
    paths = sorted(p for p in root.rglob("sa_*.jpg") if p.is_file())
    notes = tuple(
        f"{p.relative_to(root).as_posix()}: no annotation file {p.with_suffix('.json').name}"
        for p in paths
        if not p.with_suffix(".json").is_file()
    )
    items = tuple(ImageItem(p.relative_to(root).as_posix(), p) for p in paths)
    return ImageSource("sa1b", root, items, notes)


def list_source(list_file: str | Path) -> ImageSource:
    """A text file with one image path per line (``#`` comments and blank lines ignored).

    Relative paths are relative to the list file's folder. Order is kept as
    written; a path listed twice is an error (it would be trained on twice).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: image list not found")
    root = list_file.parent
    items: list[ImageItem] = []
    seen: set[str] = set()
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        path = p if p.is_absolute() else root / p
        key = p.as_posix() if not p.is_absolute() else path.as_posix()
        if key in seen:
            raise ValueError(f"{list_file}:{n}: {line!r} is listed twice")
        seen.add(key)
        items.append(ImageItem(key, path))
    return ImageSource("list", root, tuple(items))


def open_source(spec: str | Path, kind: str = "auto") -> ImageSource:
    """Open a source; ``kind`` is ``auto``, ``folder``, ``sa1b`` or ``list``.

    ``auto``: a file is a list; a folder holding ``sa_*.jpg`` files is SA-1B;
    any other folder is a plain folder tree.
    """
    path = Path(spec)
    if kind == "auto":
        if path.is_file():
            kind = "list"
        elif path.is_dir():
            kind = "sa1b" if next(path.rglob("sa_*.jpg"), None) is not None else "folder"
        else:
            raise FileNotFoundError(f"{path}: image source not found (folder or list file)")
    makers = {"folder": folder_source, "sa1b": sa1b_source, "list": list_source}
    if kind not in makers:
        raise ValueError(f"unknown source kind {kind!r}; use one of auto, {', '.join(makers)}")
    source = makers[kind](path)
    if len(source) == 0:
        raise ValueError(f"{path}: no images found ({kind} source)")
    return source


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB (EXIF orientation applied).

    Raises :class:`BadImageError` naming the file and the reason when it cannot
    be read (missing, empty, truncated, not an image).
    """
    try:
        return read_image(path)
    except ImageReadError as e:
        # read_image's message is "<path>: <reason>"; keep the distill wording around it
        detail = str(e).removeprefix(f"{Path(path)}: ")
        raise BadImageError(f"{path}: unreadable image ({detail})", e.reason) from None


def split_holdout(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, held_out) index lists; ``holdout`` images are held out.

    The held-out indices are a seeded random choice so they are spread over the
    source rather than being its first folder.
    """
    if holdout < 0 or holdout >= n:
        raise ValueError(f"holdout must be in [0, {n - 1}] for {n} images, got {holdout}")
    rng = np.random.default_rng(seed + 7919)
    held = set(rng.permutation(n)[:holdout].tolist())
    train = [i for i in range(n) if i not in held]
    return train, sorted(held)


def describe(source: ImageSource, bad: Sequence[str] = ()) -> str:
    """One line for logs: kind, root, count, notes and unreadable images."""
    text = f"{source.kind} source {source.root}: {len(source)} images"
    if source.notes:
        text += f", {len(source.notes)} notes"
    if bad:
        text += f", {len(bad)} unreadable"
    return text
