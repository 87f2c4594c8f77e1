"""``mobilesam annotate export|import`` over a project folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mobilesam.cli import main

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402


@pytest.fixture
def project(tmp_path):
    from mobilesam.serve.projects import ProjectStore

    root = tmp_path / "proj"
    root.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "a.png")
    store = ProjectStore(root)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30] = 1
    enc = mask_utils.encode(np.asfortranarray(mask))
    store.add_object("a.png", "box", {"size": [30, 40], "counts": enc["counts"].decode()})
    store.close()
    return root


@pytest.mark.parametrize("fmt", ["coco", "coco-polygon", "yolo", "png"])
def test_export(project, tmp_path, fmt, capsys):
    pytest.importorskip("cv2")
    out = tmp_path / ("out.json" if fmt.startswith("coco") else "out")
    assert main(["annotate", "export", str(project), "--format", fmt, "--out", str(out)]) == 0
    if fmt.startswith("coco"):
        coco = json.loads(out.read_text())
        assert [a["area"] for a in coco["annotations"]] == [200]
    elif fmt == "yolo":
        assert (out / "labels" / "a.txt").read_text().startswith("0 ")
    else:
        assert (out / "a.png").is_file()


def test_import_round_trip(project, tmp_path, capsys):
    out = tmp_path / "coco.json"
    assert main(["annotate", "export", str(project), "--out", str(out)]) == 0
    assert main(["annotate", "import", str(project), str(out)]) == 0
    assert "added 1 objects" in capsys.readouterr().out
    assert main(["annotate", "export", str(project), "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 2
    assert main(["annotate", "export", str(tmp_path / "nope"), "--out", str(out)]) == 2
