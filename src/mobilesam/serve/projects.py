"""Annotation projects: a folder of images, a label list and objects stored in SQLite.

Framework-free (stdlib ``sqlite3``). A project is a folder: its image files
(:data:`mobilesam.io.IMAGE_SUFFIXES`, top level only) and ``annotations.sqlite``
beside them (or a database path given explicitly). Optional ``labels.txt`` (one
name per line) seeds the label list the first time the database is created.

Conventions: an object belongs to one image (by file name) and one label (by
name); its mask is COCO compressed RLE ``{"size": [H, W], "counts": str}`` at
the image's size as browsers show it (EXIF orientation applied, as
:func:`mobilesam.io.decode_image` does); ``area`` and ``bbox`` (XYWH pixels)
are computed here from the mask, never taken from the client; ``prompts`` is the
JSON the page drew the mask with (``points``, ``labels``, ``box``), kept so the
object can be edited later.

Every change is one transaction (``with conn:``), so a failed write (full disk,
I/O error) rolls back and leaves the stored data as it was; it is reported as
:class:`~mobilesam.serve.errors.ServeError` 507 ``storage_full`` or 500
``storage_error``. Edits and deletions name the ``version`` they were based on;
a stale version is refused with 409 ``stale_version`` (optimistic concurrency).

The schema version is SQLite's ``PRAGMA user_version``; :data:`MIGRATIONS` maps a
version to the function that upgrades from it, run in one transaction on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import IMAGE_SUFFIXES
from .errors import ServeError

DB_NAME = "annotations.sqlite"
LABELS_FILE = "labels.txt"
SCHEMA_VERSION = 1


def _create_v1(conn: sqlite3.Connection) -> None:
    # One statement per execute: ``executescript`` would commit the migration's transaction.
    for sql in (
        "CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "position INTEGER NOT NULL)",
        "CREATE TABLE images (id INTEGER PRIMARY KEY, file_name TEXT NOT NULL UNIQUE, "
        "width INTEGER NOT NULL, height INTEGER NOT NULL)",
        "CREATE TABLE objects (id INTEGER PRIMARY KEY, "
        "image_id INTEGER NOT NULL REFERENCES images(id), "
        "label_id INTEGER NOT NULL REFERENCES labels(id), rle_counts TEXT NOT NULL, "
        "area INTEGER NOT NULL, bbox TEXT NOT NULL, prompts TEXT NOT NULL, score REAL, "
        "version INTEGER NOT NULL, updated REAL NOT NULL)",
        "CREATE INDEX objects_by_image ON objects(image_id)",
    ):
        conn.execute(sql)


#: ``user_version`` of a database -> the function that brings it to the next version.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}


@dataclass(frozen=True)
class ProjectImage:
    """One image of the project: its file name and its size as shown (EXIF applied)."""

    id: int
    file_name: str
    width: int
    height: int


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file as browsers show it, from the header only."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def check_rle(rle: Any, height: int, width: int) -> tuple[dict[str, Any], int, list[int]]:
    """A client's mask -> (compressed RLE, area, XYWH bbox); ``ServeError`` 400 if malformed.

    Accepts compressed (``counts`` str) or uncompressed (``counts`` list) COCO RLE
    of exactly ``height`` x ``width``.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ServeError(400, "bad_mask", "the mask must be COCO RLE {size: [H, W], counts}")
    try:
        size = [int(v) for v in rle["size"]]
    except (TypeError, ValueError):
        raise ServeError(400, "bad_mask", "mask size must be [H, W]") from None
    if size != [height, width]:
        raise ServeError(
            400, "bad_mask", f"mask size {size} is not the image's size [{height}, {width}]"
        )
    counts = rle["counts"]
    try:
        if isinstance(counts, str):
            enc = {"size": size, "counts": counts.encode("ascii")}
            mask = mask_utils.decode(enc)
        elif isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts):
            if sum(counts) != height * width:
                raise ValueError("counts do not cover the image")
            enc = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
            mask = mask_utils.decode(enc)
        else:
            raise ValueError("counts must be a string or a list of non-negative integers")
    except (ValueError, UnicodeEncodeError, TypeError) as e:
        raise ServeError(400, "bad_mask", f"the mask's RLE cannot be decoded: {e}") from None
    # Re-encoding normalises the counts (a client's string may be valid but not canonical).
    rle_out = mask_utils.encode(mask)
    area = int(mask_utils.area(rle_out))
    x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(rle_out))
    return {"size": size, "counts": rle_out["counts"].decode("ascii")}, area, [x, y, w, h]


def _check_prompts(prompts: Any) -> str:
    if prompts is None:
        prompts = {}
    if not isinstance(prompts, dict):
        raise ServeError(400, "bad_prompt", "prompts must be an object {points, labels, box}")
    text = json.dumps(prompts, separators=(",", ":"))
    if len(text) > 64 * 1024:
        raise ServeError(400, "bad_prompt", "prompts are larger than 64 KiB")
    return text


class ProjectStore:
    """The images, labels and objects of one project folder; safe to share between threads.

    root: the project folder (its images are the files directly inside it).
    db_path: the SQLite file (default ``root / "annotations.sqlite"``).
    """

    def __init__(self, root: str | Path, db_path: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"project folder {self.root} does not exist")
        self.db_path = Path(db_path) if db_path is not None else self.root / DB_NAME
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._migrate()
        self.sync_images()

    # ------------------------------------------------------------- plumbing
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.db_path} has schema version {version}; this mobilesam knows up to "
                f"{SCHEMA_VERSION}: upgrade mobilesam"
            )
        fresh = version == 0
        while version < SCHEMA_VERSION:
            with self._write():
                MIGRATIONS[version](self._conn)
                version += 1
                self._conn.execute(f"PRAGMA user_version = {version}")
        if fresh:
            seed = self.root / LABELS_FILE
            if seed.is_file():
                names = [n.strip() for n in seed.read_text().splitlines()]
                for name in names:
                    if name:
                        self.add_label(name)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed if the block succeeds, else rolled back.

        SQLite errors become JSON-ready ``ServeError``s (507 disk full, 500 other).
        """
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:  # SQLite may have rolled back by itself (e.g. disk full)
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc) from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _storage_error(exc) from exc

    # --------------------------------------------------------------- labels
    def labels(self) -> list[str]:
        """The label names in list order (YOLO / PNG class index = position in this list)."""
        with self._lock:
            rows = self._conn.execute("SELECT name FROM labels ORDER BY position").fetchall()
        return [r["name"] for r in rows]

    def add_label(self, name: str) -> int:
        """The label's id, adding it at the end of the list if it is new."""
        name = str(name).strip()
        if not name or len(name) > 200:
            raise ServeError(400, "bad_label", "a label is 1 to 200 characters")
        with self._lock, self._write():
            return self._label_id(name)

    def _label_id(self, name: str) -> int:
        """Id of ``name``, added if missing (the caller holds the lock and a transaction)."""
        conn = self._conn
        row = conn.execute("SELECT id FROM labels WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row["id"])
        pos = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM labels").fetchone()[0]
        return int(
            conn.execute("INSERT INTO labels(name, position) VALUES (?, ?)", (name, pos)).lastrowid
        )

    # --------------------------------------------------------------- images
    def sync_images(self) -> list[ProjectImage]:
        """Register image files of the folder not yet in the database; all images, by name."""
        names = sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        with self._lock:
            known = {r["file_name"] for r in self._conn.execute("SELECT file_name FROM images")}
            new = []
            for name in names:
                if name in known:
                    continue
                try:
                    w, h = image_size(self.root / name)
                except Exception:  # noqa: BLE001 - an unreadable file is not part of the project
                    continue
                new.append((name, w, h))
            if new:
                with self._write() as conn:
                    conn.executemany(
                        "INSERT INTO images(file_name, width, height) VALUES (?, ?, ?)", new
                    )
        return self.images()

    def images(self) -> list[ProjectImage]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM images ORDER BY file_name").fetchall()
        return [ProjectImage(r["id"], r["file_name"], r["width"], r["height"]) for r in rows]

    def image(self, file_name: str) -> ProjectImage:
        """The image named ``file_name``, or ``ServeError`` 404."""
        with self._lock:
            r = self._conn.execute(
                "SELECT * FROM images WHERE file_name = ?", (file_name,)
            ).fetchone()
        if r is None:
            raise ServeError(404, "unknown_image", f"the project has no image {file_name!r}")
        return ProjectImage(r["id"], r["file_name"], r["width"], r["height"])

    def image_path(self, file_name: str) -> Path:
        """Path of a registered image file (only names the database knows are served)."""
        return self.root / self.image(file_name).file_name

    def add_image_file(self, file_name: str, data: bytes) -> ProjectImage:
        """Save an uploaded image into the folder (a new name) and register it."""
        from ..io import atomic_write_bytes

        name = Path(file_name).name
        if not name or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
            raise ServeError(
                400,
                "bad_file_name",
                f"{file_name!r}: use an image name ending in one of " + ", ".join(IMAGE_SUFFIXES),
            )
        path = self.root / name
        if path.exists():
            raise ServeError(409, "image_exists", f"the project already has a file {name!r}")
        try:
            atomic_write_bytes(path, data)
        except OSError as e:
            raise ServeError(507, "storage_full", f"cannot save {name}: {e}") from None
        self.sync_images()
        return self.image(name)

    # -------------------------------------------------------------- objects
    _SELECT = (
        "SELECT o.*, i.file_name, i.width, i.height, l.name AS label FROM objects o "
        "JOIN images i ON i.id = o.image_id JOIN labels l ON l.id = o.label_id"
    )

    @staticmethod
    def _record(r: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": r["id"],
            "image": r["file_name"],
            "label": r["label"],
            "mask": {"size": [r["height"], r["width"]], "counts": r["rle_counts"]},
            "area": r["area"],
            "bbox": json.loads(r["bbox"]),
            "prompts": json.loads(r["prompts"]),
            "score": r["score"],
            "version": r["version"],
        }

    def objects(self, image: str | None = None) -> list[dict[str, Any]]:
        """Objects of one image (by file name) or of the whole project, in creation order."""
        if image is not None:
            img = self.image(image)
            sql, args = self._SELECT + " WHERE o.image_id = ? ORDER BY o.id", (img.id,)
        else:
            sql, args = self._SELECT + " ORDER BY o.id", ()
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._record(r) for r in rows]

    def get_object(self, object_id: int) -> dict[str, Any]:
        with self._lock:
            return self._get(object_id)

    def _get(self, object_id: int) -> dict[str, Any]:
        r = self._conn.execute(self._SELECT + " WHERE o.id = ?", (object_id,)).fetchone()
        if r is None:
            raise ServeError(404, "unknown_object", f"no object with id {object_id}")
        return self._record(r)

    def add_object(
        self,
        image: str,
        label: str,
        mask: dict[str, Any],
        prompts: dict[str, Any] | None = None,
        score: float | None = None,
    ) -> dict[str, Any]:
        """Store a new object (version 1); returns its record."""
        img = self.image(image)
        rle, area, bbox = check_rle(mask, img.height, img.width)
        prompts_text = _check_prompts(prompts)
        label = str(label).strip()
        if not label or len(label) > 200:
            raise ServeError(400, "bad_label", "a label is 1 to 200 characters")
        with self._lock, self._write() as conn:
            label_id = self._label_id(label)
            cur = conn.execute(
                "INSERT INTO objects(image_id, label_id, rle_counts, area, bbox, prompts, "
                "score, version, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    img.id,
                    label_id,
                    rle["counts"],
                    area,
                    json.dumps(bbox),
                    prompts_text,
                    score,
                    time.time(),
                ),
            )
            return self._get(int(cur.lastrowid))

    def update_object(
        self,
        object_id: int,
        version: int,
        *,
        label: str | None = None,
        mask: dict[str, Any] | None = None,
        prompts: dict[str, Any] | None = None,
        score: float | None = None,
    ) -> dict[str, Any]:
        """Change an object's label and/or mask (+ prompts, score); its version goes up by one.

        ``version`` must be the stored one: ``ServeError`` 409 ``stale_version`` otherwise.
        """
        with self._lock:
            current = self._get(object_id)
            if current["version"] != version:
                raise _stale(current, version)
            h, w = current["mask"]["size"]
            fields: dict[str, Any] = {}
            if mask is not None:
                rle, area, bbox = check_rle(mask, h, w)
                fields.update(rle_counts=rle["counts"], area=area, bbox=json.dumps(bbox))
                fields["score"] = score
            if prompts is not None:
                fields["prompts"] = _check_prompts(prompts)
            if label is not None:
                label = str(label).strip()
                if not label or len(label) > 200:
                    raise ServeError(400, "bad_label", "a label is 1 to 200 characters")
            fields.update(version=version + 1, updated=time.time())
            with self._write() as conn:
                if label is not None:
                    fields["label_id"] = self._label_id(label)
                sets = ", ".join(f"{k} = ?" for k in fields)
                cur = conn.execute(
                    f"UPDATE objects SET {sets} WHERE id = ? AND version = ?",
                    (*fields.values(), object_id, version),
                )
                if cur.rowcount != 1:  # changed between the read and the write
                    raise _stale(self._get(object_id), version)
                return self._get(object_id)

    def delete_object(self, object_id: int, version: int) -> None:
        """Delete an object; ``ServeError`` 409 if ``version`` is stale, 404 if it is gone."""
        with self._lock:
            current = self._get(object_id)
            if current["version"] != version:
                raise _stale(current, version)
            with self._write() as conn:
                conn.execute(
                    "DELETE FROM objects WHERE id = ? AND version = ?", (object_id, version)
                )

    def counts(self) -> dict[str, int]:
        """Objects per image file name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.file_name, COUNT(o.id) AS n FROM images i "
                "LEFT JOIN objects o ON o.image_id = i.id GROUP BY i.id"
            ).fetchall()
        return {r["file_name"]: int(r["n"]) for r in rows}


def _stale(current: dict[str, Any], version: int) -> ServeError:
    return ServeError(
        409,
        "stale_version",
        f"object {current['id']} is at version {current['version']}, not {version}: "
        "someone else changed it; reload it and edit again",
    )


def _storage_error(exc: sqlite3.Error) -> ServeError:
    text = str(exc)
    if "full" in text.lower() or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return ServeError(507, "storage_full", f"the annotation database is full: {text}")
    return ServeError(500, "storage_error", f"the annotation database could not be written: {text}")
