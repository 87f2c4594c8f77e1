"""What the page needs to run the mask decoder in the browser, served by the server itself.

Two things, neither loaded from the internet:

- the **onnxruntime-web** files (the npm package's ``dist`` folder): installed once
  with ``npm install --prefix ~/.cache/mobilesam/web-runtime onnxruntime-web@1.30``
  (``$MOBILESAM_HOME`` replaces ``~/.cache/mobilesam``), or any folder given as
  ``mobilesam serve --web-runtime DIR``. Only the three files of the single-threaded
  WebAssembly build in :data:`RUNTIME_FILES` are served (threads would need
  cross-origin isolation headers).
- the **decoder graph** ``decoder.onnx`` (SAM's ONNX decoder signature, see
  :mod:`mobilesam.export.graphs`) of the served model: exported by
  :func:`mobilesam.export.onnx.export_decoder` on first request and kept in a
  cache folder (default ``~/.cache/mobilesam/decoders/<key>/``), keyed by a hash
  of the prompt encoder's and mask decoder's weights, so another checkpoint gets
  its own graph. The export runs in a child process on a copy of the prompt side
  of the model (see :func:`export_apart`).
"""

from __future__ import annotations

import copy
import hashlib
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..hub import cache_dir

if TYPE_CHECKING:
    from torch import nn

    from ..modeling import Sam

ORT_WEB_VERSION = "1.30"
#: name -> media type of the files of the onnxruntime-web WebAssembly build the page loads.
RUNTIME_FILES = {
    "ort.wasm.min.js": "text/javascript",
    "ort-wasm-simd-threaded.mjs": "text/javascript",
    "ort-wasm-simd-threaded.wasm": "application/wasm",
}
INSTALL_HINT = (
    f"npm install --prefix {{dir}} onnxruntime-web@{ORT_WEB_VERSION}  "
    "(or pass mobilesam serve --web-runtime DIR)"
)


def default_runtime_dir() -> Path:
    return cache_dir() / "web-runtime"


def find_runtime(folder: str | Path | None) -> Path | None:
    """The folder holding :data:`RUNTIME_FILES`: ``folder`` itself, its ``dist`` or
    ``node_modules/onnxruntime-web/dist`` (an ``npm install --prefix`` folder); None if absent."""
    base = Path(folder) if folder is not None else default_runtime_dir()
    for cand in (base, base / "dist", base / "node_modules" / "onnxruntime-web" / "dist"):
        if all((cand / name).is_file() for name in RUNTIME_FILES):
            return cand
    return None


def decoder_key(model: Sam) -> str:
    """A short hash of what the decoder graph holds: its weights and the input size."""
    h = hashlib.sha256(str(model.image_size).encode())
    for part in (model.prompt_encoder, model.mask_decoder):
        for name, tensor in sorted(part.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class DecoderGraphs:
    """``decoder.onnx`` files of models, exported once into ``folder/<key>/``."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir() / "decoders"
        self._lock = threading.Lock()
        self._paths: dict[int, Path] = {}

    def path(self, model: Sam) -> Path:
        """The graph of ``model`` (exported now if not on disk yet; tens of seconds)."""
        known = self._paths.get(id(model))
        if known is not None and known.is_file():
            return known
        with self._lock:
            from ..io import atomic_path

            path = self.folder / decoder_key(model) / "decoder.onnx"
            if not path.is_file():
                with atomic_path(path, suffix=".onnx") as tmp:
                    export_apart(model, tmp)
            self._paths[id(model)] = path
            return path


def _encoder_stand_in(img_size: int) -> nn.Module:
    from torch import nn

    stand_in = nn.Module()
    stand_in.img_size = img_size  # all the decoder graph reads of the image encoder
    return stand_in


def prompt_side(model: Sam) -> Sam:
    """A copy of ``model`` without its image encoder: own prompt encoder and mask decoder
    tensors, the same input size, pixel statistics, threshold and config."""
    from ..modeling import Sam

    clone = Sam(
        image_encoder=_encoder_stand_in(model.image_size),
        prompt_encoder=copy.deepcopy(model.prompt_encoder),
        mask_decoder=copy.deepcopy(model.mask_decoder),
        pixel_mean=[float(v) for v in model.pixel_mean.flatten()],
        pixel_std=[float(v) for v in model.pixel_std.flatten()],
    )
    clone.mask_threshold = model.mask_threshold
    clone.image_format = model.image_format
    if hasattr(model, "config"):
        clone.config = model.config
    return clone.eval()


def export_apart(model: Sam, path: str | Path) -> None:
    """Export ``model``'s decoder graph to ``path`` from a child process.

    Not in the serving process: ``torch.export`` replaces the parameters of the
    modules it traces with fake tensors while it runs, so a request decoding with
    the same model in another thread fails (``.numpy() is not supported for tensor
    subclasses``), and its tracing holds the GIL for seconds at a time. The child
    gets a copy of the prompt side only (:func:`prompt_side`, a few MB) and raises
    its error here.
    """
    from ..export.onnx import export_decoder

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        pool.submit(export_decoder, prompt_side(model), str(path)).result()
