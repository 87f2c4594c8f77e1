"""The annotation project store (SQLite) and its export / import formats."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from mobilesam.serve import formats
from mobilesam.serve.errors import ServeError
from mobilesam.serve.projects import SCHEMA_VERSION, ProjectStore

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402


def _rle(mask: np.ndarray) -> dict:
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode()}


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(root / "a.png")
    Image.fromarray(np.full((50, 40, 3), 90, np.uint8)).save(root / "b.jpg")
    (root / "notes.txt").write_text("not an image")
    (root / "labels.txt").write_text("cat\ndog\n\n")
    return root


@pytest.fixture
def store(project):
    s = ProjectStore(project)
    yield s
    s.close()


def _fill(store: ProjectStore) -> list[dict]:
    a = store.add_object("a.png", "cat", _rle(_disc(60, 80, 20, 20, 10)), {"points": [[20, 20]]})
    b = store.add_object("a.png", "dog", _rle(_disc(60, 80, 40, 55, 12)), None, 0.9)
    c = store.add_object("b.jpg", "bird", _rle(_disc(50, 40, 25, 20, 8)))
    return [a, b, c]


def test_folder_images_labels_and_schema(store, project):
    assert [i.file_name for i in store.images()] == ["a.png", "b.jpg"]
    assert (store.image("a.png").width, store.image("a.png").height) == (80, 60)
    assert store.labels() == ["cat", "dog"]
    assert store.schema_version == SCHEMA_VERSION
    with sqlite3.connect(project / "annotations.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with pytest.raises(ServeError) as e:
        store.image("c.png")
    assert e.value.status == 404


def test_objects_persist_and_versions(project):
    store = ProjectStore(project)
    a, b, c = _fill(store)
    assert a["area"] == int(_disc(60, 80, 20, 20, 10).sum()) and a["version"] == 1
    assert store.labels() == ["cat", "dog", "bird"]  # a typed label joins the list
    moved = store.update_object(a["id"], 1, label="dog", mask=_rle(_disc(60, 80, 30, 30, 5)))
    assert moved["version"] == 2 and moved["label"] == "dog" and moved["area"] < a["area"]
    with pytest.raises(ServeError) as e:  # a second editor still holding version 1
        store.update_object(a["id"], 1, label="cat")
    assert e.value.status == 409 and e.value.code == "stale_version"
    with pytest.raises(ServeError) as e:
        store.delete_object(b["id"], 7)
    assert e.value.status == 409
    store.delete_object(b["id"], 1)
    store.close()

    reopened = ProjectStore(project)  # a restart loses nothing
    objs = reopened.objects()
    assert [o["id"] for o in objs] == [a["id"], c["id"]]
    assert objs[0] == moved
    assert reopened.counts() == {"a.png": 1, "b.jpg": 1}
    reopened.close()


def test_bad_masks_are_refused(store):
    with pytest.raises(ServeError) as e:
        store.add_object("a.png", "cat", _rle(np.ones((10, 10), bool)))
    assert e.value.status == 400 and e.value.code == "bad_mask"
    with pytest.raises(ServeError):
        store.add_object("a.png", "cat", {"size": [60, 80], "counts": [1, 2, 3]})
    with pytest.raises(ServeError):
        store.add_object("a.png", "", _rle(np.ones((60, 80), bool)))
    assert store.objects() == []


def test_write_failure_leaves_data_unchanged(store):
    _fill(store)
    before = store.objects()
    labels = store.labels()
    # A full disk: SQLite may not grow the file past its current page count.
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    noise = np.random.default_rng(0).random((60, 80)) > 0.5  # an RLE of many pages
    with pytest.raises(ServeError) as e:
        for i in range(50):
            store.add_object("a.png", f"new{i}", _rle(noise))
    assert e.value.status == 507 and e.value.code == "storage_full"
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    now = store.objects()
    assert now[: len(before)] == before
    # Whatever was committed before the failure is whole: every object's label exists.
    assert set(store.labels()) >= set(labels) | {o["label"] for o in now}
    n = len(now)
    with pytest.raises(ServeError):  # the failing one left no half-written object
        store.get_object(now[-1]["id"] + 1)
    assert len(store.objects()) == n


def test_newer_schema_is_refused(project):
    ProjectStore(project).close()
    with sqlite3.connect(project / "annotations.sqlite") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="schema version"):
        ProjectStore(project)


@pytest.mark.parametrize("segmentation", ["rle", "polygon"])
def test_coco_round_trip(store, project, tmp_path, segmentation):
    pytest.importorskip("cv2")
    from pycocotools.coco import COCO

    objs = _fill(store)
    coco = formats.to_coco(store, segmentation=segmentation)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == ["cat", "dog", "bird"]
    for ann, obj in zip(api.loadAnns(api.getAnnIds()), objs):
        m = api.annToMask(ann)
        assert ann["area"] == obj["area"]
        if segmentation == "rle":
            assert int(m.sum()) == ann["area"]
        else:  # a polygon through pixel centres loses about half the boundary pixels
            assert abs(int(m.sum()) - ann["area"]) < 0.3 * ann["area"]

    # Import into a fresh project over the same images, export again: the same file.
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a.png", "b.jpg"):
        (other / name).write_bytes((project / name).read_bytes())
    fresh = ProjectStore(other)
    report = formats.from_coco(fresh, coco)
    assert report == {"added": 3, "skipped_images": [], "problems": []}
    again = formats.to_coco(fresh, segmentation=segmentation)
    strip = lambda c: [  # noqa: E731
        {k: v for k, v in a.items() if k not in ("mobilesam", "id")} for a in c["annotations"]
    ]
    if segmentation == "rle":
        assert strip(again) == strip(coco)
    else:
        assert [a["category_id"] for a in again["annotations"]] == [
            a["category_id"] for a in coco["annotations"]
        ]
    assert again["categories"] == coco["categories"]
    fresh.close()


def test_coco_one_image_and_import_problems(store):
    _fill(store)
    one = formats.to_coco(store, image="b.jpg")
    assert [i["file_name"] for i in one["images"]] == ["b.jpg"]
    assert len(one["annotations"]) == 1
    bad = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "zzz.png"}],
        "categories": [{"id": 5, "name": "fox"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 30, 1, 30, 20]]},
            {"id": 2, "image_id": 1, "category_id": 5, "segmentation": "nonsense"},
            {"id": 3, "image_id": 2, "category_id": 5, "segmentation": [[1, 1, 3, 1, 3, 3]]},
        ],
    }
    report = formats.from_coco(store, bad)
    assert report["added"] == 1 and report["skipped_images"] == ["zzz.png"]
    assert len(report["problems"]) == 1
    assert "fox" in store.labels()
    with pytest.raises(ServeError):
        formats.from_coco(store, {"images": []})


def test_yolo_lines(store, tmp_path):
    pytest.importorskip("cv2")
    _fill(store)
    files = formats.write_yolo(store, tmp_path / "yolo")
    assert (tmp_path / "yolo" / "classes.txt").read_text().split() == ["cat", "dog", "bird"]
    lines = (tmp_path / "yolo" / "labels" / "a.txt").read_text().splitlines()
    assert len(lines) == 2 and len(files) == 3
    for line, cls in zip(lines, (0, 1)):
        parts = line.split()
        assert int(parts[0]) == cls
        xy = np.array([float(v) for v in parts[1:]]).reshape(-1, 2)
        assert len(xy) >= 3 and (xy >= 0).all() and (xy <= 1).all()
    # The first disc (centre 20, 20 of an 80x60 image) lies around (0.25, 0.33).
    xy = np.array([float(v) for v in lines[0].split()[1:]]).reshape(-1, 2)
    assert np.allclose(xy.mean(0), [20 / 80, 20 / 60], atol=0.03)


def test_png_label_maps(store, tmp_path):
    _fill(store)
    formats.write_label_maps(store, tmp_path / "png")
    classes = np.asarray(Image.open(tmp_path / "png" / "a.png"))
    instances = np.asarray(Image.open(tmp_path / "png" / "a.instances.png"))
    assert classes.shape == (60, 80)
    assert set(np.unique(classes)) == {0, 1, 2}
    assert int((classes == 1).sum()) == int(_disc(60, 80, 20, 20, 10).sum())
    assert set(np.unique(instances)) == {0, 1, 2}
    text = (tmp_path / "png" / "classes.txt").read_text()
    assert text.splitlines()[:2] == ["0 background", "1 cat"]
