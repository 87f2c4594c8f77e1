"""The routes of the web service, grouped in ``fastapi.APIRouter``s.

:mod:`.page` serves the page and ``/health``, :mod:`.images` uploads, image
facts, deletion and embeddings, :mod:`.masks` prompted masks and segment
everything. Each route gets the app's
:class:`~mobilesam.serve.service.SegmentationService` through the
:data:`.deps.ServiceDep` dependency and stays a thin shell over it.
"""
