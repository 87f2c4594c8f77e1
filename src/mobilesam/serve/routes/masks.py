"""Mask routes: masks for point / box prompts, and segment everything."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter

from ..codec import b64encode, decode_mask_input, mask_bbox, mask_to_png, mask_to_rle
from ..schemas import (
    BUSY_RESPONSES,
    EverythingRequest,
    EverythingResponse,
    PredictRequest,
    PredictResponse,
)
from .deps import ServiceDep

router = APIRouter(tags=["masks"])


def _mask_record(mask: np.ndarray, score: float, formats: list[str]) -> dict[str, Any]:
    """A :class:`~mobilesam.serve.schemas.MaskOut` body for an HxW bool mask."""
    rec: dict[str, Any] = {"score": float(score), "area": int(mask.sum()), "bbox": mask_bbox(mask)}
    if "png" in formats:
        rec["png"] = b64encode(mask_to_png(mask))
    if "rle" in formats:
        rec["rle"] = mask_to_rle(mask)
    return rec


@router.post(
    "/api/images/{image_id}/predict", response_model=PredictResponse, responses=BUSY_RESPONSES
)
def predict(image_id: str, req: PredictRequest, service: ServiceDep) -> dict[str, Any]:
    """Masks for point and/or box prompts, as PNG and COCO RLE, with predicted IoU scores."""
    t0 = time.perf_counter()
    entry = service.get(image_id)
    mask_input = None
    if req.mask_input is not None:
        mask_input = decode_mask_input(req.mask_input, service.mask_input_size)
    pred = service.predict(
        image_id,
        points=req.points,
        labels=req.labels,
        box=req.box,
        mask_input=mask_input,
        multimask=req.multimask,
    )
    h, w = entry.embedding.original_size
    out: dict[str, Any] = {
        "image_id": image_id,
        "width": w,
        "height": h,
        "masks": [_mask_record(m, s, req.formats) for m, s in zip(pred.masks, pred.scores)],
        "best": int(pred.scores.argmax()),
    }
    if req.return_logits:
        low = pred.low_res_logits.astype("<f4")
        out["low_res_logits"] = b64encode(low.tobytes())
        out["low_res_shape"] = low.shape
    out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
    return out


@router.post(
    "/api/images/{image_id}/everything",
    response_model=EverythingResponse,
    responses=BUSY_RESPONSES,
)
def everything(
    image_id: str, service: ServiceDep, req: EverythingRequest | None = None
) -> dict[str, Any]:
    """Segment everything: masks from a grid of point prompts, largest first (COCO RLE)."""
    t0 = time.perf_counter()
    opts = (req or EverythingRequest()).model_dump()
    records = service.everything(image_id, **opts)
    h, w = service.get(image_id).embedding.original_size
    return {
        "image_id": image_id,
        "width": w,
        "height": h,
        "count": len(records),
        "masks": records,
        "elapsed_ms": round((time.perf_counter() - t0) * 1000.0, 2),
    }
