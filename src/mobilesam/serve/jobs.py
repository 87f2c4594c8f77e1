"""Long work as jobs: a bounded queue, a few worker threads, progress and cancellation.

Framework-free, like the service. A job is a function of one
:class:`JobContext`; it reports progress with ``ctx.progress(fraction, stage)``
and calls ``ctx.check()`` at its safe points (between batches), where a
cancellation or its time limit stops it. The life of a job::

    queued -> running -> done | failed | cancelled
    queued -> cancelled                       (a queued job cancelled never starts)

:class:`JobQueue` starts its worker threads on the first submission (nothing
runs on import or construction). A submission beyond ``max_queued`` waiting
jobs is refused with ``ServeError`` 503 and a ``retry_after`` estimate.
Finished jobs are kept for polling, at most ``keep`` of them and for at most
``keep_s`` seconds; queued and running jobs are never dropped.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import ServeError

log = logging.getLogger(__name__)


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check` in a job whose cancellation was asked for."""


class JobTimedOut(Exception):
    """Raised by :meth:`JobContext.check` in a job that ran past its time limit."""


@dataclass(eq=False)
class Job:
    """One unit of long work and what is known about it.

    ``fraction`` (0-1) and ``stage`` (what it is doing, for people) are its
    progress; ``result`` is set when done, ``error`` (text) when failed and
    ``exception`` holds what the function raised. Times are ``time.time()``
    seconds. ``meta`` is the submitter's description (e.g. image id, options).
    """

    job_id: str
    kind: str
    fn: Callable[[JobContext], Any] | None
    meta: Mapping[str, Any] = field(default_factory=dict)
    status: JobStatus = JobStatus.QUEUED
    fraction: float = 0.0
    stage: str = "waiting for a worker"
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (any end state); False on timeout."""
        return self._done.wait(timeout)

    @property
    def run_seconds(self) -> float | None:
        """Seconds it ran (so far, if running); None if it never started."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


class JobContext:
    """What a running job's function gets: progress reports and its stop points."""

    def __init__(self, job: Job, deadline: float) -> None:
        self._job = job
        self._deadline = deadline  # time.monotonic()

    def progress(self, fraction: float, stage: str) -> None:
        """Report progress: ``fraction`` of the work done (0-1), ``stage`` what it is doing."""
        self._job.fraction = min(1.0, max(0.0, float(fraction)))
        self._job.stage = stage

    def check(self) -> None:
        """Stop here (raise) if the job was cancelled or ran past its time limit."""
        if self._job.cancel_requested:
            raise JobCancelled
        if time.monotonic() > self._deadline:
            raise JobTimedOut


class JobQueue:
    """A bounded queue of jobs run by ``workers`` threads.

    thread_init: called once in each worker thread before its first job (the
    service limits torch's threads there). timeout_s: a job's time limit,
    enforced at its ``ctx.check()`` calls. Thread-safe.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        max_queued: int = 8,
        keep: int = 64,
        keep_s: float = 600.0,
        timeout_s: float = 600.0,
        thread_init: Callable[[], None] | None = None,
        name: str = "mobilesam-job",
    ) -> None:
        if workers < 1 or max_queued < 0 or keep < 0:
            raise ValueError("workers must be >= 1, max_queued and keep >= 0")
        self.workers = int(workers)
        self.max_queued = int(max_queued)
        self.keep = int(keep)
        self.keep_s = float(keep_s)
        self.timeout_s = float(timeout_s)
        self._thread_init = thread_init
        self._name = name
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()  # in order of finishing
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._durations: deque[float] = deque(maxlen=16)
        self._closed = False
        self._serial = itertools.count(1)

    # ---------------------------------------------------------------- submit
    def submit(
        self, kind: str, fn: Callable[[JobContext], Any], meta: Mapping[str, Any] | None = None
    ) -> Job:
        """Queue ``fn`` as a job; ``ServeError`` 503 (with ``retry_after``) if the queue is full."""
        with self._cond:
            if self._closed:
                raise ServeError(503, "shutting_down", "the service is shutting down")
            self._prune()
            if len(self._queue) >= self.max_queued:
                raise ServeError(
                    503,
                    "queue_full",
                    f"{len(self._queue)} jobs are already waiting (the limit); try again later",
                    retry_after=self._retry_after(),
                )
            job = Job(self._new_id(), kind, fn, dict(meta or {}))
            self._jobs[job.job_id] = job
            self._queue.append(job)
            self._start_workers()
            self._cond.notify()
        return job

    def finished_job(self, kind: str, result: Any, meta: Mapping[str, Any] | None = None) -> Job:
        """A job that is done at once (its result was already known, e.g. cached)."""
        job = Job(self._new_id(), kind, None, dict(meta or {}))
        job.started = job.created
        with self._cond:
            self._prune()
            self._jobs[job.job_id] = job
            self._finish(job, JobStatus.DONE, result=result)
        return job

    # ------------------------------------------------------------ look / stop
    def get(self, job_id: str) -> Job:
        """The job, or ``ServeError`` 404 (never submitted, or finished and dropped)."""
        with self._cond:
            self._prune()
            job = self._jobs.get(job_id)
        if job is None:
            raise ServeError(
                404,
                "unknown_job",
                f"no job with id {job_id!r}: it never existed or finished too long ago",
            )
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job is dropped at once, a running one stops at its next check.

        A finished job is left as it is. Returns the job in its state after the call.
        """
        job = self.get(job_id)
        with self._cond:
            if job.status is JobStatus.QUEUED:
                self._queue.remove(job)
                self._finish(job, JobStatus.CANCELLED)
            elif job.status is JobStatus.RUNNING:
                job._cancel.set()
                job.stage = "cancelling"
        return job

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "workers": self.workers,
                "queued": len(self._queue),
                "running": self._running,
                "max_queued": self.max_queued,
                "kept": len(self._jobs),
            }

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every job and stop the workers.

        With ``wait`` it returns once the workers have exited (a running job at
        its next check) and the queue takes submissions again (new workers
        start); without, submissions are refused with 503 from now on.
        """
        with self._cond:
            self._closed = True
            while self._queue:
                self._finish(self._queue.popleft(), JobStatus.CANCELLED)
            for job in self._jobs.values():
                if job.status is JobStatus.RUNNING:
                    job._cancel.set()
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join()
            with self._cond:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._closed = False

    # -------------------------------------------------------------- internals
    def _new_id(self) -> str:
        # Unguessable (another client cannot poll or cancel it) and ordered for people.
        return f"{next(self._serial):x}-{secrets.token_hex(8)}"

    def _retry_after(self) -> int:
        """Seconds until a place in the queue is likely free (1-60)."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return int(min(60, max(1, round(mean * max(1, len(self._queue)) / self.workers))))

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            t = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _finish(self, job: Job, status: JobStatus, result: Any = None) -> None:
        """Record a job's end (call with the lock held)."""
        job.status = status
        job.finished = time.time()
        if status is JobStatus.DONE:
            job.result = result
            job.fraction = 1.0
            job.stage = "done"
        elif status is JobStatus.CANCELLED:
            job.stage = "cancelled"
        job.fn = None  # drop what the work held (the image, the generator)
        self._finished[job.job_id] = job
        job._done.set()
        self._prune()

    def _prune(self) -> None:
        """Drop finished jobs beyond ``keep`` or older than ``keep_s`` (lock held)."""
        now = time.time()
        while self._finished:
            oldest = next(iter(self._finished.values()))
            assert oldest.finished is not None
            if len(self._finished) <= self.keep and now - oldest.finished <= self.keep_s:
                break
            self._finished.popitem(last=False)
            self._jobs.pop(oldest.job_id, None)

    def _work(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                job.status = JobStatus.RUNNING
                job.started = time.time()
                job.stage = "starting"
                self._running += 1
                fn = job.fn
            self._run(job, fn)

    def _run(self, job: Job, fn: Callable[[JobContext], Any] | None) -> None:
        ctx = JobContext(job, time.monotonic() + self.timeout_s)
        status, result = JobStatus.FAILED, None
        try:
            assert fn is not None
            ctx.check()
            result = fn(ctx)
            status = JobStatus.DONE
        except JobCancelled:
            status = JobStatus.CANCELLED
        except JobTimedOut:
            job.error = f"the job ran longer than its limit of {self.timeout_s:g} s"
        except ServeError as e:
            job.error, job.exception = e.message, e
        except Exception as e:
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            job.error, job.exception = f"{type(e).__name__}: {e}", e
        with self._cond:
            self._running -= 1
            if status is JobStatus.DONE and job.started is not None:
                self._durations.append(time.time() - job.started)
            self._finish(job, status, result)
