"""Teacher-embedding cache on disk: compute once, train many times.

:func:`build_cache` writes it; :class:`TeacherEmbeddingStore` reads it (not to be
confused with :class:`mobilesam.inference.cache.EmbeddingCache`, the in-memory
cache of a predictor's image embeddings).

Layout of a cache folder::

    meta.json                teacher (name, config, weights hash), input size, embedding
                             shape, shard size, source (kind, root, count, fingerprint)
    shards/000042.f16        raw float16 embeddings, one CxGxG record after another
    shards/000042.json       the shard's entries: image key, offset (record number),
                             sha256 of the record, original and resized sizes; and the
                             images that could not be read, with the reason
    index.jsonl              written when every shard is present: one line per cached
                             image (key, shard, offset, checksum, sizes), source order
    failed.jsonl             the unreadable images, with reasons

Shard ``s`` always holds source items ``[s * shard_size, (s + 1) * shard_size)``, so
a re-run computes exactly the shards that are missing, truncated or corrupt: no
duplicates, no gaps. A shard is written atomically (:func:`mobilesam.io.atomic_write`
plus an fsync before the rename) and its ``.json`` last, which marks it complete.
Under ``torchrun`` rank ``r`` of ``w`` owns the shards with ``s % w == r``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import SamConfig
from ..io import atomic_write
from ..modeling import Sam
from .data import preprocess_batch, resize_for_model
from .dist import DistEnv, barrier
from .sources import BadImageError, ImageSource, load_rgb
from .teacher import teacher_embed, weights_fingerprint

FORMAT = "mobilesam-embedding-cache/1"


class CacheError(RuntimeError):
    """A cache folder that does not fit the request or is incomplete."""


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _write_synced(path: Path, data: bytes) -> None:
    """Atomic write with the data on disk before the rename: a shard's ``.json``
    written after its data must never outlive data lost in a crash."""
    with atomic_write(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class CacheReport:
    """What one cache run did (for this rank) and the state of the whole cache."""

    total: int = 0
    rank_images: int = 0
    computed_shards: int = 0
    reused_shards: int = 0
    recomputed_shards: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False
    cached: int = 0

    def summary(self) -> str:
        text = (
            f"{self.total} images in the source; this process: {self.rank_images} images, "
            f"{self.computed_shards} shards computed, {self.reused_shards} reused"
        )
        if self.recomputed_shards:
            text += f", {len(self.recomputed_shards)} damaged and recomputed"
        text += f", {len(self.failed)} unreadable images, {self.seconds:.1f} s"
        if self.complete:
            text += f"; cache complete: {self.cached} embeddings"
        return text


def cache_meta(source: ImageSource, teacher: Sam, shard_size: int, checkpoint: str | None) -> dict:
    config: SamConfig = teacher.config  # type: ignore[assignment]
    grid = config.embedding_size
    return {
        "format": FORMAT,
        "teacher": {
            "name": config.name,
            "config": config.to_json(),
            "checkpoint": Path(checkpoint).name if checkpoint else None,
            "weights": weights_fingerprint(teacher),
        },
        "image_size": config.image_size,
        "embed_shape": [config.prompt_embed_dim, grid, grid],
        "dtype": "float16",
        "shard_size": shard_size,
        "num_shards": (len(source) + shard_size - 1) // shard_size,
        "preprocess": "ResizeLongestSide.apply_image + Sam.preprocess",
        "source": {
            "kind": source.kind,
            "root": str(Path(source.root).resolve()),
            "count": len(source),
            "fingerprint": source.fingerprint(),
        },
    }


def _check_meta(old: dict, new: dict, out: Path) -> None:
    problems = []
    for key in ("format", "image_size", "embed_shape", "dtype", "shard_size", "num_shards"):
        if old.get(key) != new.get(key):
            problems.append(f"{key}: cache has {old.get(key)!r}, now {new.get(key)!r}")
    for key in ("config", "weights"):
        if old["teacher"].get(key) != new["teacher"].get(key):
            problems.append(f"teacher {key} differs from the one that made the cache")
    for key in ("count", "fingerprint"):
        if old["source"].get(key) != new["source"].get(key):
            problems.append(f"image source {key} differs (images added, removed or renamed?)")
    if problems:
        raise CacheError(
            f"{out} was made with different settings; use a new --out or the original ones:\n  "
            + "\n  ".join(problems)
        )


def _shard_paths(out: Path, shard: int) -> tuple[Path, Path]:
    base = out / "shards" / f"{shard:06d}"
    return base.with_suffix(".f16"), base.with_suffix(".json")


def check_shard(out: Path, meta: dict, shard: int, verify: bool) -> tuple[bool, str]:
    """(usable, reason) for shard ``shard``: entries complete, size right, checksums."""
    data_path, json_path = _shard_paths(out, shard)
    if not json_path.is_file():
        return False, "missing"
    try:
        info = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False, "unreadable index"
    lo = shard * meta["shard_size"]
    hi = min(lo + meta["shard_size"], meta["source"]["count"])
    seen = sorted(
        [e["index"] for e in info.get("items", [])] + [e["index"] for e in info.get("failed", [])]
    )
    if seen != list(range(lo, hi)):
        return False, "entries do not cover the shard's images"
    record = int(np.prod(meta["embed_shape"])) * 2
    n = len(info["items"])
    if not data_path.is_file() or data_path.stat().st_size != n * record:
        return False, "truncated or missing data"
    if verify and n:
        with open(data_path, "rb") as f:
            for entry in info["items"]:
                if _checksum(f.read(record)) != entry["checksum"]:
                    return False, f"checksum mismatch ({entry['key']})"
    return True, "ok"


class _Items(Dataset):
    def __init__(self, source: ImageSource, indices: list[int], image_size: int) -> None:
        self.source, self.indices, self.image_size = source, indices, image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        item = self.source[index]
        try:
            rgb = load_rgb(item.path)
        except BadImageError as e:
            return {"index": index, "image": None, "error": str(e)}
        image = resize_for_model(rgb, self.image_size)
        return {"index": index, "image": image, "orig_size": list(rgb.shape[:2])}


def _write_shard(out: Path, meta: dict, source: ImageSource, shard: int, buf: dict) -> None:
    data_path, json_path = _shard_paths(out, shard)
    json_path.unlink(missing_ok=True)  # the shard is incomplete until its json is back
    items, chunks = [], []
    for offset, index in enumerate(sorted(buf["ok"])):
        emb, orig, inp = buf["ok"][index]
        raw = emb.tobytes()
        chunks.append(raw)
        items.append(
            {
                "index": index,
                "key": source[index].key,
                "offset": offset,
                "checksum": _checksum(raw),
                "orig_size": orig,
                "input_size": inp,
            }
        )
    failed = [{"index": i, "key": source[i].key, "error": e} for i, e in sorted(buf["bad"].items())]
    _write_synced(data_path, b"".join(chunks))
    info = {"shard": shard, "items": items, "failed": failed}
    _write_synced(json_path, json.dumps(info).encode())


def build_cache(
    out: str | Path,
    source: ImageSource,
    teacher: Sam,
    *,
    shard_size: int = 256,
    batch_size: int = 8,
    precision: str = "fp32",
    num_workers: int = 0,
    verify: bool = True,
    env: DistEnv | None = None,
    checkpoint_name: str | None = None,
    progress: bool = True,
    max_shards: int | None = None,
) -> CacheReport:
    """Compute and store the teacher embeddings of ``source`` (this rank's shards).

    Resumable: existing valid shards are kept, missing/damaged ones computed.
    ``max_shards`` stops after computing that many shards (for tests and for
    splitting work into jobs). Returns what was done; ``complete`` is true once
    every shard of every rank is present and ``index.jsonl`` was written.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    env = env or DistEnv(0, 1, 0, teacher.device)
    meta = cache_meta(source, teacher, shard_size, checkpoint_name)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if meta_path.is_file():
        _check_meta(json.loads(meta_path.read_text()), meta, out)
    else:
        _write_synced(meta_path, json.dumps(meta, indent=1).encode())

    report = CacheReport(total=len(source))
    mine = [s for s in range(meta["num_shards"]) if s % env.world_size == env.rank]
    pending: list[int] = []
    for s in mine:
        ok, reason = check_shard(out, meta, s, verify)
        if ok:
            report.reused_shards += 1
        else:
            pending.append(s)
            if reason not in ("missing",):
                report.recomputed_shards.append(f"shard {s}: {reason}")
    if max_shards is not None:
        pending = pending[:max_shards]
    n_shard = lambda s: min(shard_size, len(source) - s * shard_size)  # noqa: E731
    report.rank_images = sum(n_shard(s) for s in mine)
    indices = [i for s in pending for i in range(s * shard_size, s * shard_size + n_shard(s))]
    for msg in report.recomputed_shards:
        print(f"cache: recomputing {msg}", flush=True)

    loader = DataLoader(
        _Items(source, indices, meta["image_size"]),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
    )
    bar = tqdm(
        total=report.rank_images,
        initial=report.rank_images - len(indices),
        unit="img",
        desc=f"teacher embeddings (rank {env.rank}/{env.world_size})",
        disable=not progress or not env.is_main,
        dynamic_ncols=True,
    )
    buffers: dict[int, dict] = {s: {"ok": {}, "bad": {}} for s in pending}
    newly_failed: list[str] = []
    with torch.inference_mode():
        for batch in loader:
            good = [b for b in batch if b["image"] is not None]
            if good:
                x = preprocess_batch(teacher, [b["image"] for b in good])
                emb = teacher_embed(teacher, x, precision)
                if not torch.isfinite(emb).all():
                    raise CacheError("the teacher produced non-finite embeddings")
                emb16 = emb.to(torch.float16).cpu().numpy()
                for b, e in zip(good, emb16):
                    s = b["index"] // shard_size
                    size = list(b["image"].shape[-2:])
                    buffers[s]["ok"][b["index"]] = (np.ascontiguousarray(e), b["orig_size"], size)
            for b in batch:
                if b["image"] is None:
                    buffers[b["index"] // shard_size]["bad"][b["index"]] = b["error"]
                    newly_failed.append(f"{source[b['index']].key}: {b['error']}")
                    bar.write(f"cache: skipped {b['error']}")
            for s in sorted({b["index"] // shard_size for b in batch}):
                buf = buffers[s]
                if len(buf["ok"]) + len(buf["bad"]) == n_shard(s):
                    _write_shard(out, meta, source, s, buf)
                    report.computed_shards += 1
                    del buffers[s]
            bar.update(len(batch))
            bar.set_postfix(bad=sum(1 for b in batch if b["image"] is None), refresh=False)
    bar.close()
    # Whichever process completes the last shard writes the index (identical content if
    # two race); under torchrun rank 0 also waits for the others so it can report.
    report.complete = finalize_cache(out)
    barrier(env)
    if not report.complete and env.is_main:
        report.complete = finalize_cache(out)
    if report.complete:
        store = TeacherEmbeddingStore(out)
        report.cached = len(store)
        report.failed = [f"{f['key']}: {f['error']}" for f in store.failed]
    else:
        report.failed = newly_failed  # this run's; earlier ones are in their shard's .json
    report.seconds = time.perf_counter() - t0
    return report


def finalize_cache(out: str | Path) -> bool:
    """Write ``index.jsonl`` and ``failed.jsonl`` if every shard is present; returns that."""
    out = Path(out)
    meta = json.loads((out / "meta.json").read_text())
    lines, failed = [], []
    for s in range(meta["num_shards"]):
        ok, _ = check_shard(out, meta, s, verify=False)
        if not ok:
            return False
        info = json.loads(_shard_paths(out, s)[1].read_text())
        for e in info["items"]:
            entry = {k: e[k] for k in ("key", "offset", "checksum", "orig_size", "input_size")}
            lines.append(json.dumps({"shard": s, **entry}))
        failed.extend(json.dumps(f) for f in info["failed"])
    _write_synced(out / "failed.jsonl", "".join(f + "\n" for f in failed).encode())
    _write_synced(out / "index.jsonl", "".join(x + "\n" for x in lines).encode())
    return True


class TeacherEmbeddingStore:
    """Read side of a complete cache folder: entries in source order, embeddings by number."""

    def __init__(self, path: str | Path, images_root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise CacheError(f"{self.path}: not an embedding cache (no meta.json)")
        self.meta = json.loads((self.path / "meta.json").read_text())
        if self.meta.get("format") != FORMAT:
            raise CacheError(f"{self.path}: unknown cache format {self.meta.get('format')!r}")
        index = self.path / "index.jsonl"
        if not index.is_file():
            raise CacheError(
                f"{self.path}: the cache is incomplete (no index.jsonl); re-run "
                "`mobilesam distill cache` with the same arguments to finish it"
            )
        self.entries = [json.loads(line) for line in index.read_text().splitlines() if line]
        failed = self.path / "failed.jsonl"
        self.failed = [json.loads(x) for x in failed.read_text().splitlines() if x]
        self.root = Path(images_root) if images_root else Path(self.meta["source"]["root"])
        self.embed_shape = tuple(self.meta["embed_shape"])
        self.record_bytes = int(np.prod(self.embed_shape)) * 2

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def teacher_config(self) -> SamConfig:
        return SamConfig.from_json(self.meta["teacher"]["config"])

    def image_path(self, i: int) -> Path:
        key = self.entries[i]["key"]
        return Path(key) if Path(key).is_absolute() else self.root / key

    def embedding(self, i: int, verify: bool = True) -> np.ndarray:
        """Cached embedding ``i`` as a CxGxG float16 array (checksum checked if ``verify``)."""
        e = self.entries[i]
        data_path, _ = _shard_paths(self.path, e["shard"])
        with open(data_path, "rb") as f:
            f.seek(e["offset"] * self.record_bytes)
            raw = f.read(self.record_bytes)
        if len(raw) != self.record_bytes or (verify and _checksum(raw) != e["checksum"]):
            raise CacheError(
                f"{data_path}: embedding of {e['key']} is damaged; re-run `mobilesam distill "
                "cache` with the same arguments to recompute the shard"
            )
        return np.frombuffer(raw, dtype=np.float16).reshape(self.embed_shape).copy()
