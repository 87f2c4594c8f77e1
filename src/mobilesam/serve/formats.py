"""Annotation files out of and into a :class:`~mobilesam.serve.projects.ProjectStore`.

Framework-free. Formats:

- **COCO** instance segmentation (:func:`to_coco`): ``images``, ``categories`` (the
  project's label list, ids 1..K in list order), ``annotations`` with
  ``segmentation`` as compressed RLE (``segmentation="rle"``) or polygons from
  OpenCV ``findContours`` (``"polygon"``), ``area`` (mask pixel count), ``bbox``
  (XYWH), ``iscrowd`` 0, and a ``mobilesam`` member holding the prompts and score so
  an import can continue the work. :func:`from_coco` reads such a file (RLE,
  uncompressed RLE or polygons) into a project.
- **YOLO** segmentation (:func:`yolo_lines`): one line per object,
  ``class x1 y1 x2 y2 ...`` with coordinates divided by the image width / height
  (in [0, 1]); class = index in the label list; the polygon is the object's
  largest outer contour (YOLO has one polygon per instance).
- **PNG label maps** (:func:`label_maps`): per image a class map (0 background,
  class index + 1, 8-bit, 16-bit past 255 labels) and an instance map (16-bit,
  0 background, object n of the image = n); later objects cover earlier ones.

Pixel coordinates: x right, y down, pixel (i, j) covers [j, j+1) x [i, i+1);
polygon vertices are OpenCV's pixel indices (pixel corners at integer +0).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ServeError
from .projects import ProjectImage, ProjectStore

SEGMENTATIONS = ("rle", "polygon")


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Compressed COCO RLE -> HxW bool mask."""
    from pycocotools import mask as mask_utils

    enc = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(enc).astype(bool)


def mask_polygons(mask: np.ndarray, min_points: int = 3) -> list[np.ndarray]:
    """Outer contours of an HxW bool mask as Kx2 float arrays (XY pixels), largest first."""
    import cv2

    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polys = [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= min_points]
    return sorted(polys, key=lambda p: -abs(_shoelace(p)))


def _shoelace(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _selected_images(store: ProjectStore, image: str | None) -> list[ProjectImage]:
    return [store.image(image)] if image is not None else store.images()


# ----------------------------------------------------------------------- COCO
def to_coco(
    store: ProjectStore, image: str | None = None, segmentation: str = "rle"
) -> dict[str, Any]:
    """The project (or one image of it) as a COCO instance segmentation dict."""
    if segmentation not in SEGMENTATIONS:
        raise ServeError(
            400, "bad_format", f"segmentation must be rle or polygon, not {segmentation!r}"
        )
    labels = store.labels()
    cat_id = {name: i + 1 for i, name in enumerate(labels)}
    images = _selected_images(store, image)
    anns = []
    for img in images:
        for obj in store.objects(img.file_name):
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": img.id,
                "category_id": cat_id[obj["label"]],
                "area": obj["area"],
                "bbox": obj["bbox"],
                "iscrowd": 0,
                "mobilesam": {
                    "object_id": obj["id"],
                    "prompts": obj["prompts"],
                    "score": obj["score"],
                },
            }
            if segmentation == "rle":
                ann["segmentation"] = obj["mask"]
            else:
                polys = mask_polygons(decode_rle(obj["mask"]))
                ann["segmentation"] = [[round(float(v), 2) for v in p.ravel()] for p in polys]
            anns.append(ann)
    return {
        "info": {
            "description": f"mobilesam annotations of {store.root.name}",
            "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
        "images": [
            {"id": i.id, "file_name": i.file_name, "width": i.width, "height": i.height}
            for i in images
        ],
        "categories": [{"id": cat_id[n], "name": n} for n in labels],
        "annotations": anns,
    }


def _segmentation_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` (RLE, uncompressed RLE or polygons) -> compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        counts = seg.get("counts")
        if isinstance(counts, str):
            return {"size": [height, width], "counts": counts}
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, list) and seg:
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if not polys:
            raise ValueError("no polygon with at least 3 points")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    else:
        raise ValueError("segmentation must be RLE or a list of polygons")
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def from_coco(store: ProjectStore, coco: dict[str, Any]) -> dict[str, Any]:
    """Add a COCO file's annotations to the project; returns counts and skipped items.

    Categories are matched to labels by name (new names are added to the list);
    images by ``file_name`` (an image the project folder lacks is skipped and
    reported). Each annotation becomes a new object; ``mobilesam.prompts`` and
    ``score`` are kept when present.
    """
    if not isinstance(coco, dict) or not isinstance(coco.get("annotations"), list):
        raise ServeError(400, "bad_coco", "not a COCO file: no 'annotations' list")
    cats = {c["id"]: str(c["name"]) for c in coco.get("categories", []) if "id" in c}
    known = {i.file_name for i in store.images()}
    images: dict[Any, str] = {}
    skipped_images = []
    for im in coco.get("images", []):
        name = Path(str(im.get("file_name", ""))).name
        if name in known:
            images[im.get("id")] = name
        else:
            skipped_images.append(name)
    for name in cats.values():
        store.add_label(name)
    added = 0
    problems: list[str] = []
    for ann in coco["annotations"]:
        name = images.get(ann.get("image_id"))
        if name is None:
            continue
        img = store.image(name)
        label = cats.get(ann.get("category_id"), "object")
        extra = ann.get("mobilesam") or {}
        try:
            rle = _segmentation_rle(ann.get("segmentation"), img.height, img.width)
            store.add_object(name, label, rle, extra.get("prompts"), extra.get("score"))
            added += 1
        except (ServeError, ValueError, TypeError, KeyError) as e:
            problems.append(f"annotation {ann.get('id')}: {e}")
    return {"added": added, "skipped_images": skipped_images, "problems": problems}


# ----------------------------------------------------------------------- YOLO
def yolo_lines(store: ProjectStore, img: ProjectImage, labels: list[str]) -> list[str]:
    """YOLO segmentation lines of one image: ``class x1 y1 ...`` normalised to [0, 1]."""
    index = {n: i for i, n in enumerate(labels)}
    lines = []
    for obj in store.objects(img.file_name):
        polys = mask_polygons(decode_rle(obj["mask"]))
        if not polys:
            continue
        p = polys[0] / np.array([img.width, img.height], dtype=np.float64)
        p = np.clip(p, 0.0, 1.0)
        coords = " ".join(f"{v:.6f}" for v in p.ravel())
        lines.append(f"{index[obj['label']]} {coords}")
    return lines


def write_yolo(store: ProjectStore, out_dir: str | Path, image: str | None = None) -> list[Path]:
    """``labels/<stem>.txt`` per image and ``classes.txt`` (one label per line) under out_dir."""
    from ..io import atomic_write_text

    out = Path(out_dir)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    labels = store.labels()
    written = [atomic_write_text(out / "classes.txt", "".join(n + "\n" for n in labels))]
    for img in _selected_images(store, image):
        lines = yolo_lines(store, img, labels)
        path = out / "labels" / (Path(img.file_name).stem + ".txt")
        written.append(atomic_write_text(path, "".join(line + "\n" for line in lines)))
    return written


# ----------------------------------------------------------------------- PNG
def label_maps(
    store: ProjectStore, img: ProjectImage, labels: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(class map, instance map) HxW of one image: class index + 1 / object number, 0 = none."""
    index = {n: i for i, n in enumerate(labels)}
    dtype = np.uint8 if len(labels) < 256 else np.uint16
    classes = np.zeros((img.height, img.width), dtype=dtype)
    instances = np.zeros((img.height, img.width), dtype=np.uint16)
    for n, obj in enumerate(store.objects(img.file_name), start=1):
        m = decode_rle(obj["mask"])
        classes[m] = index[obj["label"]] + 1
        instances[m] = n
    return classes, instances


def write_label_maps(
    store: ProjectStore, out_dir: str | Path, image: str | None = None
) -> list[Path]:
    """``<stem>.png`` (classes) and ``<stem>.instances.png`` per image, ``classes.txt``."""
    from ..io import atomic_write_text, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = store.labels()
    text = "0 background\n" + "".join(f"{i + 1} {n}\n" for i, n in enumerate(labels))
    written = [atomic_write_text(out / "classes.txt", text)]
    for img in _selected_images(store, image):
        classes, instances = label_maps(store, img, labels)
        stem = Path(img.file_name).stem
        written.append(save_png(out / f"{stem}.png", classes))
        written.append(save_png(out / f"{stem}.instances.png", instances))
    return written


def iter_files(paths: Iterable[Path], root: Path) -> list[tuple[str, Path]]:
    """(name relative to root, path) pairs, e.g. for a zip archive."""
    return [(p.relative_to(root).as_posix(), p) for p in paths]
