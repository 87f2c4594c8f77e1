"""The OpenVINO backends of the predictor core: the exported ONNX graphs, fp32 or bf16.

OpenVINO reads ``encoder.onnx`` / ``decoder.onnx`` (the files ``ort-fp32``
runs) directly. The ONNX metadata arrives as the model's ``framework`` runtime
info. ``precision`` becomes ``INFERENCE_PRECISION_HINT``: ``"f32"`` keeps
float32 arithmetic (otherwise OpenVINO silently picks bf16 on CPUs that have
it), ``"bf16"`` asks for it. With ``cache_dir`` the compiled blob is saved
there and reused by the next process (compile 0.55 s -> 0.28 s for vit_t).

Everything except running the graph (the canvas, SAM's prompt layout, mask
selection) is the onnxruntime backends' code, inherited: :class:`OpenVinoSession`
stands in for their onnxruntime session. Numpy in and out;
no torch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.core import DecodeRequest
from ..io import atomic_write_text
from .onnx_backend import OnnxDecoder, OnnxEncoder, Prediction

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
CONVERTER = "openvino.tools.ovc"


def _import_openvino() -> Any:
    """``import openvino``, without loading its model converter until someone calls it.

    ``openvino/__init__`` imports its converter (``openvino.tools.ovc``, for
    ``openvino.convert_model``) inside ``try: ... except ImportError``; without it,
    importing this module took 37 ms where ``import openvino`` alone took 89 ms (after
    numpy and Pillow, 2-core Xeon), in a one-click process that never converts a model.
    A ``None`` in ``sys.modules`` makes that import fail (Python's documented way to block
    one); afterwards ``convert_model`` is put back as a stand-in that imports the
    converter on first use.
    """
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = CONVERTER not in sys.modules
    if blocked:
        sys.modules[CONVERTER] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if blocked and sys.modules.get(CONVERTER, 0) is None:
            del sys.modules[CONVERTER]
    if blocked and not hasattr(openvino, "convert_model"):
        openvino.convert_model = _convert_model
    return openvino


def _convert_model(*args: Any, **kwargs: Any) -> Any:
    """``openvino.convert_model``, imported when first called (see :func:`_import_openvino`)."""
    from openvino.tools.ovc import convert_model

    sys.modules["openvino"].convert_model = convert_model
    return convert_model(*args, **kwargs)


ov = _import_openvino()


class OpenVinoSession:
    """A graph compiled for the CPU, answering ``run(None, feed)`` as an onnxruntime session.

    ``meta``: the graph's ONNX metadata (``mobilesam.*`` keys).
    """

    def __init__(
        self,
        path: str | Path,
        precision: str = "fp32",
        num_threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX graph not found: {path}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if num_threads is None:
            num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            # one request at a time, as the predictor sends them: all threads on it
            "PERFORMANCE_HINT": "LATENCY",
        }
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        core = ov.Core()
        self.precision = precision
        sidecar = None if cache_dir is None else Path(cache_dir) / f"{path.name}.meta.json"
        known = _read_sidecar(sidecar, path)
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        if known is not None:
            # Compiling from the path lets OpenVINO import its cached blob without reading
            # (parsing) the ONNX file: ~40-80 ms less per graph on a cold start. OpenVINO
            # checks the blob against the file itself (a changed file is compiled again);
            # the metadata the blob lacks was kept beside it on the first load.
            self.meta = known
            self.compiled = core.compile_model(str(path), "CPU", config)
        else:
            model = core.read_model(str(path))
            rt = model.get_rt_info()
            fw = rt["framework"] if "framework" in rt else {}
            self.meta = {k: v.astype(str) for k, v in fw.items()}
            self.compiled = core.compile_model(model, "CPU", config)
            if sidecar is not None:
                record = {"graph": _stat(path), "meta": self.meta}
                atomic_write_text(sidecar, json.dumps(record))
        self.request = self.compiled.create_infer_request()
        self.input_names = {i.get_any_name() for i in self.compiled.inputs}

    def run(self, output_names: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs, as new arrays (the request reuses its buffers on the next call)."""
        feed = {k: np.ascontiguousarray(v) for k, v in feed.items() if k in self.input_names}
        result = self.request.infer(feed)
        return [np.array(result[o], copy=True) for o in self.compiled.outputs]


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_sidecar(sidecar: Path | None, graph: Path) -> dict[str, str] | None:
    """The graph's metadata kept beside its compiled blob, if written for this very file."""
    if sidecar is None:
        return None
    try:
        record = json.loads(sidecar.read_text())
        if record["graph"] == _stat(graph) and isinstance(record["meta"], dict):
            return record["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


class OpenVinoEncoder(OnnxEncoder):
    """``encoder.onnx`` on OpenVINO: resized uint8 images -> 1x256x(S/16)x(S/16) each."""

    def __init__(
        self,
        path: str | Path,
        precision: str = "fp32",
        num_threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.session = OpenVinoSession(path, precision, num_threads, cache_dir)
        self.read_metadata(self.session.meta, path)


class OpenVinoDecoder(OnnxDecoder):
    """``decoder.onnx`` on OpenVINO, behind the same ``decode`` as :class:`OnnxDecoder`.

    Decodes at most ``max_sets`` prompt sets per graph call: the graph's full-size
    masks (B x 4 x 1024 x 1024 before the crop) made one 64-prompt call peak at
    6.2 GB, and OpenVINO keeps that memory for the next call of that shape.
    """

    max_sets = 16

    def __init__(
        self,
        path: str | Path,
        precision: str = "fp32",
        num_threads: int | None = None,
        mask_threshold: float = 0.0,
        mask_input_size: int = 256,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.session = OpenVinoSession(path, precision, num_threads, cache_dir)
        if self.session.meta.get("mobilesam.return_single_mask") == "true":
            raise ValueError(
                f"{path} returns one mask per prompt; the predictor needs the "
                "all-masks decoder (decoder.onnx)"
            )
        self.mask_threshold = mask_threshold
        self.mask_input_size = mask_input_size

    def decode(self, prepared: Any, request: DecodeRequest) -> Prediction:
        b, n = request.num_sets, self.max_sets
        if b <= n:
            return super().decode(prepared, request)

        def part(value: Any, i: int) -> Any:
            return None if value is None else value[i : i + n]

        parts = [
            super(OpenVinoDecoder, self).decode(
                prepared,
                request.replace(
                    coords=part(request.coords, i),
                    labels=part(request.labels, i),
                    boxes=part(request.boxes, i),
                    mask_input=part(request.mask_input, i),
                ),
            )
            for i in range(0, b, n)
        ]
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts))  # type: ignore[return-value]
