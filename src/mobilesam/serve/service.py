"""The segmentation service: images in, embeddings cached, prompts answered.

Framework-free: the routers of :mod:`mobilesam.serve.routes` are a thin HTTP
shell over it. Embeddings live in the package's one
:class:`~mobilesam.inference.cache.EmbeddingCache`, keyed by
:func:`~mobilesam.inference.cache.image_digest` of the decoded pixels, as
:class:`CachedImage` entries; prompts are checked and answered by
``SamPredictor`` (the service adds only its own limits), segment everything by
the generator of :mod:`mobilesam.serve.everything`.

Concurrency: prompts and uploads share one predictor under one lock, waited
for at most ``limits.model_wait_s`` (then ``ServeError`` 503). Segment
everything is long work: it runs as a job of :mod:`mobilesam.serve.jobs`.
Each job worker thread hands its jobs to a child process of its own
(:mod:`mobilesam.serve.worker`, niced, ``limits.job_threads`` torch threads,
the model's weights shared), so a job holds neither the prompt lock nor the
server's interpreter lock; the job reuses the image's cached embedding. With
``limits.job_process=False`` jobs run in the worker threads themselves, with
a generator of their own over the same read-only weights. Threads that run
the model set their torch thread count first (``torch.set_num_threads`` sets
the calling thread's OpenMP team size). Decoding uploads and encoding results
happen outside the lock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..inference.cache import EmbeddingCache, ImageEmbedding, image_digest
from .codec import decode_upload
from .errors import ServeError
from .everything import everything_options, run_everything
from .jobs import Job, JobContext, JobQueue
from .limits import ServeLimits
from .worker import WorkerProcess

if TYPE_CHECKING:
    from ..modeling import Sam


@dataclass
class CachedImage:
    """One uploaded image as the service keeps it (the value of its embedding cache).

    image: HxWx3 uint8 RGB, kept for segment-everything. embedding: its
    1xCxhxw features (on the model's device) and (H, W) sizes. encode_ms: what
    encoding took. everything: segment-everything results by their options.
    """

    image_id: str
    image: np.ndarray
    embedding: ImageEmbedding
    encode_ms: float
    everything: dict[tuple, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Pixels plus embedding: what the cache's byte budget counts."""
        return int(self.image.nbytes) + self.embedding.nbytes


@dataclass
class Prediction:
    """Masks for one prompt set: masks CxHxW bool, scores C, low_res_logits CxSxS float32."""

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


class SegmentationService:
    """Uploads, cached embeddings, prompted masks and segment-everything for one model.

    ``model`` is a ``Sam`` or a zero-argument callable returning one (loaded on
    first use). ``model_name`` and ``weights`` only describe the model in
    ``info()``; ``weights="random"`` marks masks as meaningless. ``encoder``
    encodes uploads (an encoder backend; None: the model's own, exact).
    ``decoder`` answers prompts: ``"fast"`` (the shared-embedding decoder of
    ``FastPredictor``, whose per-image state is computed once per image and
    kept for the ``limits.prompt_states`` most recent images; masks within
    the optimised path's tolerances) or ``"exact"`` (``SamPredictor``'s).
    """

    def __init__(
        self,
        model: Sam | Callable[[], Sam],
        limits: ServeLimits | None = None,
        model_name: str | None = None,
        weights: str = "checkpoint",
        encoder: Any = None,
        decoder: str = "fast",
    ) -> None:
        if decoder not in ("fast", "exact"):
            raise ValueError(f"decoder must be 'fast' or 'exact', got {decoder!r}")
        self.limits = limits or ServeLimits()
        self.encoder = encoder  # an encoder backend for uploads (None: the model's own)
        self.decoder = decoder
        self.cache: EmbeddingCache[CachedImage] = EmbeddingCache(max_bytes=self.limits.cache_bytes)
        # Per-image prompt predictors (the decoder's image-side state), by image id.
        self._prompt_states: EmbeddingCache[Any] = EmbeddingCache(
            max_items=self.limits.prompt_states
        )
        self.model_name = model_name
        self.weights = weights
        self._model_or_factory = model
        self._model: Sam | None = None
        self._predictor: Any = None
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()  # held for every use of the prompt predictor
        self._results_lock = threading.Lock()  # segment-everything results of the entries
        self._prompt_threads = _torch_threads()
        self.jobs = JobQueue(
            workers=self.limits.job_workers,
            max_queued=self.limits.job_queue,
            keep=self.limits.jobs_kept,
            keep_s=self.limits.job_keep_s,
            timeout_s=self.limits.job_timeout_s,
            thread_init=lambda: _set_torch_threads(self.limits.job_threads),
        )
        self._local = threading.local()  # each job thread's worker process
        self._workers: list[WorkerProcess] = []
        self._workers_lock = threading.Lock()

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> Sam:
        """The model, loaded (and its predictor made) on first use."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    from ..inference.predictor import SamPredictor
                    from ..modeling import Sam

                    m = self._model_or_factory
                    model = m if isinstance(m, Sam) else m()
                    if not isinstance(model, Sam):
                        raise TypeError(f"the model factory returned {type(model).__name__}")
                    self._predictor = SamPredictor(model.eval(), encoder=self.encoder)
                    self._model = model
        return self._model

    @property
    def mask_input_size(self) -> int:
        """S of the 1xSxS low-res logits a prompt's ``mask_input`` holds (64 for 1024 inputs)."""
        return int(self.model.prompt_encoder.mask_input_size[0])

    def info(self) -> dict[str, Any]:
        """Model, cache and limit facts for the health endpoint."""
        model = self.model
        config = getattr(model, "config", None)
        return {
            "model": self.model_name or getattr(config, "name", type(model.image_encoder).__name__),
            "weights": self.weights,
            "image_size": model.image_size,
            "mask_input_size": self.mask_input_size,
            "device": str(model.device),
            "decoder": self.decoder,
            "cache": self.cache.stats(),
            "jobs": self.jobs.stats(),
            "limits": {
                "max_upload_bytes": self.limits.max_upload_bytes,
                "max_pixels": self.limits.max_pixels,
                "max_points": self.limits.max_points,
                "max_points_per_side": self.limits.max_points_per_side,
                "job_queue": self.limits.job_queue,
                "model_wait_s": self.limits.model_wait_s,
            },
        }

    @contextlib.contextmanager
    def _prompt_model(self) -> Iterator[Any]:
        """The prompt predictor, held; ``ServeError`` 503 after ``limits.model_wait_s``."""
        predictor = self._ensure_predictor()
        wait = self.limits.model_wait_s
        if not self._lock.acquire(timeout=wait):
            raise ServeError(
                503,
                "model_busy",
                f"the model stayed busy for {wait} s; try again shortly",
                retry_after=1,
            )
        try:
            _set_torch_threads(self._prompt_threads)
            yield predictor
        finally:
            self._lock.release()

    # ----------------------------------------------------------------- images
    def add_image(self, data: bytes) -> tuple[CachedImage, bool]:
        """Decode an uploaded file and cache its embedding; returns (entry, was_cached)."""
        rgb = decode_upload(data, self.limits.max_pixels)
        return self.add_array(rgb)

    def add_array(self, rgb: np.ndarray) -> tuple[CachedImage, bool]:
        """Cache the embedding of an HxWx3 uint8 RGB image; returns (entry, was_cached)."""
        image_id = image_digest(rgb)
        entry = self.cache.get(image_id)
        if entry is not None:
            return entry, True
        with self._prompt_model() as predictor:
            entry = self.cache.get(image_id)  # another thread may have just encoded it
            if entry is not None:
                return entry, True
            t0 = time.perf_counter()
            predictor.set_image(rgb)
            embedding = ImageEmbedding(
                features=predictor.features,
                original_size=tuple(predictor.original_size),
                input_size=tuple(predictor.input_size),
            )
            encode_ms = (time.perf_counter() - t0) * 1000.0
            predictor.reset_image()
            # Stored before the lock is released, so a thread waiting with the same image
            # finds it instead of encoding it again.
            entry = self.cache.put(image_id, CachedImage(image_id, rgb, embedding, encode_ms))
        return entry, False

    def get(self, image_id: str) -> CachedImage:
        """The cached image, or ``ServeError`` 404."""
        entry = self.cache.get(image_id)
        if entry is None:
            raise ServeError(
                404,
                "unknown_image",
                f"no image with id {image_id!r}: it was never uploaded or has been evicted "
                "from the cache; upload it again",
            )
        return entry

    def remove(self, image_id: str) -> None:
        self._prompt_states.remove(image_id)
        if not self.cache.remove(image_id):
            self.get(image_id)  # raises the 404

    def embedding(self, image_id: str, dtype: str = "float32") -> np.ndarray:
        """The image embedding, 1xCxhxw (1x256x64x64 for the official models), as ``dtype``."""
        if dtype not in ("float32", "float16"):
            raise ServeError(400, "bad_dtype", f"dtype must be float32 or float16, got {dtype!r}")
        entry = self.get(image_id)
        return entry.embedding.features.detach().cpu().numpy().astype(dtype)

    # ---------------------------------------------------------------- prompts
    def _ensure_predictor(self) -> Any:
        _ = self.model
        return self._predictor

    def check_prompt(
        self,
        size: tuple[int, int],
        points: Sequence[Sequence[float]] | None,
        box: Sequence[float] | None,
    ) -> None:
        """The service's own rules for a prompt on an (H, W) image; ``ServeError`` 400 if broken.

        At least one point or a box, at most ``limits.max_points`` points, and
        coordinates inside the image (a click outside it is a client's mistake).
        Shapes, labels and box order are the predictor's to check.
        """
        h, w = size
        if not points and box is None:
            raise ServeError(400, "bad_prompt", "give at least one point or a box")
        if points and len(points) > self.limits.max_points:
            raise ServeError(
                400,
                "bad_prompt",
                f"{len(points)} points; at most {self.limits.max_points} are allowed",
            )
        for i, (x, y) in enumerate(points or ()):
            if not (0 <= x <= w and 0 <= y <= h):
                raise ServeError(
                    400, "bad_prompt", f"point {i} ({x:g}, {y:g}) is outside the {w}x{h} image"
                )
        if box is not None and not all(0 <= v <= s for v, s in zip(box, (w, h, w, h))):
            raise ServeError(400, "bad_prompt", f"box {list(box)} is outside the {w}x{h} image")

    def predict(
        self,
        image_id: str,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        box: Sequence[float] | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """Masks for point / box prompts on a cached image, in its pixels (x right, y down).

        points: Nx2 XY; labels: N of 1 (object) or 0 (background) (or -1, ignored,
        as the predictor allows); box: XYXY; mask_input: 1xSxS low-res logits of
        an earlier prediction (S = mask_input_size). Empty ``points`` / ``labels``
        count as absent. Returns 3 masks with ``multimask`` (ambiguous single
        clicks), else 1. :meth:`check_prompt` applies the service's limits; the
        predictor's ``ValueError`` for a malformed prompt becomes a 400 ``bad_prompt``.
        """
        entry = self.get(image_id)
        emb = entry.embedding
        self.check_prompt(emb.original_size, points, box)
        with self._prompt_model():
            predictor = self._prompt_predictor(entry)
            try:
                masks, scores, low = predictor.predict(
                    point_coords=np.asarray(points, dtype=np.float64) if points else None,
                    point_labels=np.asarray(labels) if labels else None,
                    box=None if box is None else np.asarray(box, dtype=np.float64),
                    mask_input=mask_input,
                    multimask_output=multimask,
                )
            except ValueError as e:  # the predictor's checks of the prompt
                raise ServeError(400, "bad_prompt", str(e)) from None
        return Prediction(masks=masks, scores=scores, low_res_logits=low)

    def _prompt_predictor(self, entry: CachedImage) -> Any:
        """The predictor holding ``entry``'s embedding and decoder state (prompt lock held).

        Made on the image's first prompt and kept (LRU, ``limits.prompt_states``
        images), so whatever depends only on the image is computed once.
        """
        predictor = self._prompt_states.get(entry.image_id)
        if predictor is None:
            from ..inference.predictor import SamPredictor

            model = self.model
            if self.decoder == "fast":
                from ..inference.fast_predictor import FastTorchDecoder

                predictor = SamPredictor(model, decoder=FastTorchDecoder(model))
            else:
                predictor = SamPredictor(model)
            emb = entry.embedding
            predictor.set_embedding(emb.features, [emb.original_size], [emb.input_size])
            self._prompt_states.put(entry.image_id, predictor)
        return predictor

    # ------------------------------------------------------------- everything
    def everything(self, image_id: str, **options: float | int) -> list[dict[str, Any]]:
        """All masks of a cached image (automatic mask generator), largest first.

        ``options`` are keys of ``EVERYTHING_DEFAULTS`` (see
        :func:`~mobilesam.serve.everything.everything_options`). Each record has
        ``segmentation`` (COCO RLE), ``area``, ``bbox`` (XYWH), ``predicted_iou``,
        ``stability_score``, ``point_coords`` and ``crop_box``. Results are
        cached per image and options. Runs as a job (:meth:`everything_job`)
        and waits for it at most ``limits.everything_wait_s`` (then cancels it:
        ``ServeError`` 503); a full job queue is a 503 too.
        """
        job = self.everything_job(image_id, **options)
        wait = self.limits.everything_wait_s
        if not job.wait(wait):
            self.jobs.cancel(job.job_id)
            raise ServeError(
                503, "timeout", f"segment everything took longer than {wait} s", retry_after=wait
            )
        if job.exception is not None:
            raise job.exception
        if job.result is None:  # cancelled (by another client, or at shutdown)
            raise ServeError(503, "cancelled", "the segment-everything job was cancelled")
        return job.result

    def everything_job(self, image_id: str, **options: float | int) -> Job:
        """Segment everything as a job of ``self.jobs`` (``ServeError`` 503 if the queue is full).

        Options are checked and the image looked up now (400 / 404); a result
        already cached makes a job that is done at once. The job's ``result``
        is the records :meth:`everything` returns; its ``meta`` the image id and options.
        """
        opts = everything_options(options, self.limits.max_points_per_side)
        entry = self.get(image_id)
        key = tuple(sorted(opts.items()))
        meta = {"image_id": image_id, "options": opts, "size": entry.embedding.original_size}
        cached = entry.everything.get(key)
        if cached is not None:
            return self.jobs.finished_job("everything", cached, meta)

        def run(ctx: JobContext) -> list[dict[str, Any]]:
            return self._run_everything(entry, opts, key, ctx)

        return self.jobs.submit("everything", run, meta)

    def _run_everything(
        self, entry: CachedImage, opts: dict[str, float | int], key: tuple, ctx: JobContext
    ) -> list[dict[str, Any]]:
        """The job: in this thread's worker process (or here), stopping between batches."""
        cached = entry.everything.get(key)  # another job may have made it meanwhile
        if cached is not None:
            return cached
        ctx.progress(0.0, "starting")
        if self.limits.job_process:
            records = self._worker().run(entry.image, entry.embedding, opts, ctx)
        else:

            def on_batch(done: int, total: int) -> None:
                ctx.check()
                ctx.progress(done / total, f"decoding batch {done + 1} of {total}")

            records = run_everything(self.model, entry.image, opts, entry.embedding, on_batch)
        ctx.check()
        with self._results_lock:
            while len(entry.everything) >= self.limits.everything_results_per_image:
                entry.everything.pop(next(iter(entry.everything)))
            entry.everything[key] = records
        return records

    def _worker(self) -> WorkerProcess:
        """The calling job thread's worker process (made on its first job)."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = WorkerProcess(
                self.model, threads=self.limits.job_threads, nice=self.limits.job_nice
            )
            self._local.worker = worker
            with self._workers_lock:
                self._workers.append(worker)
        return worker

    def close(self) -> None:
        """Cancel the jobs, wait for the job threads and stop their worker processes."""
        self.jobs.shutdown()
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.close()


def service_options(predictor: Any) -> dict[str, Any]:
    """``create_app`` / ``SegmentationService`` arguments for a ``Predictor.load`` result.

    The torch model (prompts and segment everything run on it), the chosen
    encoder backend for uploads when it is not a torch one, and the prompt
    decoder: exact for ``torch-exact`` (the reference), fast otherwise.
    """
    return {
        "model": predictor.model_loader(),
        "encoder": None if predictor.backend.startswith("torch") else predictor.encoder,
        "decoder": "exact" if predictor.backend == "torch-exact" else "fast",
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _set_torch_threads(n: int) -> None:
    """Use ``n`` torch threads in the calling thread (cheap when it already does)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
