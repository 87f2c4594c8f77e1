"""Segment everything in a folder of images, with reading, segmenting and writing overlapped.

Per image the work is: read (file read + decode, and optionally the resize and
image encoding, see :class:`AheadEncoder`), segment (the automatic mask
generator), write (one result folder). :func:`run_folder` runs reading in
reader threads ``prefetch`` images ahead and writing in one writer thread at most
``write_queue`` images behind, while the calling thread segments, so disk and
PNG encoding overlap the next image's decoding. Both queues are bounded, so at
most ``prefetch + write_queue + 1`` decoded images are held whatever the folder's
size. :data:`SEQUENTIAL` runs every stage in the calling thread, one image after
another (the loop this replaces).

Outputs are unchanged by the overlap: images are segmented and written in the
order of ``jobs``; each result folder is written under a temporary name and
renamed when complete, so an interrupted run leaves no folder that looks done and
a rerun skips exactly the finished images. An image that cannot be read is
skipped with a message; any other error (in a stage or in the writer) stops the
run and is raised in the calling thread after queued work is cancelled.

Helper threads lower their own scheduling priority (Linux: the nice value is per
thread), so on a small CPU the reader and writer take the cycles the segmenting
thread leaves idle rather than a core from it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import ImageReadError, default_mode, read_image
from .cache import EmbeddingCache, image_digest
from .core import EncoderBackend, PredictorCore
from .folder_options import SEQUENTIAL, FolderJob, PipelineOptions  # noqa: F401  (re-exported)

Annotations = list[dict[str, Any]]
Writer = Callable[[Path, "FolderJob", np.ndarray, Annotations], None]


@dataclass
class FolderReport:
    """What a run did: names segmented, names already done, skip messages, wall seconds,
    and the masks written for the images segmented."""

    segmented: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    masks: int = 0

    @property
    def images_per_second(self) -> float:
        """Segmented images per second of the run (0 when nothing was segmented)."""
        return len(self.segmented) / self.seconds if self.segmented and self.seconds > 0 else 0.0

    @property
    def images_per_hour(self) -> float:
        return 3600.0 * self.images_per_second


class AheadEncoder:
    """An encoder backend that serves embeddings computed earlier, in another thread.

    Pass it as the generator's ``encoder``; :meth:`prefetch` encodes a resized
    image (exactly as the generator's predictor will resize it) ahead of time,
    and the generator's own ``encode`` call then finds it by content. Misses
    (e.g. crops) are encoded on the spot. Calls into the wrapped backend are
    serialised (a runtime session serves one request at a time); at most
    ``keep`` embeddings are held.
    """

    def __init__(self, inner: EncoderBackend, keep: int = 4) -> None:
        self.inner = inner
        self.image_size = inner.image_size
        self.image_format = inner.image_format
        self._lock = threading.Lock()
        self._ready: EmbeddingCache[Any] = EmbeddingCache(max_items=max(1, keep))
        self.hits = 0

    def _encode(self, images: Sequence[np.ndarray]) -> Any:
        with self._lock:
            return self.inner.encode(images)

    def prefetch(self, resized: np.ndarray) -> None:
        """Encode one resized hxwx3 uint8 image (network channel order) for later."""
        self._ready.put(image_digest(resized), self._encode([resized]))

    def encode(self, images: Sequence[np.ndarray]) -> Any:
        """The embeddings (1xCxh'xw') of one prefetched image, else the wrapped backend's."""
        if len(images) == 1:
            key = image_digest(images[0])
            hit = self._ready.get(key)
            if hit is not None:
                self._ready.remove(key)
                self.hits += 1
                return hit
        return self._encode(images)

    def prefetcher(self, predictor: PredictorCore) -> Callable[[np.ndarray], None]:
        """A reader-side hook: resize an HxWx3 RGB image as ``predictor`` will, then encode it."""
        return lambda image: self.prefetch(predictor.prepare_image(image)[0])


def _lower_priority(increment: int) -> None:
    """Raise this thread's nice value (Linux: per thread; elsewhere nothing)."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        )
    except OSError:
        pass


def write_result_folder(
    out: Path, job: FolderJob, write: Callable[[Path], None], overwrite: bool
) -> Path:
    """Run ``write(tmp)`` into a temporary folder in ``out``, then rename it to ``out/job.name``.

    An existing result is replaced only with ``overwrite`` (else FileExistsError);
    on any error the temporary folder is removed and nothing is renamed.
    """
    final = out / job.name
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{job.name}.tmp-"))
    try:
        write(tmp)
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp's folder is private (0700)
        if final.exists():
            if not overwrite:
                raise FileExistsError(final)
            trash = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def pending_jobs(jobs: Sequence[FolderJob], out: Path, overwrite: bool) -> list[FolderJob]:
    """The jobs still to do: all with ``overwrite``, else those without a result folder."""
    return [j for j in jobs if overwrite or not (out / j.name).is_dir()]


def progress_bar(total: int, desc: str = "images", position: int = 0) -> Any:
    """A tqdm bar on stderr counting images, with images/s and the time left (ETA)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="img",
        position=position,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
        "[{elapsed} elapsed, ETA {remaining}, {rate_noinv_fmt}]",
    )


def run_folder(
    jobs: Sequence[FolderJob],
    out: Path,
    segment: Callable[[np.ndarray], Annotations],
    write: Writer,
    *,
    read: Callable[[Path], np.ndarray] = read_image,
    prepare: Callable[[np.ndarray], None] | None = None,
    overwrite: bool = False,
    options: PipelineOptions = PipelineOptions(),
    progress: Callable[[], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> FolderReport:
    """Segment every job's image and write its result folder ``out/<name>``, in job order.

    ``read`` decodes a file to HxWx3 uint8 RGB (raising :class:`ImageReadError`
    to skip it) and ``prepare`` then runs on the image in the same reader thread
    (e.g. :meth:`AheadEncoder.prefetcher`); ``segment`` returns the generator's
    records; ``write(tmp, job, image, records)`` fills a temporary folder that is
    renamed when complete (:func:`write_result_folder`). Jobs whose folder exists
    are skipped unless ``overwrite``. ``progress`` is called once per image
    finished or skipped (from the writer thread), ``on_skip`` with each skip message.
    """
    out.mkdir(parents=True, exist_ok=True)
    todo = deque(pending_jobs(jobs, out, overwrite))
    names = {j.name for j in todo}
    report = FolderReport(already_done=[j.name for j in jobs if j.name not in names])

    def load(job: FolderJob) -> np.ndarray:
        image = read(job.path)
        if prepare is not None:
            prepare(image)
        return image

    def finished(job: FolderJob) -> None:
        report.segmented.append(job.name)
        if progress is not None:
            progress()

    def store(job: FolderJob, image: np.ndarray, anns: Annotations) -> None:
        write_result_folder(out, job, lambda tmp: write(tmp, job, image, anns), overwrite)
        report.masks += len(anns)  # one thread stores at a time (the caller or the writer)
        finished(job)

    readers = writer = None
    if options.prefetch and todo:
        readers = ThreadPoolExecutor(
            options.readers, "everything-read", _lower_priority, (options.helper_nice,)
        )
    if options.write_queue and todo:
        writer = ThreadPoolExecutor(1, "everything-write", _lower_priority, (options.helper_nice,))
    reads: deque[tuple[FolderJob, Future[np.ndarray]]] = deque()
    writes: deque[Future[None]] = deque()
    writer_failed = False

    def wait_write() -> None:
        nonlocal writer_failed
        try:
            writes.popleft().result()
        except BaseException:
            writer_failed = True
            raise

    t0 = time.perf_counter()
    try:
        while todo or reads:
            if readers is not None:
                while todo and len(reads) <= options.prefetch:  # the one taken now + prefetch
                    job = todo.popleft()
                    reads.append((job, readers.submit(load, job)))
                job, pending = reads.popleft()
                get: Callable[[], np.ndarray] = pending.result
            else:
                job = todo.popleft()
                get = lambda job=job: load(job)  # noqa: E731
            try:
                image = get()
            except ImageReadError as e:
                report.skipped.append(str(e))
                if on_skip is not None:
                    on_skip(str(e))
                if progress is not None:
                    progress()
                continue
            anns = segment(image)
            if writer is None:
                store(job, image, anns)
                continue
            while writes and (writes[0].done() or len(writes) >= options.write_queue):
                wait_write()
            writes.append(writer.submit(store, job, image, anns))
        while writes:
            wait_write()
    finally:
        if readers is not None:
            readers.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            # Images already segmented are still written unless the writer itself failed.
            writer.shutdown(wait=True, cancel_futures=writer_failed)
        report.seconds = time.perf_counter() - t0
    return report
