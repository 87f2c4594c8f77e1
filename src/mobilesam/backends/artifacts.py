"""Where converted models and the backend choice live: one folder per model, runtime and CPU.

A model's artifacts (exported graphs, quantised copies, compiled-model caches)
depend on its weights, the package and runtime versions and the CPU, so the
folder is keyed by all of them: ``$MOBILESAM_HOME/backends/<model>-<key>/``.
``manifest.json`` records each file's SHA-256 (with its size and modification
time, so an unchanged file is not read again on every load): a half-written or
corrupt file is detected and rebuilt. Conversions run under a file lock, in a staging folder
whose files are renamed into place, so two processes converting at once leave
one good copy. Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..hub import cache_dir
from ..io import atomic_write_text, file_lock
from .cpu import cpu_signature
from .registry import BackendSpec, LoadContext

RUNTIMES = ("mobilesam", "torch", "onnx", "onnxruntime", "openvino")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _same_file(path: Path, record: Any) -> bool:
    """``path`` still holds what ``record`` (``{sha256, stat}``) describes.

    A file whose size and modification time are unchanged since it was hashed is
    trusted without reading it (what a half-written, truncated or rewritten file
    never keeps); otherwise it is hashed again.
    """
    if not isinstance(record, dict) or "sha256" not in record:
        return False
    if record.get("stat") == _stat(path):
        return True
    return file_sha256(path) == record["sha256"]


def weights_digest(path: Path, root: str | os.PathLike | None = None) -> str:
    """SHA-256 of a weights file, remembered in ``<root>/digests.json`` by path, size and
    modification time: a multi-hundred-megabyte checkpoint is read once, not on every load."""
    path = Path(path).resolve()
    table_path = (Path(root) if root is not None else cache_dir() / "backends") / "digests.json"
    try:
        table = json.loads(table_path.read_text())
    except (OSError, ValueError):
        table = {}
    if not isinstance(table, dict):
        table = {}
    record = table.get(str(path))
    if isinstance(record, dict) and record.get("stat") == _stat(path):
        return str(record["sha256"])
    digest = file_sha256(path)
    table[str(path)] = {"sha256": digest, "stat": _stat(path)}
    table_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(table_path, json.dumps(table, indent=1, sort_keys=True))
    return digest


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def artifact_key(model: str, weights: str) -> dict[str, Any]:
    """What the artifacts depend on: model, weights digest, runtime versions, CPU."""
    return {
        "model": model,
        "weights": weights,
        "versions": {name: _version(name) for name in RUNTIMES},
        "cpu": cpu_signature(),
    }


class ArtifactStore:
    """The artifact folder of one model on this machine (see the module docstring).

    ``weights`` identifies the weights: the checkpoint's SHA-256, or e.g.
    ``random-seed0`` for generated weights.
    """

    def __init__(self, model: str, weights: str, root: str | os.PathLike | None = None) -> None:
        self.key = artifact_key(model, weights)
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        base = Path(root) if root is not None else cache_dir() / "backends"
        self.dir = base / f"{model}-{digest}"

    # --------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        """File name -> ``{sha256, stat}`` of the artifacts recorded as complete."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return dict(files) if isinstance(files, dict) else {}

    def _record(self, records: dict[str, Any]) -> None:
        files = {**self.manifest(), **records}
        text = json.dumps({"key": self.key, "files": files}, indent=2, sort_keys=True)
        atomic_write_text(self.manifest_path, text)

    def valid(self, names: tuple[str, ...] | list[str]) -> bool:
        """All ``names`` exist, are recorded and still hold what was recorded (see
        :func:`_same_file`)."""
        recorded = self.manifest()
        for name in names:
            path = self.dir / name
            if name not in recorded or not path.is_file():
                return False
            if not _same_file(path, recorded[name]):
                return False
        return True

    # ----------------------------------------------------------------- making
    @contextlib.contextmanager
    def lock(self, name: str = ".lock") -> Iterator[None]:
        """An exclusive lock on this folder (blocks while another process converts).

        ``name`` picks the lock file: the backend choice holds ``.choice.lock`` while
        conversions inside it take ``.lock``.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.dir / name):
            yield

    def ensure(self, spec: BackendSpec, ctx: LoadContext) -> None:
        """Make ``spec``'s artifacts unless a verified copy exists (under the lock).

        ``ctx.artifacts`` is ignored: conversion writes to a staging folder, seeded with
        copies of the verified artifacts already here, whose files named by ``spec`` are then
        renamed into this store's folder.
        """
        if not spec.artifacts or spec.convert is None:
            return
        if self.valid(spec.artifacts):
            return
        with self.lock():
            if self.valid(spec.artifacts):  # another process made them meanwhile
                return
            staging = Path(tempfile.mkdtemp(dir=self.dir, prefix=".staging-"))
            try:
                self._seed(staging)
                spec.convert(LoadContext(staging, ctx.model, ctx.threads, ctx.options))
                records = {}
                for name in spec.artifacts:
                    made = staging / name
                    if not made.is_file():
                        raise RuntimeError(f"backend {spec.name}: conversion did not write {name}")
                    digest = file_sha256(made)
                    os.replace(made, self.dir / name)  # keeps the modification time
                    records[name] = {"sha256": digest, "stat": _stat(self.dir / name)}
                self._record(records)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _seed(self, staging: Path) -> None:
        """Copy the verified artifacts into ``staging``: a conversion that builds on another
        backend's files (the exported graphs) finds them instead of making them again."""
        for name, record in self.manifest().items():
            path = self.dir / name
            if path.is_file() and _same_file(path, record):
                shutil.copy2(path, staging / name)  # a copy: a converter may rewrite it

    # ----------------------------------------------------------------- choice
    @property
    def choice_path(self) -> Path:
        return self.dir / "choice.json"

    def current_choice(self) -> dict[str, Any] | None:
        """The remembered choice if it was made for this store's key (weights, runtimes, CPU)."""
        choice = self.read_choice()
        return choice if choice is not None and choice.get("key") == self.key else None

    def read_choice(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.choice_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "backend" in data else None

    def write_choice(self, choice: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.choice_path, json.dumps(choice, indent=2, sort_keys=True))
