"""mobilesam.io: the one image decoder, image listing, atomic writes."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilesam.io import (
    ImageReadError,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    decode_image,
    list_images,
    read_image,
    save_png,
)

EXIF_ORIENTATION = 0x0112


def _png_bytes(array: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **save)
    return buf.getvalue()


def _quadrants(h: int = 20, w: int = 30) -> np.ndarray:
    """An image whose four quadrants differ, so any flip or rotation shows."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    return img


def test_read_image_decodes_a_photo_like_the_reference_decoding(shared_dir):
    rgb = read_image(shared_dir / "images" / "dog.jpg")
    with np.load(shared_dir / "images" / "dog.rgb.npz") as z:
        expected = z["rgb"]
    assert rgb.dtype == np.uint8 and rgb.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(rgb, expected)


def test_read_image_converts_gray_and_rgba_to_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((4, 5), 77, np.uint8)).save(gray)
    np.testing.assert_array_equal(read_image(gray), np.full((4, 5, 3), 77, np.uint8))
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((4, 5, 4), 9, np.uint8)).save(rgba)
    assert read_image(rgba).shape == (4, 5, 3)


def test_exif_orientation_is_applied(tmp_path):
    img = _quadrants()
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.png"
    path.write_bytes(_png_bytes(img, exif=exif))
    expected = np.rot90(img, k=-1)
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), expected)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    random_bytes = tmp_path / "noise.jpg"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())
    text = tmp_path / "notes.png"
    text.write_text("this is text, not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    photo = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)
    Image.fromarray(photo).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:400])
    return {
        "random bytes": (random_bytes, "not_an_image"),
        "text": (text, "not_an_image"),
        "empty": (empty, "empty"),
        "truncated": (truncated, "bad_image"),
        "missing": (tmp_path / "missing.jpg", "not_found"),
    }


@pytest.mark.parametrize("case", ["random bytes", "text", "empty", "truncated", "missing"])
def test_unreadable_files_raise_with_reason_and_file_name(tmp_path, case):
    path, reason = _bad_files(tmp_path)[case]
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason == reason
    assert path.name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_image_refuses_too_many_pixels_before_decoding():
    big = np.zeros((3000, 2000, 3), np.uint8)
    data = _png_bytes(big)
    header_only = data[:200]  # signature + IHDR: the size is known, the pixels are not there
    with pytest.raises(ImageReadError) as info:
        decode_image(header_only)  # decoding is attempted and fails on the missing data
    assert info.value.reason == "bad_image"
    with pytest.raises(ImageReadError) as info:
        decode_image(header_only, max_pixels=2000 * 3000 - 1)
    assert info.value.reason == "too_many_pixels" and "6,000,000" in str(info.value)
    assert decode_image(data, max_pixels=2000 * 3000).shape == (3000, 2000, 3)


def test_decode_image_checks_formats_and_empty_bytes():
    data = _png_bytes(_quadrants())
    with pytest.raises(ImageReadError) as info:
        decode_image(data, formats=("JPEG",))
    assert info.value.reason == "not_an_image" and "JPEG" in str(info.value)
    with pytest.raises(ImageReadError) as info:
        decode_image(b"", label="upload.png")
    assert info.value.reason == "empty" and "upload.png" in str(info.value)


def test_list_images_recurses_sorts_and_filters_by_suffix(tmp_path):
    for name in ("b/2.jpg", "b/1.PNG", "a.webp", "b/c/3.tiff", "b/readme.txt", "z.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    extra = tmp_path / "given.dat"
    got = list_images([tmp_path, extra])
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    # a folder's images sorted by path; a file named explicitly is kept as given
    assert rel == ["a.webp", "b/1.PNG", "b/2.jpg", "b/c/3.tiff", "given.dat"]


def test_atomic_path_replaces_on_success_and_leaves_target_alone_on_error(tmp_path):
    target = tmp_path / "sub" / "result.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"first")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.bin"]


def test_atomic_write_helpers(tmp_path):
    assert atomic_write_text(tmp_path / "t.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="for writing"), atomic_write(tmp_path / "r.txt", "r"):
        pass
    with pytest.raises(KeyError), atomic_write(tmp_path / "t.txt", "w") as f:
        f.write("partial")
        raise KeyError("boom")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "t.txt"]


def test_save_png_writes_masks_as_0_255(tmp_path):
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    path = save_png(tmp_path / "m.png", mask)
    got = np.array(Image.open(path))
    assert got.dtype == np.uint8 and got[1, 2] == 255 and got.sum() == 255


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        new = save_png(tmp_path / "new.png", np.zeros((2, 2), bool))
        assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0666 less the umask, not mkstemp's 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o604)
        atomic_write_text(kept, "y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and kept.read_text() == "y"
    finally:
        os.umask(old)
