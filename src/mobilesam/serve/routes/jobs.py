"""Job routes: segment everything as a job, then poll or cancel it.

``POST /api/images/{image_id}/everything/jobs`` answers 202 at once with the
job (``Location`` names its URL); ``GET /api/jobs/{job_id}`` reports status,
progress and, when done, the result; ``DELETE`` cancels it. The work runs in
the service's :class:`~mobilesam.serve.jobs.JobQueue`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ..jobs import Job
from ..schemas import BUSY_RESPONSES, ERROR_RESPONSES, EverythingJob, EverythingRequest
from .deps import ServiceDep

router = APIRouter(tags=["jobs"])


def _job_body(job: Job) -> dict[str, Any]:
    """An :class:`~mobilesam.serve.schemas.EverythingJob` body."""
    image_id = job.meta["image_id"]
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "kind": job.kind,
        "status": job.status.value,
        "cancel_requested": job.cancel_requested,
        "progress": {"fraction": round(job.fraction, 4), "stage": job.stage},
        "image_id": image_id,
        "options": job.meta["options"],
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "error": job.error,
    }
    if job.result is not None:
        h, w = job.meta["size"]
        body["result"] = {
            "image_id": image_id,
            "width": w,
            "height": h,
            "count": len(job.result),
            "masks": job.result,
            "elapsed_ms": round((job.run_seconds or 0.0) * 1000.0, 2),
        }
    return body


@router.post(
    "/api/images/{image_id}/everything/jobs",
    status_code=202,
    response_model=EverythingJob,
    responses=BUSY_RESPONSES,
)
def submit_everything(
    image_id: str, response: Response, service: ServiceDep, req: EverythingRequest | None = None
) -> dict[str, Any]:
    """Start segment everything (same options as ``/everything``) as a job; poll its URL.

    503 with ``Retry-After`` when the job queue is full. A result already
    cached gives a job that is done at once.
    """
    opts = (req or EverythingRequest()).model_dump()
    job = service.everything_job(image_id, **opts)
    response.headers["Location"] = f"/api/jobs/{job.job_id}"
    return _job_body(job)


@router.get("/api/jobs/{job_id}", response_model=EverythingJob, responses=ERROR_RESPONSES)
def get_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    """Status (queued, running, done, failed, cancelled), progress, and the result when done.

    Finished jobs are kept for a while (see ``/health`` limits); then 404.
    """
    return _job_body(service.jobs.get(job_id))


@router.delete("/api/jobs/{job_id}", response_model=EverythingJob, responses=ERROR_RESPONSES)
def cancel_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    """Cancel a job: a queued one never starts, a running one stops at its next batch.

    Answers the job as it is now (``cancel_requested`` while a running job
    winds down); a finished job is left unchanged.
    """
    return _job_body(service.jobs.cancel(job_id))
