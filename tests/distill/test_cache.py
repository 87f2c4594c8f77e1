"""Teacher-embedding cache: contents, preprocessing, bad images, resume, damage, rank slices."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mobilesam.distill.cache import CacheError, TeacherEmbeddingStore, build_cache, check_shard
from mobilesam.distill.dist import DistEnv
from mobilesam.distill.sources import open_source
from mobilesam.distill.teacher import load_teacher

SHARD = 6


@pytest.fixture(scope="module")
def teacher(teacher_checkpoint):
    return load_teacher(None, teacher_checkpoint)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory, image_folder):
    """The 36 test images (first 18) plus two unreadable files."""
    root = tmp_path_factory.mktemp("cache_src")
    for p in sorted(image_folder.rglob("*.png"))[:18]:
        dest = root / p.relative_to(image_folder)
        dest.parent.mkdir(exist_ok=True, parents=True)
        shutil.copy(p, dest)
    (root / "sub1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (root / "sub2").mkdir(exist_ok=True)
    (root / "sub2" / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory, source_dir, teacher):
    out = tmp_path_factory.mktemp("cache") / "full"
    report = build_cache(
        out, open_source(source_dir), teacher, shard_size=SHARD, batch_size=4, progress=False
    )
    return out, report


def _arrays(path):
    cache = TeacherEmbeddingStore(path)
    return {e["key"]: cache.embedding(i) for i, e in enumerate(cache.entries)}


def test_cache_holds_every_readable_image_once_and_reports_bad_ones(full_cache, source_dir):
    out, report = full_cache
    source = open_source(source_dir)
    assert report.complete and report.total == 20
    assert report.cached == 18 and len(report.failed) == 2
    assert any("broken.jpg" in f for f in report.failed)
    assert any("empty.png" in f for f in report.failed)
    cache = TeacherEmbeddingStore(out)
    keys = [e["key"] for e in cache.entries]
    expected = [i.key for i in source.items if not i.key.endswith(("broken.jpg", "empty.png"))]
    assert keys == expected  # source order, no duplicates, no gaps
    assert {f["key"] for f in cache.failed} == {"sub1/broken.jpg", "sub2/empty.png"}
    assert all("unreadable" in f["error"] for f in cache.failed)
    assert cache.embed_shape == (256, 8, 8)
    # the stored format is the documented one: float16 records, size = count x record
    shard0 = out / "shards" / "000000.f16"
    n0 = len(json.loads((out / "shards" / "000000.json").read_text())["items"])
    assert shard0.stat().st_size == n0 * 256 * 8 * 8 * 2


def test_cached_embedding_matches_the_predictor_on_the_same_image(full_cache, teacher):
    """Same preprocessing as SamPredictor: resize, normalise, pad, encode."""
    from mobilesam.distill.sources import load_rgb
    from mobilesam.inference.predictor import SamPredictor

    out, _ = full_cache
    cache = TeacherEmbeddingStore(out)
    predictor = SamPredictor(teacher)
    for i in (0, 7):
        predictor.set_image(load_rgb(cache.image_path(i)))
        ref = predictor.get_image_embedding()[0].numpy()
        got = cache.embedding(i).astype(np.float32)
        np.testing.assert_allclose(got, ref, atol=2e-3 * np.abs(ref).max(), rtol=2e-3)
        assert list(predictor.input_size) == cache.entries[i]["input_size"]


def test_interrupted_cache_resumes_without_duplicates_or_gaps(
    tmp_path, full_cache, source_dir, teacher
):
    source = open_source(source_dir)
    out = tmp_path / "c"
    first = build_cache(out, source, teacher, shard_size=SHARD, batch_size=4,
                        progress=False, max_shards=2)  # fmt: skip
    assert not first.complete and first.computed_shards == 2
    assert not (out / "index.jsonl").exists()
    with pytest.raises(CacheError, match="incomplete"):
        TeacherEmbeddingStore(out)
    # a kill mid-shard leaves a data file without its json and a temporary file
    (out / "shards" / "000002.f16").write_bytes(b"\0" * 100)
    (out / "shards" / ".000003.f16.999.tmp").write_bytes(b"\0" * 10)
    second = build_cache(out, source, teacher, shard_size=SHARD, batch_size=4, progress=False)
    assert second.complete and second.reused_shards == 2 and second.computed_shards == 2
    ref, got = _arrays(full_cache[0]), _arrays(out)
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    third = build_cache(out, source, teacher, shard_size=SHARD, batch_size=4, progress=False)
    assert third.computed_shards == 0 and third.reused_shards == 4


def test_corrupt_and_truncated_shards_are_detected_and_recomputed(
    tmp_path, full_cache, source_dir, teacher
):
    out = tmp_path / "c"
    shutil.copytree(full_cache[0], out)
    meta = json.loads((out / "meta.json").read_text())
    data1 = out / "shards" / "000001.f16"
    raw = bytearray(data1.read_bytes())
    raw[5000] ^= 0xFF
    data1.write_bytes(bytes(raw))
    data2 = out / "shards" / "000002.f16"
    data2.write_bytes(data2.read_bytes()[:-10])
    assert check_shard(out, meta, 1, verify=True)[1].startswith("checksum mismatch")
    assert check_shard(out, meta, 2, verify=False)[1].startswith("truncated")
    store = TeacherEmbeddingStore(out)
    in_shard_1 = next(i for i, e in enumerate(store.entries) if e["shard"] == 1)
    with pytest.raises(CacheError, match="damaged"):
        store.embedding(in_shard_1)
    report = build_cache(
        out, open_source(source_dir), teacher, shard_size=SHARD, batch_size=4, progress=False
    )
    assert len(report.recomputed_shards) == 2 and report.computed_shards == 2
    ref, got = _arrays(full_cache[0]), _arrays(out)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_changed_settings_are_refused(tmp_path, full_cache, source_dir, teacher):
    out = tmp_path / "c"
    shutil.copytree(full_cache[0], out)
    with pytest.raises(CacheError, match="shard_size"):
        build_cache(out, open_source(source_dir), teacher, shard_size=4, progress=False)
    torch.manual_seed(9)
    from mobilesam.build import build_model

    different = build_model(teacher.config)
    with pytest.raises(CacheError, match="teacher weights"):
        build_cache(out, open_source(source_dir), different, shard_size=SHARD, progress=False)


def test_rank_slices_are_disjoint_and_together_make_the_same_cache(
    tmp_path, full_cache, source_dir, teacher
):
    out = tmp_path / "c"
    source = open_source(source_dir)
    r1 = build_cache(out, source, teacher, shard_size=SHARD, batch_size=4, progress=False,
                     env=DistEnv(1, 2, 1, torch.device("cpu")))  # fmt: skip
    assert r1.computed_shards == 2 and not r1.complete  # shards 1 and 3
    written = sorted(p.name for p in (out / "shards").glob("*.json"))
    assert written == ["000001.json", "000003.json"]
    r0 = build_cache(out, source, teacher, shard_size=SHARD, batch_size=4, progress=False,
                     env=DistEnv(0, 2, 0, torch.device("cpu")))  # fmt: skip
    assert r0.computed_shards == 2 and r0.complete
    ref, got = _arrays(full_cache[0]), _arrays(out)
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_the_store_is_not_called_embedding_cache():
    """``EmbeddingCache`` is the in-memory cache of mobilesam.inference; the disk store differs."""
    import mobilesam.distill

    assert "EmbeddingCache" not in mobilesam.distill.__all__
    with pytest.raises(AttributeError):
        mobilesam.distill.EmbeddingCache  # noqa: B018
