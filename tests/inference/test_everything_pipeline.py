"""The folder pipeline: same masks as the sequential loop, resumable, bounded, skips bad files."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilesam.inference.everything_pipeline import (
    SEQUENTIAL,
    AheadEncoder,
    FolderJob,
    PipelineOptions,
    run_folder,
    write_result_folder,
)

LENIENT = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
OVERLAPPED = PipelineOptions(prefetch=2, write_queue=1)


@pytest.fixture()
def jobs(tmp_path, dog_image) -> list[FolderJob]:
    """Five small photos of different sizes (one mirrored), in name order."""
    d = tmp_path / "in"
    d.mkdir()
    out = []
    for i, step in enumerate((8, 9, 10, 11, 12)):
        img = np.ascontiguousarray(dog_image[::step, ::step][:, :: -1 if i % 2 else 1])
        Image.fromarray(img).save(d / f"p{i}.png")
        out.append(FolderJob(d / f"p{i}.png", f"p{i}"))
    return out


def save_masks(tmp: Path, job: FolderJob, image: np.ndarray, anns: list[dict]) -> None:
    """Every record's mask and scores, then a marker written last."""
    masks = np.stack([a["segmentation"] for a in anns]) if anns else np.zeros((0, 1, 1), bool)
    scores = np.array([[a["predicted_iou"], a["stability_score"]] for a in anns])
    np.savez(tmp / "masks.npz", masks=masks, scores=scores)
    (tmp / "done").write_text(job.name)


def _generator(model, encoder=None):
    from mobilesam.inference.amg import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, fast=True, encoder=encoder, **LENIENT)


def _results(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    res = {}
    for d in sorted(out.iterdir()):
        with np.load(d / "masks.npz") as z:
            res[d.name] = (z["masks"], z["scores"])
    return res


def test_pipeline_writes_the_masks_of_the_sequential_loop(small_model, jobs, tmp_path):
    from mobilesam.inference.torch_backend import TorchEncoder

    jobs = jobs[:3]
    seq = run_folder(jobs, tmp_path / "seq", _generator(small_model).generate, save_masks,
                     options=SEQUENTIAL)  # fmt: skip
    pipe = run_folder(jobs, tmp_path / "pipe", _generator(small_model).generate, save_masks,
                      options=OVERLAPPED)  # fmt: skip
    ahead = AheadEncoder(TorchEncoder(small_model, 1))
    gen = _generator(small_model, ahead)
    run_folder(jobs, tmp_path / "ahead", gen.generate, save_masks, options=OVERLAPPED,
               prepare=ahead.prefetcher(gen.predictor))  # fmt: skip
    assert ahead.hits == len(jobs), "the generator used the embeddings encoded in the reader"
    assert seq.segmented == pipe.segmented == [j.name for j in jobs]
    expected = _results(tmp_path / "seq")
    assert sum(len(m) for m, _ in expected.values()) > 0
    for variant in ("pipe", "ahead"):
        got = _results(tmp_path / variant)
        assert got.keys() == expected.keys()
        for name, (masks, scores) in expected.items():
            np.testing.assert_array_equal(got[name][0], masks, err_msg=f"{variant} {name}")
            np.testing.assert_allclose(got[name][1], scores, atol=1e-5)


def _fake_segment(image: np.ndarray) -> list[dict]:
    return [{"segmentation": image[..., 0] > 128, "predicted_iou": 1.0, "stability_score": 1.0}]


def _complete_folders(out: Path) -> list[str]:
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], f"temporary folders left: {names}"
    for n in names:
        assert (out / n / "done").read_text() == n and (out / n / "masks.npz").is_file()
    return names


@pytest.mark.parametrize("options", [SEQUENTIAL, OVERLAPPED], ids=["sequential", "overlapped"])
def test_a_writer_failing_mid_run_leaves_complete_folders_and_a_rerun_finishes(
    jobs, tmp_path, options
):
    out = tmp_path / "out"
    segmented: list[int] = []

    def segment(image):
        segmented.append(image.shape[0])
        return _fake_segment(image)

    def failing(tmp, job, image, anns):
        if job.name == "p2":
            (tmp / "masks.npz").write_text("half")
            raise RuntimeError("disk full")
        save_masks(tmp, job, image, anns)

    with pytest.raises(RuntimeError, match="disk full"):
        run_folder(jobs, out, segment, failing, options=options)
    assert _complete_folders(out) == ["p0", "p1"]

    segmented.clear()
    report = run_folder(jobs, out, segment, save_masks, options=options)
    assert report.already_done == ["p0", "p1"]
    assert report.segmented == ["p2", "p3", "p4"] and len(segmented) == 3
    assert _complete_folders(out) == [j.name for j in jobs]


def test_an_error_while_segmenting_still_writes_the_images_before_it(jobs, tmp_path):
    out = tmp_path / "out"
    calls = []

    def segment(image):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return _fake_segment(image)

    def slow_write(tmp, job, image, anns):
        time.sleep(0.05)
        save_masks(tmp, job, image, anns)

    with pytest.raises(KeyboardInterrupt):
        run_folder(jobs, out, segment, slow_write, options=PipelineOptions(write_queue=3))
    assert _complete_folders(out) == ["p0", "p1", "p2"]


@pytest.mark.parametrize("options", [SEQUENTIAL, OVERLAPPED], ids=["sequential", "overlapped"])
def test_an_unreadable_image_is_skipped_with_a_message(jobs, tmp_path, options):
    broken = jobs[0].path.parent / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    todo = [jobs[0], FolderJob(broken, "broken"), jobs[1]]
    messages: list[str] = []
    ticks: list[int] = []
    report = run_folder(todo, tmp_path / "out", _fake_segment, save_masks, options=options,
                        on_skip=messages.append, progress=lambda: ticks.append(1))  # fmt: skip
    assert report.segmented == ["p0", "p1"]
    assert len(report.skipped) == 1 and "broken.jpg" in report.skipped[0]
    assert messages == report.skipped
    assert len(ticks) == 3, "progress counts skipped images too"
    assert _complete_folders(tmp_path / "out") == ["p0", "p1"]


@pytest.mark.parametrize(
    ("prefetch", "write_queue", "slow"), [(2, 1, "write"), (1, 3, "write"), (3, 1, "segment")]
)
def test_queues_bound_the_images_in_memory(tmp_path, prefetch, write_queue, slow):
    """However fast reading is, at most prefetch + write_queue + 1 images are held."""
    lock = threading.Lock()
    alive = [0, 0]  # now, most

    def read(path):
        with lock:
            alive[0] += 1
            alive[1] = max(alive)
        return np.zeros((4, 4, 3), np.uint8)

    def segment(image):
        if slow == "segment":
            time.sleep(0.01)
        return []

    def write(tmp, job, image, anns):
        if slow == "write":
            time.sleep(0.01)
        with lock:
            alive[0] -= 1

    jobs = [FolderJob(tmp_path / f"{i}.png", f"{i:02d}") for i in range(16)]
    options = PipelineOptions(prefetch=prefetch, write_queue=write_queue)
    report = run_folder(jobs, tmp_path / "out", segment, write, read=read, options=options)
    assert report.segmented == [j.name for j in jobs]
    assert alive[0] == 0
    assert alive[1] <= prefetch + write_queue + 1
    assert alive[1] >= min(prefetch, write_queue) + 1, "the stages did overlap"


def test_ahead_encoder_serves_prefetched_embeddings_once():
    class Counting:
        image_size, image_format = 8, "RGB"

        def __init__(self):
            self.calls = 0

        def encode(self, images):
            self.calls += 1
            return np.stack([np.full((2, 1, 1), img.mean()) for img in images])

    inner = Counting()
    ahead = AheadEncoder(inner, keep=2)
    a, b = np.zeros((8, 6, 3), np.uint8), np.ones((8, 6, 3), np.uint8)
    ahead.prefetch(a)
    assert inner.calls == 1
    np.testing.assert_array_equal(ahead.encode([a]), inner.encode([a]))
    assert inner.calls == 2 and ahead.hits == 1  # one call above, one for the comparison
    ahead.encode([a])  # served once only: a second request encodes again
    ahead.encode([b])
    assert inner.calls == 4 and ahead.hits == 1


def test_result_folders_get_the_permissions_mkdir_would_give(tmp_path):
    def write(folder: Path) -> None:
        (folder / "metadata.csv").write_text("id\n")

    old = os.umask(0o027)
    try:
        job = FolderJob(tmp_path / "p.png", "p")
        for overwrite in (False, True):  # a new folder, then one replacing it
            final = write_result_folder(tmp_path, job, write, overwrite)
            assert stat.S_IMODE(final.stat().st_mode) == 0o750  # not mkdtemp's private 0700
            assert (final / "metadata.csv").read_text() == "id\n"
    finally:
        os.umask(old)
