"""Click-to-segment service: a FastAPI app with a web page, over a cached-embedding service.

``create_app(model)`` builds the app; ``mobilesam serve`` runs it with uvicorn.
FastAPI is imported only when ``create_app`` is used.

Framework-free core (no FastAPI import):

- :mod:`.service` -- ``SegmentationService``: uploads decoded and encoded once,
  their embeddings in the package's ``EmbeddingCache`` (keyed by
  ``image_digest``), prompts answered by a per-image predictor (fast or exact
  decoder), one model lock; ``service_options`` turns a backend choice into
  its arguments;
- :mod:`.worker` -- segment-everything jobs in niced child processes;
- :mod:`.everything` -- the segment-everything options exposed (from
  ``AmgOptions``), the generator and its JSON records;
- :mod:`.codec` -- bytes in and out: uploads (``mobilesam.io.decode_image``
  errors as HTTP errors), mask PNG / RLE, embeddings, ``mask_input``;
- :mod:`.limits` (``ServeLimits``) and :mod:`.errors` (``ServeError``, the
  JSON 4xx every refusal becomes);
- :mod:`.projects` -- ``ProjectStore``: annotation projects (a folder of images,
  labels, objects in SQLite), :mod:`.formats` -- COCO / YOLO / PNG export and
  COCO import, :mod:`.webruntime` -- onnxruntime-web files and ``decoder.onnx``
  for the page's in-browser decoder.

HTTP layer:

- :mod:`.app` -- ``create_app``: middleware, error handlers, routers, static files;
- :mod:`.middleware` -- the request body limit;
- :mod:`.routes` -- routers: :mod:`~.routes.page` (``/``, ``/health``),
  :mod:`~.routes.images` (``/api/images...``), :mod:`~.routes.masks` (predict,
  everything), :mod:`~.routes.web` (``/api/web``, ``/web-runtime/*``,
  ``/api/decoder.onnx``), :mod:`~.routes.projects` (``/api/project...``), each
  given the service by :mod:`~.routes.deps`;
- :mod:`.schemas` -- the pydantic bodies shown at ``/docs``;
- ``static/`` -- the page's HTML, scripts and styles (no network access).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    "create_app": "mobilesam.serve.app",
    "SegmentationService": "mobilesam.serve.service",
    "service_options": "mobilesam.serve.service",
    "ServeLimits": "mobilesam.serve.limits",
    "ServeError": "mobilesam.serve.errors",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
