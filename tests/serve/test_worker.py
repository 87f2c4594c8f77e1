"""Segment-everything jobs in a worker process: results, priority, failures, crashes, stop."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from mobilesam.inference.cache import ImageEmbedding
from mobilesam.inference.predictor import SamPredictor
from mobilesam.serve.everything import EVERYTHING_DEFAULTS, KnownEmbedding, run_everything
from mobilesam.serve.jobs import JobQueue, JobStatus
from mobilesam.serve.worker import WorkerProcess

OPTS = {
    **EVERYTHING_DEFAULTS,
    "points_per_side": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
}
LONG = {**EVERYTHING_DEFAULTS, "points_per_side": 64}


@pytest.fixture(scope="module")
def image(dog_image) -> np.ndarray:
    return np.ascontiguousarray(dog_image[::4, ::4])


@pytest.fixture(scope="module")
def embedding(small_model, image) -> ImageEmbedding:
    p = SamPredictor(small_model)
    p.set_image(image)
    return ImageEmbedding(p.features, tuple(p.original_size), tuple(p.input_size))


@pytest.fixture
def worker(small_model):
    w = WorkerProcess(small_model, threads=1, nice=5)
    yield w
    w.close()


def _job(queue: JobQueue, worker: WorkerProcess, image, embedding, options):
    return queue.submit("everything", lambda ctx: worker.run(image, embedding, options, ctx))


def test_known_embedding_answers_only_its_own_image(small_model, image, embedding):
    p = SamPredictor(small_model)
    resized, _ = p.prepare_image(image)
    known = KnownEmbedding(p.encoder, resized, embedding.features)
    assert known.encode([resized]) is embedding.features
    other = np.ascontiguousarray(resized[::-1])  # same shape, other pixels: encoded for real
    encoded = known.encode([other])
    assert encoded is not embedding.features and tuple(encoded.shape) == tuple(
        embedding.features.shape
    )


def test_a_given_embedding_is_used_instead_of_encoding(small_model, image, embedding):
    same = run_everything(small_model, image, OPTS, embedding)
    assert same == run_everything(small_model, image, OPTS)
    zeros = ImageEmbedding(embedding.features * 0, embedding.original_size, embedding.input_size)
    assert run_everything(small_model, image, OPTS, zeros) != same


def test_worker_answers_what_the_thread_path_answers(worker, small_model, image, embedding):
    queue = JobQueue(workers=1)
    job = _job(queue, worker, image, embedding, OPTS)
    assert job.wait(120) and job.status is JobStatus.DONE, job.error
    expected = run_everything(small_model, image, OPTS, embedding)
    assert len(job.result) == len(expected) > 0
    assert [r["area"] for r in job.result] == [r["area"] for r in expected]
    # The child runs at a lower priority than this process.
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, mine + 5)
    queue.shutdown()


def test_an_error_in_the_child_fails_the_job_and_the_worker_goes_on(worker, image, embedding):
    queue = JobQueue(workers=1)
    bad = _job(queue, worker, image, embedding, {**OPTS, "points_per_side": 0})
    assert bad.wait(120) and bad.status is JobStatus.FAILED
    assert "points_per_side must be >= 1" in bad.error
    good = _job(queue, worker, image, embedding, OPTS)
    assert good.wait(120) and good.status is JobStatus.DONE
    assert worker.started == 1
    queue.shutdown()


def test_a_child_that_dies_fails_its_job_and_is_replaced(worker, image, embedding):
    queue = JobQueue(workers=1)
    job = _job(queue, worker, image, embedding, LONG)
    end = time.monotonic() + 60
    while job.fraction == 0:
        assert time.monotonic() < end
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    assert job.wait(30) and job.status is JobStatus.FAILED
    assert "worker process died" in job.error
    again = _job(queue, worker, image, embedding, OPTS)
    assert again.wait(120) and again.status is JobStatus.DONE, again.error
    assert worker.started == 2
    queue.shutdown()


def test_cancel_and_time_limit_stop_the_child_job(worker, image, embedding):
    # Start the child first: a job's limit counts the child's start-up (spawn, import torch),
    # which on a busy machine alone can take longer than the 3 s limit below.
    warm = JobQueue(workers=1)
    assert _job(warm, worker, image, embedding, OPTS).wait(120)
    warm.shutdown()
    queue = JobQueue(workers=1, timeout_s=3)
    job = _job(queue, worker, image, embedding, LONG)
    end = time.monotonic() + 60
    while job.fraction == 0:
        assert not job.status.finished, f"ended before any progress: {job.status} {job.error}"
        assert time.monotonic() < end
        time.sleep(0.02)
    queue.cancel(job.job_id)
    assert job.wait(15) and job.status is JobStatus.CANCELLED
    slow = _job(queue, worker, image, embedding, LONG)  # longer than its 3 s limit
    assert slow.wait(30) and slow.status is JobStatus.FAILED and "limit" in slow.error
    assert worker.started == 1  # both stopped at a batch boundary: the child lives on
    queue.shutdown()


def test_close_stops_the_child(small_model, image, embedding):
    w = WorkerProcess(small_model)
    queue = JobQueue(workers=1)
    assert _job(queue, w, image, embedding, OPTS).wait(120)
    pid = w.pid
    w.close()
    assert w.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    queue.shutdown()


class _ChattyConn:
    """A child's pipe that always has another progress message waiting, until told to stop."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = 0

    def send(self, message) -> None:
        pass

    def poll(self, timeout: float) -> bool:
        return True

    def recv(self):
        time.sleep(0.005)  # far below the parent's poll interval
        self.received += 1
        if self.stop.is_set():
            return ("stopped",)
        # after ~2 s of non-stop progress the job "finishes": a parent that never looked
        # at the job's state returns results instead of raising
        return ("progress", 1, 2) if self.received < 400 else ("done", [])


@pytest.mark.parametrize("stop", ["limit", "cancel"])
def test_a_child_reporting_without_pause_is_still_stopped(small_model, stop):
    from mobilesam.serve.jobs import Job, JobCancelled, JobContext, JobTimedOut

    w = WorkerProcess(small_model, stop_s=1.0)
    w._ensure_child = lambda: None  # no real child: the pipe below stands in for it
    w._stop = threading.Event()
    w._conn = _ChattyConn(w._stop)
    job = Job(job_id="j", kind="everything", fn=None)
    ctx = JobContext(job, time.monotonic() + (0.05 if stop == "limit" else 60))
    if stop == "cancel":
        job._cancel.set()
    with pytest.raises(JobTimedOut if stop == "limit" else JobCancelled):
        w.run(np.zeros((8, 8, 3), np.uint8), None, {}, ctx)
    assert w._stop.is_set()  # the child was asked to stop
