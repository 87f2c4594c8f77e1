"""Resource limits of the segmentation service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _default_job_workers() -> int:
    """Half the cores (at least 1, at most 4): the other half stays free for prompts."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request (and the whole cache) may cost.

    max_upload_bytes: largest request body (the image file, or a JSON prompt).
    max_pixels: largest decoded image, width * height; checked from the file
        header before any pixel is decoded, so decompression bombs are refused.
    cache_bytes: memory for cached images and their embeddings (LRU); the most
        recent image is always kept, even if it alone is larger.
    prompt_states: images whose decoder state (about 35 MB each for the
        official models) is kept between prompts; the others recompute it.
    max_points: most prompt points in one request.
    max_points_per_side: largest segment-everything grid (cost grows with its square).
    everything_results_per_image: segment-everything results kept per image.
    job_workers: threads running long jobs (segment everything) at once.
    job_queue: jobs that may wait for a worker; beyond that a submission gets 503.
    job_threads: torch threads one job uses (per worker thread), so that
        prompts still find a core while jobs run.
    job_process: run each job worker's jobs in a child process of its own
        (see :mod:`mobilesam.serve.worker`): a job then never holds the
        server's interpreter lock. False runs them in the worker threads.
    job_nice: scheduling niceness added to those child processes (0-19), so
        that the operating system serves prompts first.
    jobs_kept: finished jobs kept for polling (oldest dropped first) ...
    job_keep_s: ... and for at most this many seconds.
    job_timeout_s: longest a job may run; it fails at its next batch after that.
    model_wait_s: longest a prompt or upload waits for the model before a 503.
    everything_wait_s: longest the synchronous ``/everything`` waits for its job.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    cache_bytes: int = 1024 * 1024 * 1024
    prompt_states: int = 4
    max_points: int = 64
    max_points_per_side: int = 64
    everything_results_per_image: int = 4
    job_workers: int = field(default_factory=_default_job_workers)
    job_queue: int = 8
    job_threads: int = 1
    job_process: bool = True
    job_nice: int = 10
    jobs_kept: int = 64
    job_keep_s: int = 600
    job_timeout_s: int = 600
    model_wait_s: int = 10
    everything_wait_s: int = 300

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "cache_bytes",
            "prompt_states",
            "max_points",
            "max_points_per_side",
            "everything_results_per_image",
            "job_workers",
            "job_queue",
            "job_threads",
            "jobs_kept",
            "job_keep_s",
            "job_timeout_s",
            "model_wait_s",
            "everything_wait_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ServeLimits.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.job_process, bool):
            raise ValueError(f"ServeLimits.job_process must be a bool, got {self.job_process!r}")
        if not isinstance(self.job_nice, int) or not 0 <= self.job_nice <= 19:
            raise ValueError(f"ServeLimits.job_nice must be 0-19, got {self.job_nice!r}")
