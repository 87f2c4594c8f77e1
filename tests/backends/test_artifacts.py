"""The artifact store: keyed folders, verified files, one conversion under a lock."""

from __future__ import annotations

import threading
import time

import pytest

from mobilesam.backends import BackendSpec, LoadContext
from mobilesam.backends.artifacts import ArtifactStore


def _spec(calls: list[int], delay: float = 0.0, write: bool = True) -> BackendSpec:
    def convert(ctx: LoadContext) -> None:
        calls.append(1)
        time.sleep(delay)
        if write:
            (ctx.artifacts / "graph.bin").write_bytes(b"x" * 1000)

    return BackendSpec(
        name="fake",
        description="",
        precision="fp32",
        needs_torch=False,
        check=lambda: None,
        load=lambda ctx: (None, None),
        artifacts=("graph.bin",),
        convert=convert,
    )


def _ctx(store: ArtifactStore) -> LoadContext:
    return LoadContext(store.dir, model=lambda: None)


def test_keys_separate_weights_and_models(tmp_path):
    a = ArtifactStore("vit_t", "sha-a", tmp_path)
    assert ArtifactStore("vit_t", "sha-a", tmp_path).dir == a.dir
    assert ArtifactStore("vit_t", "sha-b", tmp_path).dir != a.dir
    assert ArtifactStore("vit_b", "sha-a", tmp_path).dir != a.dir
    assert a.key["cpu"] and "onnxruntime" in a.key["versions"]


def test_convert_once_then_reuse_and_rebuild_corrupt_files(tmp_path):
    store, calls = ArtifactStore("vit_t", "w", tmp_path), []
    spec = _spec(calls)
    store.ensure(spec, _ctx(store))
    store.ensure(spec, _ctx(store))
    assert calls == [1] and store.valid(("graph.bin",))
    (store.dir / "graph.bin").write_bytes(b"x" * 999)  # truncated / corrupt
    assert not store.valid(("graph.bin",))
    store.ensure(spec, _ctx(store))
    assert calls == [1, 1] and store.valid(("graph.bin",))
    assert not list(store.dir.glob(".staging-*"))


def test_a_conversion_that_writes_nothing_fails_and_leaves_nothing(tmp_path):
    store, calls = ArtifactStore("vit_t", "w", tmp_path), []
    with pytest.raises(RuntimeError, match="did not write graph.bin"):
        store.ensure(_spec(calls, write=False), _ctx(store))
    assert not store.valid(("graph.bin",)) and not list(store.dir.glob(".staging-*"))


def test_two_converting_at_once_convert_once(tmp_path):
    calls: list[int] = []
    spec = _spec(calls, delay=0.3)
    stores = [ArtifactStore("vit_t", "w", tmp_path) for _ in range(2)]
    threads = [threading.Thread(target=s.ensure, args=(spec, _ctx(s))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and stores[0].valid(("graph.bin",))


def test_choice_round_trip_and_garbage(tmp_path):
    store = ArtifactStore("vit_t", "w", tmp_path)
    assert store.read_choice() is None
    store.write_choice({"backend": "ort-fp32", "candidates": []})
    assert store.read_choice()["backend"] == "ort-fp32"
    store.choice_path.write_text("{not json")
    assert store.read_choice() is None


def test_weights_digest_is_remembered_and_follows_changes(tmp_path):
    from mobilesam.backends.artifacts import file_sha256, weights_digest

    w = tmp_path / "w.pt"
    w.write_bytes(b"a" * 100)
    first = weights_digest(w, tmp_path / "root")
    assert first == file_sha256(w) and (tmp_path / "root" / "digests.json").is_file()
    assert weights_digest(w, tmp_path / "root") == first
    w.write_bytes(b"b" * 101)  # new content: size and time change, so it is hashed again
    assert weights_digest(w, tmp_path / "root") == file_sha256(w) != first


def test_a_conversion_finds_the_verified_artifacts_of_earlier_ones(tmp_path):
    store, calls, seen = ArtifactStore("vit_t", "w", tmp_path), [], []
    store.ensure(_spec(calls), _ctx(store))  # writes graph.bin

    def convert(ctx: LoadContext) -> None:  # builds on graph.bin, as quantisers build on graphs
        seen.append((ctx.artifacts / "graph.bin").read_bytes())
        (ctx.artifacts / "extra.bin").write_bytes(b"y")

    spec = BackendSpec(
        name="fake2", description="", precision="fp32", needs_torch=False,
        check=lambda: None, load=lambda ctx: (None, None),
        artifacts=("graph.bin", "extra.bin"), convert=convert,
    )  # fmt: skip
    before = (store.dir / "graph.bin").stat()
    store.ensure(spec, _ctx(store))
    assert seen == [b"x" * 1000] and calls == [1]
    assert store.valid(("graph.bin", "extra.bin"))
    after = (store.dir / "graph.bin").stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert not list(store.dir.glob(".staging-*"))
