"""The onnxruntime backends of the predictor core (numpy in, numpy out; no torch).

:class:`OnnxEncoder` runs ``encoder.onnx`` (normalisation + image encoder) on
the resized image placed top-left in an SxS canvas filled with the pixel mean
(the graph normalises, which turns that fill into SAM's zero padding exactly).
:class:`OnnxDecoder` runs ``decoder.onnx``, SAM's ONNX decoder signature, on
prompts in the resized input frame (see :mod:`mobilesam.export.graphs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.core import DecodeRequest

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_session(path: str | Path, num_threads: int | None = None) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU, with full graph optimisation.

    ``num_threads`` defaults to the number of usable cores. onnxruntime is imported
    here, not with the module: the OpenVINO backends reuse this module's image and
    prompt handling without running anything on onnxruntime.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX graph not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    opts.intra_op_num_threads = int(num_threads)
    opts.inter_op_num_threads = 1
    # Idle worker threads sleep instead of spinning: on a small or shared CPU the spinning
    # threads steal the cores the work needs (measured 2.2 s -> 1.8 s for the vit_t
    # encoder on a busy 2-core machine; no difference worth keeping on an idle one).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """``encoder.onnx``: resized uint8 images -> 1x256x(S/16)x(S/16) embeddings each."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        self.session = load_session(path, num_threads)
        self.read_metadata(self.session.get_modelmeta().custom_metadata_map, path)

    def read_metadata(self, meta: dict[str, str], path: str | Path) -> None:
        """The ``mobilesam.*`` facts the export wrote into the graph (image size, mean, ...)."""
        if "mobilesam.image_size" not in meta:
            raise ValueError(
                f"{path} has no mobilesam metadata; export it with `mobilesam export onnx`"
            )
        self.image_size = int(meta["mobilesam.image_size"])
        self.image_format = meta.get("mobilesam.image_format", "RGB")
        self.pixel_mean = np.array(json.loads(meta["mobilesam.pixel_mean"]), np.float32)
        self.mask_threshold = float(meta.get("mobilesam.mask_threshold", "0.0"))
        self.mask_input_size = int(meta.get("mobilesam.mask_input_size", self.image_size // 4))

    def canvas(self, resized: np.ndarray) -> np.ndarray:
        """hxwx3 uint8 -> the graph input: 1x3xSxS float32, the image top-left, mean elsewhere."""
        s = self.image_size
        out = np.empty((1, 3, s, s), np.float32)
        out[0] = self.pixel_mean[:, None, None]
        h, w = resized.shape[:2]
        out[0, :, :h, :w] = resized.transpose(2, 0, 1)
        return out

    def run(self, canvas: np.ndarray) -> np.ndarray:
        """One prepared canvas -> its embedding."""
        return self.session.run(None, {"image": canvas})[0]

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.run(self.canvas(im)) for im in images], axis=0)


class OnnxDecoder:
    """``decoder.onnx`` (all mask tokens) behind the decoder-backend interface."""

    def __init__(
        self,
        path: str | Path,
        num_threads: int | None = None,
        mask_threshold: float | None = None,
        mask_input_size: int | None = None,
    ) -> None:
        self.session = load_session(path, num_threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("mobilesam.return_single_mask") == "true":
            raise ValueError(
                f"{path} returns one mask per prompt; the predictor needs the "
                "all-masks decoder (decoder.onnx)"
            )
        # unless given: the graph's own metadata (the exporter writes the model's), else SAM's
        if mask_threshold is None:
            mask_threshold = float(meta.get("mobilesam.mask_threshold", "0.0"))
        if mask_input_size is None:
            mask_input_size = int(meta.get("mobilesam.mask_input_size", "256"))
        self.mask_threshold = mask_threshold
        self.mask_input_size = mask_input_size
        self.embedding_shape = tuple(self.session.get_inputs()[0].shape)

    def prepare(self, features: np.ndarray) -> np.ndarray:
        return features

    @staticmethod
    def sam_prompts(
        coords: np.ndarray | None, labels: np.ndarray | None, boxes: np.ndarray | None, b: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """B prompt sets -> SAM-ONNX ``point_coords`` BxNx2 / ``point_labels`` BxN (float32).

        Box corners get labels 2 and 3; without a box SAM appends a padding
        point (0, 0) with label -1.
        """
        parts_c: list[np.ndarray] = []
        parts_l: list[np.ndarray] = []
        if coords is not None and labels is not None:
            parts_c.append(coords)
            parts_l.append(labels.astype(np.float32))
        if boxes is not None:
            parts_c.append(boxes.reshape(b, 2, 2))
            parts_l.append(np.tile(np.array([[2.0, 3.0]], np.float32), (b, 1)))
        else:
            parts_c.append(np.zeros((b, 1, 2)))
            parts_l.append(-np.ones((b, 1), np.float32))
        # float64 -> float32 before the graph adds 0.5, as the torch predictor does.
        return np.concatenate(parts_c, 1).astype(np.float32), np.concatenate(parts_l, 1)

    def run(
        self,
        features: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        original_size: tuple[int, int],
    ) -> list[np.ndarray]:
        """Raw graph outputs (masks Bx4xHxW logits, IoU Bx4, low-res Bx4xSxS)."""
        m = self.mask_input_size
        if mask_input is None:
            mask, has = np.zeros((1, 1, m, m), np.float32), np.zeros(1, np.float32)
        else:
            mask, has = mask_input.reshape(1, 1, m, m).astype(np.float32), np.ones(1, np.float32)
        feed = {
            "image_embeddings": features,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask,
            "has_mask_input": has,
            "orig_im_size": np.array(original_size, np.float32),
        }
        return self.session.run(None, feed)

    def decode(self, prepared: Any, request: DecodeRequest) -> Prediction:
        r = request
        if r.coords is None and r.boxes is None:
            raise ValueError(
                "the ONNX decoder needs at least one point or a box (SAM's ONNX signature "
                "has no prompt-free form)"
            )
        b = r.num_sets
        c, lab = self.sam_prompts(r.coords, r.labels, r.boxes, b)
        if r.mask_input is None:
            outputs = self.run(prepared, c, lab, None, r.original_size)
        else:  # the graph takes one mask input: one call per prompt set
            runs = [
                self.run(prepared, c[i : i + 1], lab[i : i + 1], r.mask_input[i], r.original_size)
                for i in range(b)
            ]
            outputs = [np.concatenate(parts, axis=0) for parts in zip(*runs)]
        masks, iou, low = outputs
        sel = slice(1, None) if r.multimask_output else slice(0, 1)
        masks, iou, low = masks[:, sel], iou[:, sel], low[:, sel]
        if not r.return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low
