"""Segment-everything jobs in worker processes, so that clicks never wait for them.

A job in a thread of the server process shares its interpreter lock: each time
the job's Python code runs (batch bookkeeping, post-processing, RLE encoding)
a click's thread waits, and lowering the job thread's priority makes that
worse (the niced thread holds the lock and is then seldom scheduled). A
:class:`WorkerProcess` runs the job in a child process instead, at a lower
scheduling priority (``nice``) and with its own torch thread count, so the
operating system gives the clicks' process the CPU first.

The child is started with ``spawn`` (forking a process that already runs
OpenMP threads can deadlock) on its first job, and gets the model once: its
weights travel through shared memory, not copied. A job sends the image, its
cached embedding (never encoded twice) and the options; the child answers
progress messages and then the records, an error, or "cancelled". The parent
thread polls, so a cancellation or the job's time limit is seen within a
tenth of a second and passed on; a child that does not stop in time, or
dies, is killed and started again for the next job.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ServeError
from .jobs import JobCancelled, JobContext, JobTimedOut

if TYPE_CHECKING:
    from ..inference.cache import ImageEmbedding
    from ..modeling import Sam

log = logging.getLogger(__name__)

_POLL_S = 0.1


class _Stop(Exception):
    """Raised in the child between batches when the parent asked it to stop."""


class WorkerProcess:
    """One child process that runs segment-everything jobs for ``model``, one at a time.

    threads: torch threads in the child. nice: added to the child's scheduling
    niceness (0 keeps the server's priority). stop_s: how long a cancelled job
    may take to reach its next batch before the child is killed. Not
    thread-safe: each job worker thread owns one.
    """

    def __init__(self, model: Sam, threads: int = 1, nice: int = 10, stop_s: float = 10.0) -> None:
        self.model = model
        self.threads = int(threads)
        self.nice = int(nice)
        self.stop_s = float(stop_s)
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._stop: Any = None
        self.started = 0  # children started so far (a restart after a crash counts)

    @property
    def pid(self) -> int | None:
        """The child's process id, None before the first job or after :meth:`close`."""
        return self._proc.pid if self._proc is not None else None

    def run(
        self,
        image: np.ndarray,
        embedding: ImageEmbedding | None,
        options: dict[str, Any],
        ctx: JobContext,
    ) -> list[dict[str, Any]]:
        """Segment everything in the child; progress, cancellation and limits through ``ctx``."""
        self._ensure_child()
        self._stop.clear()
        features = None
        if embedding is not None:
            array = embedding.features
            if hasattr(array, "detach"):  # a torch tensor, possibly on a GPU
                array = array.detach().cpu().numpy()
            features = (
                np.asarray(array, dtype=np.float32),
                tuple(embedding.original_size),
                tuple(embedding.input_size),
            )
        try:
            self._conn.send(("everything", image, features, dict(options)))
        except (BrokenPipeError, OSError):
            self._kill()
            raise ServeError(500, "worker_died", "the job's worker process is gone") from None
        while True:
            message = self._receive()
            kind = None if message is None else message[0]
            if kind in (None, "progress"):
                # the job's own state, at every poll *and* every progress message: a child
                # that reports faster than the poll interval must still be stopped in time
                try:
                    ctx.check()
                except (JobCancelled, JobTimedOut):
                    self._halt()
                    raise
            if kind == "progress":
                done, total = message[1], message[2]
                ctx.progress(done / total, f"decoding batch {done + 1} of {total}")
            elif kind == "done":
                return message[1]
            elif kind == "error":
                raise RuntimeError(message[1])

    def close(self) -> None:
        """Stop the child (it exits at once when idle, is killed when busy)."""
        if self._proc is None:
            return
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=2.0)
        self._kill()

    # -------------------------------------------------------------- internals
    def _ensure_child(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._kill()
        import torch.multiprocessing  # noqa: F401  (tensors then travel through shared memory)

        parent, child = self._ctx.Pipe()
        self._stop = self._ctx.Event()
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(child, self._stop, self.model, self.threads, self.nice),
            name="mobilesam-job-worker",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        self.started += 1

    def _receive(self) -> tuple | None:
        """The child's next message, None if none came within the poll interval."""
        try:
            if self._conn.poll(_POLL_S):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        else:
            if self._proc.is_alive():
                return None
        code = self._proc.exitcode
        self._kill()
        raise ServeError(500, "worker_died", f"the job's worker process died (exit status {code})")

    def _halt(self) -> None:
        """Ask the child to stop its job; kill it if it does not within ``stop_s``."""
        self._stop.set()
        waited = 0.0
        while waited < self.stop_s:
            try:
                if self._conn.poll(_POLL_S):
                    if self._conn.recv()[0] in ("stopped", "done", "error"):
                        return
                    continue
            except (EOFError, OSError):
                break
            waited += _POLL_S
        log.warning("the job worker did not stop within %.0f s; killing it", self.stop_s)
        self._kill()

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5.0)
            self._conn.close()
        self._proc = self._conn = None


def _child_main(conn: Any, stop: Any, model: Sam, threads: int, nice: int) -> None:
    """The child: lower its priority, then answer jobs until told to exit."""
    import torch

    from ..inference.cache import ImageEmbedding
    from .everything import run_everything

    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    torch.set_num_threads(threads)
    model.eval()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        _, image, features, options = request
        embedding = None
        if features is not None:
            array, original_size, input_size = features
            tensor = torch.from_numpy(array).to(model.device)
            embedding = ImageEmbedding(tensor, original_size, input_size)

        def on_batch(done: int, total: int) -> None:
            if stop.is_set():
                raise _Stop
            conn.send(("progress", done, total))

        try:
            with torch.no_grad():
                records = run_everything(model, image, options, embedding, on_batch)
            conn.send(("done", records))
        except _Stop:
            conn.send(("stopped",))
        except Exception as e:  # reported to the job, which fails with it
            conn.send(("error", f"{type(e).__name__}: {e}"))
