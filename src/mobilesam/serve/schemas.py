"""Request and response bodies of the HTTP API (pydantic models, shown at /docs).

``EverythingRequest`` is built from the service's segment-everything options
(:mod:`mobilesam.serve.everything`, itself from ``AmgOptions``), so a default
changes in one place.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, create_model

from .everything import EVERYTHING_DEFAULTS

# Numbers in request bodies are strict: JSON true is not a number and "3" is not one either
# (what the document says is what is accepted; integers are still accepted as floats).
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
#: Largest integer SQLite stores (ids and versions of project objects).
SQLITE_MAX_INT = 2**63 - 1
ObjectId = Annotated[int, Path(ge=1, le=SQLITE_MAX_INT, description="the object's id")]


class ImageInfo(BaseModel):
    image_id: str = Field(description="content hash of the decoded pixels; use it in later calls")
    width: int
    height: int
    input_size: tuple[int, int] = Field(description="(h, w) of the resized encoder input")
    cached: bool = Field(description="true if this image was already encoded")
    encode_ms: float = Field(description="time the image encoder took when it was encoded")


class PredictRequest(BaseModel):
    """Prompts in pixels of the uploaded image (x right, y down, origin top-left)."""

    model_config = ConfigDict(extra="forbid")

    points: list[tuple[Finite, Finite]] | None = Field(
        default=None, description="[[x, y], ...]", examples=[[[320.0, 240.0]]]
    )
    labels: list[int] | None = Field(
        default=None, description="one per point: 1 object, 0 background", examples=[[1]]
    )
    box: tuple[Finite, Finite, Finite, Finite] | None = Field(
        default=None, description="[x0, y0, x1, y1]"
    )
    multimask: bool = Field(default=True, description="3 candidate masks (else 1)")
    mask_input: str | list | None = Field(
        default=None,
        description="low-res logits of an earlier mask, 1xSxS (S = mask_input_size from /health): "
        "base64 of little-endian float32, or nested lists",
    )
    formats: list[Literal["png", "rle"]] = Field(
        default=["png", "rle"], description="mask encodings to return"
    )
    return_logits: bool = Field(
        default=False, description="also return the low-res logits (base64 float32 CxSxS)"
    )


class RLE(BaseModel):
    size: tuple[int, int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (pycocotools.mask.decode reads it)")


class MaskOut(BaseModel):
    score: float = Field(description="predicted IoU")
    area: int
    bbox: tuple[int, int, int, int] = Field(description="[x, y, w, h]")
    png: str | None = Field(
        default=None, description="base64 PNG, 1-bit grayscale, white inside the mask"
    )
    rle: RLE | None = None


class PredictResponse(BaseModel):
    image_id: str
    width: int
    height: int
    masks: list[MaskOut]
    best: int = Field(description="index of the mask with the highest score")
    low_res_logits: str | None = None
    low_res_shape: tuple[int, int, int] | None = None
    elapsed_ms: float


#: Bounds (and descriptions) of the segment-everything options a request may set; their
#: names, order, types and defaults come from ``EVERYTHING_DEFAULTS``, i.e. from AmgOptions.
EVERYTHING_BOUNDS: dict[str, dict[str, Any]] = {
    "points_per_side": {"ge": 1, "description": "grid of point prompts per side"},
    "pred_iou_thresh": {"ge": 0.0, "le": 1.0},
    "stability_score_thresh": {"ge": 0.0, "le": 1.0},
    "box_nms_thresh": {"ge": 0.0, "le": 1.0},
    "min_mask_region_area": {"ge": 0, "le": 1_000_000},
}


def _everything_field(name: str, default: float | int) -> tuple[Any, Any]:
    kind = int if isinstance(default, int) else Finite
    return kind, Field(default=default, strict=True, **EVERYTHING_BOUNDS[name])


EverythingRequest = create_model(
    "EverythingRequest",
    __config__=ConfigDict(extra="forbid"),
    **{name: _everything_field(name, d) for name, d in EVERYTHING_DEFAULTS.items()},
)


class Annotation(BaseModel):
    segmentation: RLE
    area: int
    bbox: tuple[float, float, float, float] = Field(description="[x, y, w, h]")
    predicted_iou: float
    stability_score: float
    point_coords: list[tuple[float, float]]
    crop_box: tuple[float, float, float, float]


class EverythingResponse(BaseModel):
    image_id: str
    width: int
    height: int
    count: int
    masks: list[Annotation] = Field(description="largest first")
    elapsed_ms: float


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    model: str
    weights: str = Field(description='"random" means the masks are meaningless (demo weights)')
    image_size: int
    mask_input_size: int
    device: str
    decoder: Literal["fast", "exact"] = Field(
        description="how prompts are decoded: the fast shared-embedding decoder or the exact one"
    )
    cache: dict[str, int]
    jobs: dict[str, int] = Field(description="job workers, queued and running jobs, queue limit")
    limits: dict[str, int]


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. unknown_image")
    detail: str = Field(description="what was wrong, for people")


class JobProgress(BaseModel):
    fraction: float = Field(ge=0.0, le=1.0, description="share of the work done")
    stage: str = Field(description="what the job is doing, for people")


class EverythingJob(BaseModel):
    """A segment-everything job; poll ``GET /api/jobs/{job_id}`` until ``status`` is final."""

    job_id: str
    kind: Literal["everything"]
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    cancel_requested: bool = Field(description="cancelled while running: stops at its next batch")
    progress: JobProgress
    image_id: str
    options: EverythingRequest  # type: ignore[valid-type]
    created: float = Field(description="Unix time of submission")
    started: float | None = None
    finished: float | None = None
    result: EverythingResponse | None = Field(
        default=None, description="when done: what POST /everything answers"
    )
    error: str | None = Field(default=None, description="when failed: what went wrong")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}

#: The error answers every API route documents (``responses=`` of the route decorators).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422)
}

#: ... and for routes that use the model or the job queue: 503 when it is busy.
BUSY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    503: {
        "model": ErrorBody,
        "description": "busy (job queue full, model not free in time): retry after the "
        "Retry-After header's seconds",
        "headers": _RETRY_AFTER,
    },
}


# ------------------------------------------------------------------ browser decoder, projects
class WebConfig(BaseModel):
    runtime: str | None = Field(description="URL folder of the onnxruntime-web files, or null")
    runtime_hint: str | None = Field(description="how to install the runtime when it is missing")
    decoder: str | None = Field(description="URL of decoder.onnx, or null if it cannot be made")
    project: bool = Field(description="true if the server runs with an annotation project")


class ObjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=200, description="class name (added if new)")
    mask: RLE = Field(description="COCO compressed RLE at the image's size")
    prompts: dict[str, Any] | None = Field(default=None, description="points, labels, box")
    score: Finite | None = Field(default=None, description="predicted IoU of the mask")


class ObjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        ge=0, le=SQLITE_MAX_INT, description="the version this edit is based on (409 if stale)"
    )
    label: str | None = Field(default=None, min_length=1, max_length=200)
    mask: RLE | None = None
    prompts: dict[str, Any] | None = None
    score: Finite | None = None


class ObjectOut(BaseModel):
    id: int
    image: str = Field(description="the image's file name")
    label: str
    mask: RLE
    area: int = Field(description="mask pixels")
    bbox: tuple[int, int, int, int] = Field(description="XYWH")
    prompts: dict[str, Any]
    score: float | None
    version: int


class LabelIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ProjectImageOut(BaseModel):
    file_name: str
    width: int
    height: int
    objects: int


class ProjectInfo(BaseModel):
    name: str
    labels: list[str]
    images: list[ProjectImageOut]


class ImportReport(BaseModel):
    added: int
    skipped_images: list[str]
    problems: list[str]
