"""The /api/project routes and /api/web over a project folder (TestClient, no browser)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("pycocotools")

from fastapi.testclient import TestClient  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from mobilesam.serve import create_app  # noqa: E402


def _rle(mask: np.ndarray) -> dict:
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode()}


@pytest.fixture
def folder(tmp_path, dog_image):
    root = tmp_path / "proj"
    root.mkdir()
    Image.fromarray(np.ascontiguousarray(dog_image[::4, ::4])).save(root / "dog.png")
    (root / "labels.txt").write_text("dog\nball\n")
    return root


def _client(small_model, folder, tmp_path):
    app = create_app(small_model, weights="random", project=folder, web_runtime=tmp_path / "none")
    return TestClient(app)


def test_project_objects_survive_a_restart(small_model, folder, tmp_path):
    with _client(small_model, folder, tmp_path) as c:
        web = c.get("/api/web").json()
        assert web["project"] is True and web["runtime"] is None and "npm" in web["runtime_hint"]
        assert c.get("/web-runtime/ort.wasm.min.js").status_code == 404
        info = c.get("/api/project").json()
        assert info["labels"] == ["dog", "ball"]
        (img,) = info["images"]
        h, w = img["height"], img["width"]
        opened = c.post("/api/project/images/dog.png/open").json()
        assert (opened["height"], opened["width"]) == (h, w)
        assert c.get("/api/project/images/dog.png/file").content[:4] == b"\x89PNG"
        mask = np.zeros((h, w), bool)
        mask[10:40, 20:60] = True
        r = c.post(
            "/api/project/images/dog.png/objects",
            json={"label": "dog", "mask": _rle(mask), "prompts": {"points": [[30, 20]]}},
        )
        assert r.status_code == 201, r.text
        obj = r.json()
        assert obj["area"] == 1200 and obj["bbox"] == [20, 10, 40, 30]
        r = c.put(f"/api/project/objects/{obj['id']}", json={"version": 1, "label": "cat"})
        assert r.status_code == 200 and r.json()["version"] == 2
        r = c.put(f"/api/project/objects/{obj['id']}", json={"version": 1, "label": "ball"})
        assert r.status_code == 409 and r.json()["error"] == "stale_version"
        r = c.post(
            "/api/project/images/dog.png/objects",
            json={"label": "x", "mask": {"size": [1, 1], "counts": "1"}},
        )
        assert r.status_code == 400 and r.json()["error"] == "bad_mask"
        second = c.post(
            "/api/project/images/dog.png/objects", json={"label": "ball", "mask": _rle(~mask)}
        ).json()
        assert c.delete(f"/api/project/objects/{second['id']}?version=3").status_code == 409
        assert c.delete(f"/api/project/objects/{second['id']}?version=1").status_code == 204

    with _client(small_model, folder, tmp_path) as c:  # a new app on the same folder
        objs = c.get("/api/project/images/dog.png/objects").json()
        assert [(o["label"], o["version"]) for o in objs] == [("cat", 2)]
        coco = c.get("/api/project/export?format=coco").json()
        assert [a["area"] for a in coco["annotations"]] == [1200]
        assert [x["name"] for x in coco["categories"]] == ["dog", "ball", "cat"]
        for fmt in ("yolo", "png"):
            r = c.get(f"/api/project/export?format={fmt}&image=dog.png")
            assert r.status_code == 200
            names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
            assert "classes.txt" in names and len(names) >= 2
        assert c.get("/api/project/export?format=voc").status_code == 400
        r = c.post("/api/project/import", content=json.dumps(coco))
        assert r.json() == {"added": 1, "skipped_images": [], "problems": []}
        assert len(c.get("/api/project/images/dog.png/objects").json()) == 2
        assert c.post("/api/project/import", content=b"{").status_code == 400


def test_without_a_project(small_model):
    with TestClient(create_app(small_model, weights="random")) as c:
        assert c.get("/api/web").json()["project"] is False
        r = c.get("/api/project")
        assert r.status_code == 404 and r.json()["error"] == "no_project"
