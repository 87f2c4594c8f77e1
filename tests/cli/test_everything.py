"""`mobilesam everything`: folders with good and corrupt images, formats, resume, shards."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilesam.cli import everything as cmd
from mobilesam.cli import main

FAST = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture()
def folder(tmp_path, dog_image) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(np.ascontiguousarray(dog_image[::4, ::4])).save(d / "good.png")
    Image.fromarray(np.ascontiguousarray(dog_image[100:300:3, 200:500:3])).save(d / "sub/b.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return d


def _run(args: list[str]) -> int:
    return main(["everything", *args])


def test_folder_with_a_corrupt_image(folder, tmp_path, small_ckpt, capsys):
    out = tmp_path / "out"
    rc = _run([str(folder), "--out", str(out), "--checkpoint", str(small_ckpt), *FAST])
    err = capsys.readouterr().err
    assert rc == 1, "a skipped image makes the exit status non-zero"
    assert "broken.jpg" in err and "skipped" in err
    assert sorted(p.name for p in out.iterdir()) == ["b", "good"]  # no temp folders left
    total = 0
    for name, src in (("good", folder / "good.png"), ("b", folder / "sub/b.jpg")):
        res = out / name
        rows = list(csv.DictReader(open(res / "metadata.csv")))
        pngs = sorted(res.glob("mask_*.png"))
        assert len(rows) == len(pngs) > 0
        total += len(rows)
        w, h = Image.open(src).size
        for row, png in zip(rows, pngs):
            m = np.array(Image.open(png)) > 0
            assert m.shape == (h, w) and int(row["area"]) == int(m.sum())
        assert np.array(Image.open(res / "overlay.png")).shape == (h, w, 3)
    assert f"2 image(s) segmented, 0 already done, 1 skipped; {total} mask(s);" in err

    # a second run skips finished images; the corrupt one is still reported
    rc = _run([str(folder), "--out", str(out), "--checkpoint", str(small_ckpt), *FAST])
    assert rc == 1
    assert "0 image(s) segmented, 2 already done, 1 skipped" in capsys.readouterr().err


def test_a_run_whose_filters_keep_nothing_says_which_options_to_lower(
    folder, tmp_path, small_ckpt, capsys
):
    strict = [*FAST[:2], "--pred-iou-thresh", "1.5"]  # no predicted IoU reaches 1.5
    rc = _run([str(folder / "good.png"), "--out", str(tmp_path / "o"), "--checkpoint",
               str(small_ckpt), *strict])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "1 image(s) segmented" in err and "0 mask(s) (none passed the filters" in err
    assert "--pred-iou-thresh" in err.splitlines()[-1]


def test_coco_format_and_overwrite(folder, tmp_path, small_ckpt):
    from pycocotools import mask as mask_utils

    out = tmp_path / "out"
    good = folder / "good.png"
    assert _run([str(good), "--out", str(out), "--checkpoint", str(small_ckpt), *FAST]) == 0
    assert (out / "good" / "metadata.csv").exists()
    args = [str(good), "--out", str(out), "--checkpoint", str(small_ckpt), "--format", "coco"]
    assert _run([*args, *FAST]) == 0
    assert not (out / "good" / "annotations.json").exists(), "done images are not redone"
    assert _run([*args, *FAST, "--overwrite"]) == 0
    doc = json.loads((out / "good" / "annotations.json").read_text())
    assert not (out / "good" / "metadata.csv").exists()
    w, h = Image.open(good).size
    assert doc["image"]["width"] == w and doc["image"]["height"] == h
    assert doc["annotations"]
    for a in doc["annotations"]:
        rle = {**a["segmentation"], "counts": a["segmentation"]["counts"].encode()}
        assert int(mask_utils.decode(rle).sum()) == a["area"]
    assert [p.name for p in out.iterdir()] == ["good"]


def test_interrupted_write_leaves_nothing_that_looks_done(
    folder, tmp_path, small_ckpt, monkeypatch
):
    out = tmp_path / "out"

    def boom(folder_, *a, **k):
        (folder_ / "metadata.csv").write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "_write_result", boom)
    rc = _run([str(folder / "good.png"), "--out", str(out), "--checkpoint", str(small_ckpt), *FAST])
    assert rc == 130
    assert list(out.iterdir()) == []


def test_shards_are_disjoint_and_complete():
    items = list(range(11))
    shards = [cmd.shard(items, {"RANK": str(r), "WORLD_SIZE": "3"})[0] for r in range(3)]
    assert sorted(sum(shards, [])) == items
    assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1 :])
    assert cmd.shard(items, {})[0] == items
    with pytest.raises(ValueError):
        cmd.shard(items, {"RANK": "3", "WORLD_SIZE": "3"})


def test_two_ranks_split_a_folder(folder, tmp_path, small_ckpt, monkeypatch, capsys):
    (folder / "broken.jpg").unlink()
    out = tmp_path / "out"
    done = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert _run([str(folder), "--out", str(out), "--checkpoint", str(small_ckpt), *FAST]) == 0
        done.append(capsys.readouterr().err)
    assert "1 image(s) segmented, 0 already done" in done[0]
    assert "1 image(s) segmented, 0 already done" in done[1]
    assert sorted(p.name for p in out.iterdir()) == ["b", "good"]


def test_output_names_are_distinct(tmp_path):
    paths = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "y.png"]
    assert cmd.output_names(paths) == ["a__x", "b__x", "y"]


def test_no_images_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err


def test_generator_flags_are_the_amg_options_with_their_defaults():
    from mobilesam.cli import build_parser
    from mobilesam.inference.amg_options import AmgOptions

    args = build_parser().parse_args(["everything", "x.jpg", "--out", "o"])
    defaults = AmgOptions()
    for field in dataclasses.fields(AmgOptions):
        assert getattr(args, field.name) == getattr(defaults, field.name), field.name
    args = build_parser().parse_args(["everything", "x.jpg", "--out", "o", "--crop-n-layers", "1"])
    assert args.crop_n_layers == 1
