"""The job queue (framework-free): order, progress, cancellation, failure, limits, retention."""

from __future__ import annotations

import threading
import time

import pytest

from mobilesam.serve.errors import ServeError
from mobilesam.serve.jobs import JobContext, JobQueue, JobStatus


def _gated(gate: threading.Event, steps: int = 1000, log: list | None = None):
    """A job function that runs ``steps`` checked steps, each waiting for ``gate``."""

    def fn(ctx: JobContext) -> str:
        for i in range(steps):
            ctx.check()
            ctx.progress(i / steps, f"step {i}")
            if log is not None:
                log.append(i)
            gate.wait()
            time.sleep(0.001)
        return "finished"

    return fn


def _until(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


@pytest.fixture
def queue():
    q = JobQueue(workers=1, max_queued=2, keep=3, keep_s=60)
    yield q
    q.shutdown()


def test_runs_jobs_in_order_and_reports_results(queue):
    jobs = [queue.submit("t", lambda ctx, i=i: i * i, {"i": i}) for i in range(2)]
    for job in jobs:
        assert job.wait(5)
    assert [j.status for j in jobs] == [JobStatus.DONE] * 2
    assert [j.result for j in jobs] == [0, 1]
    assert jobs[1].meta == {"i": 1} and jobs[1].fraction == 1.0 and jobs[1].stage == "done"
    assert queue.get(jobs[0].job_id) is jobs[0]
    assert jobs[0].started is not None and jobs[0].finished >= jobs[0].started


def test_progress_is_visible_while_running(queue):
    gate = threading.Event()
    job = queue.submit("t", _gated(gate, steps=4))
    _until(lambda: job.stage == "step 0")
    assert job.status is JobStatus.RUNNING and job.fraction == 0.0
    gate.set()
    assert job.wait(5) and job.result == "finished"


def test_cancel_queued_job_never_starts(queue):
    gate = threading.Event()
    started = []
    first = queue.submit("t", _gated(gate))
    second = queue.submit("t", lambda ctx: started.append(1))
    _until(lambda: first.status is JobStatus.RUNNING)
    assert queue.cancel(second.job_id).status is JobStatus.CANCELLED
    assert second.wait(0)
    queue.cancel(first.job_id)
    gate.set()
    assert first.wait(5) and first.status is JobStatus.CANCELLED
    time.sleep(0.05)
    assert started == [] and queue.stats()["queued"] == 0


def test_cancel_running_job_stops_at_its_next_check(queue):
    gate = threading.Event()
    log: list[int] = []
    job = queue.submit("t", _gated(gate, log=log))
    _until(lambda: len(log) == 1)
    job_after = queue.cancel(job.job_id)
    assert job_after.cancel_requested and job_after.stage == "cancelling"
    gate.set()
    assert job.wait(5)
    assert job.status is JobStatus.CANCELLED and job.result is None
    assert len(log) == 1  # stopped at the next check, no further step ran
    # Cancelling a finished job changes nothing.
    assert queue.cancel(job.job_id).status is JobStatus.CANCELLED


def test_full_queue_is_503_with_retry_after(queue):
    gate = threading.Event()
    running = queue.submit("t", _gated(gate))
    _until(lambda: running.status is JobStatus.RUNNING)
    waiting = [queue.submit("t", lambda ctx: None) for _ in range(2)]
    with pytest.raises(ServeError) as e:
        queue.submit("t", lambda ctx: None)
    assert e.value.status == 503 and e.value.code == "queue_full"
    assert 1 <= e.value.retry_after <= 60
    assert e.value.headers == {"Retry-After": str(e.value.retry_after)}
    assert queue.stats() == {"workers": 1, "queued": 2, "running": 1, "max_queued": 2, "kept": 3}
    queue.cancel(running.job_id)
    gate.set()
    for job in waiting:
        assert job.wait(5) and job.status is JobStatus.DONE
    queue.submit("t", lambda ctx: None).wait(5)  # room again


def test_failure_is_recorded_not_raised(queue):
    def broken(ctx):
        raise RuntimeError("boom")

    def refused(ctx):
        raise ServeError(404, "unknown_image", "gone")

    jobs = [queue.submit("t", broken), queue.submit("t", refused)]
    for job in jobs:
        assert job.wait(5) and job.status is JobStatus.FAILED
    assert jobs[0].error == "RuntimeError: boom" and isinstance(jobs[0].exception, RuntimeError)
    assert jobs[1].error == "gone" and jobs[1].exception.status == 404
    ok = queue.submit("t", lambda ctx: 7)  # the worker survived
    assert ok.wait(5) and ok.result == 7


def test_time_limit_fails_the_job():
    q = JobQueue(workers=1, timeout_s=0.05)
    gate = threading.Event()
    gate.set()
    try:
        job = q.submit("t", _gated(gate, steps=10**6))
        assert job.wait(5)
        assert job.status is JobStatus.FAILED and "limit of 0.05 s" in job.error
    finally:
        q.shutdown()


def test_unknown_job_is_404(queue):
    with pytest.raises(ServeError) as e:
        queue.get("nope")
    assert e.value.status == 404 and e.value.code == "unknown_job"
    with pytest.raises(ServeError):
        queue.cancel("nope")


def test_finished_jobs_are_kept_bounded_by_count(queue):
    jobs = [queue.finished_job("t", i) for i in range(5)]
    assert all(j.status is JobStatus.DONE for j in jobs)
    for old in jobs[:2]:
        with pytest.raises(ServeError):
            queue.get(old.job_id)
    assert [queue.get(j.job_id).result for j in jobs[2:]] == [2, 3, 4]


def test_finished_jobs_are_kept_bounded_by_age():
    q = JobQueue(workers=1, keep=10, keep_s=0.05)
    job = q.finished_job("t", 1)
    assert q.get(job.job_id) is job
    time.sleep(0.1)
    with pytest.raises(ServeError):
        q.get(job.job_id)


def test_running_jobs_are_never_dropped():
    q = JobQueue(workers=1, keep=0, keep_s=0)
    gate = threading.Event()
    try:
        job = q.submit("t", _gated(gate, steps=2))
        _until(lambda: job.status is JobStatus.RUNNING)
        assert q.get(job.job_id) is job
    finally:
        gate.set()
        q.shutdown()


def test_workers_start_on_first_submit_and_run_thread_init():
    seen = []
    q = JobQueue(workers=2, thread_init=lambda: seen.append(threading.current_thread().name))
    assert not seen
    try:
        q.submit("t", lambda ctx: None).wait(5)
        _until(lambda: len(seen) == 2)
        assert all(name.startswith("mobilesam-job") for name in seen)
    finally:
        q.shutdown()


def test_ids_are_unique_and_unguessable(queue):
    ids = {queue.finished_job("t", None).job_id for _ in range(3)}
    assert len(ids) == 3 and all(len(i.split("-")[1]) == 16 for i in ids)


def test_shutdown_cancels_waiting_and_running():
    q = JobQueue(workers=1, max_queued=4)
    gate = threading.Event()
    running = q.submit("t", _gated(gate))
    waiting = q.submit("t", lambda ctx: None)
    _until(lambda: running.status is JobStatus.RUNNING)
    q.shutdown(wait=False)
    gate.set()
    assert running.wait(5) and waiting.wait(0)
    assert running.status is waiting.status is JobStatus.CANCELLED
    with pytest.raises(ServeError) as e:
        q.submit("t", lambda ctx: None)
    assert e.value.status == 503


def test_shutdown_with_wait_stops_workers_and_reopens():
    q = JobQueue(workers=1)
    gate = threading.Event()
    gate.set()
    running = q.submit("t", _gated(gate, steps=10**6))
    _until(lambda: running.status is JobStatus.RUNNING)
    q.shutdown()
    assert running.status is JobStatus.CANCELLED
    assert q.submit("t", lambda ctx: 3).wait(5)  # new workers start
    q.shutdown()
