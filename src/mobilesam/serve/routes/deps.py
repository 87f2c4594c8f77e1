"""Dependencies the routes share: the app's segmentation service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..service import SegmentationService


def get_service(request: Request) -> SegmentationService:
    """The service ``create_app`` put in ``app.state``."""
    return request.app.state.service


#: A route parameter annotated with this receives the app's service.
ServiceDep = Annotated[SegmentationService, Depends(get_service)]
