"""Image sources: listing, SA-1B layout, list files, unreadable images, held-out split."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mobilesam.distill.sources import (
    BadImageError,
    folder_source,
    list_source,
    load_rgb,
    open_source,
    sa1b_source,
    split_holdout,
)
from mobilesam.io import ImageReadError


def _png(path, h=20, w=30, value=7):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def test_folder_source_is_sorted_recursive_and_ignores_other_files(tmp_path):
    _png(tmp_path / "b" / "z.png")
    _png(tmp_path / "a.PNG")
    _png(tmp_path / "b" / "c" / "y.jpg")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    src = folder_source(tmp_path)
    assert [i.key for i in src.items] == ["a.PNG", "b/c/y.jpg", "b/z.png"]
    assert src.kind == "folder"
    assert open_source(tmp_path).kind == "folder"
    assert src.fingerprint() == folder_source(tmp_path).fingerprint()


def test_sa1b_layout_lists_images_and_notes_missing_annotations(tmp_path):
    for i in (3, 1, 2):
        _png(tmp_path / "part0" / f"sa_{i}.jpg")
        if i != 2:
            (tmp_path / "part0" / f"sa_{i}.json").write_text("{}")
    _png(tmp_path / "part0" / "other.jpg")
    src = open_source(tmp_path)
    assert src.kind == "sa1b"
    assert [i.key for i in src.items] == ["part0/sa_1.jpg", "part0/sa_2.jpg", "part0/sa_3.jpg"]
    assert len(src.notes) == 1 and "sa_2.json" in src.notes[0]
    assert sa1b_source(tmp_path).items == src.items


def test_list_source_resolves_relative_paths_and_rejects_duplicates(tmp_path):
    a = _png(tmp_path / "imgs" / "a.png")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n\nimgs/a.png\n{a.resolve()}\n")
    src = open_source(lst)
    assert src.kind == "list"
    assert [i.path.resolve() for i in src.items] == [a.resolve(), a.resolve()]
    lst.write_text("imgs/a.png\nimgs/a.png\n")
    with pytest.raises(ValueError, match="listed twice"):
        list_source(lst)


def test_empty_or_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        open_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source(tmp_path / "nope")


def test_load_rgb_reports_unreadable_files(tmp_path):
    good = _png(tmp_path / "g.png", 5, 6, 9)
    rgb = load_rgb(good)
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8 and rgb[0, 0, 0] == 9
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gray)
    assert load_rgb(gray).shape == (4, 4, 3)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    truncated = tmp_path / "trunc.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        truncated, quality=90
    )
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases = {junk: "not_an_image", truncated: "bad_image", tmp_path / "missing.png": "not_found",
             empty: "empty"}  # fmt: skip
    for bad, reason in cases.items():
        with pytest.raises(BadImageError, match=f"{bad.name}: unreadable image") as info:
            load_rgb(bad)
        # the package's one decoder's error, so `except ImageReadError` catches it too
        assert isinstance(info.value, ImageReadError) and info.value.reason == reason


def test_split_holdout_is_deterministic_and_disjoint():
    train, held = split_holdout(50, 7, seed=3)
    assert len(held) == 7 and len(train) == 43
    assert not set(train) & set(held) and sorted(train + held) == list(range(50))
    assert split_holdout(50, 7, seed=3) == (train, held)
    assert split_holdout(50, 7, seed=4)[1] != held
    with pytest.raises(ValueError):
        split_holdout(5, 5, seed=0)
