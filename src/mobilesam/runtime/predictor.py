"""OnnxPredictor: ``SamPredictor``'s ``set_image`` / ``predict`` on onnxruntime.

Imports numpy, Pillow, onnxruntime and the torch-free parts of mobilesam
(``inference.transforms``, ``inference.validation``) only, so it runs where
torch is not installed. The preprocessing is the predictor's: the same Pillow
resize, then the image is placed top-left in an SxS canvas filled with the
pixel mean (the encoder graph normalises, which turns that fill into SAM's
zero padding exactly).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..inference.transforms import ResizeLongestSide
from ..inference.validation import as_rgb_uint8, check_boxes, check_mask_input, check_points

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_session(path: str | Path, num_threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session with full graph optimisation.

    ``num_threads`` defaults to the number of usable cores.
    """
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


class OnnxPredictor:
    """Prompted masks from ``encoder.onnx`` + ``decoder.onnx`` (see mobilesam.export).

    Same calling convention and outputs as :class:`mobilesam.SamPredictor`:
    ``set_image(HxWx3 uint8)`` then ``predict(...)`` -> masks CxHxW, scores C,
    low-res logits Cx256x256.
    """

    def __init__(
        self,
        encoder_path: str | Path,
        decoder_path: str | Path,
        num_threads: int | None = None,
    ) -> None:
        self.encoder = load_session(encoder_path, num_threads)
        self.decoder = load_session(decoder_path, num_threads)
        meta = self.decoder.get_modelmeta().custom_metadata_map
        enc_meta = self.encoder.get_modelmeta().custom_metadata_map
        if "mobilesam.image_size" not in enc_meta:
            raise ValueError(
                f"{encoder_path} has no mobilesam metadata; export it with `mobilesam export onnx`"
            )
        if meta.get("mobilesam.return_single_mask") == "true":
            raise ValueError(
                f"{decoder_path} returns one mask per prompt; OnnxPredictor needs the "
                "all-masks decoder (decoder.onnx)"
            )
        self.image_size = int(enc_meta["mobilesam.image_size"])
        self.pixel_mean = np.array(json.loads(enc_meta["mobilesam.pixel_mean"]), np.float32)
        self.mask_threshold = float(enc_meta.get("mobilesam.mask_threshold", "0.0"))
        self.image_format = enc_meta.get("mobilesam.image_format", "RGB")
        self.mask_input_size = int(enc_meta.get("mobilesam.mask_input_size", self.image_size // 4))
        self.transform = ResizeLongestSide(self.image_size)
        self.reset_image()

    @classmethod
    def from_dir(
        cls, directory: str | Path, int8: bool = False, num_threads: int | None = None
    ) -> OnnxPredictor:
        """Load ``encoder[.int8].onnx`` and ``decoder[.int8].onnx`` from an export folder."""
        d = Path(directory)
        suffix = ".int8.onnx" if int8 else ".onnx"
        return cls(d / f"encoder{suffix}", d / f"decoder{suffix}", num_threads)

    # ------------------------------------------------------------------ images
    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: np.ndarray | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def prepare_image(self, image: Any, image_format: str = "RGB") -> tuple[np.ndarray, tuple]:
        """HxWx3 uint8 -> (1x3xSxS float32 mean-padded encoder input, (H, W))."""
        rgb = as_rgb_uint8(image, image_format)
        if self.image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        resized = self.transform.apply_image(rgb)
        s = self.image_size
        canvas = np.empty((1, 3, s, s), np.float32)
        canvas[0] = self.pixel_mean[:, None, None]
        h, w = resized.shape[:2]
        canvas[0, :, :h, :w] = resized.transpose(2, 0, 1)
        return canvas, rgb.shape[:2]

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an HxWx3 uint8 image (RGB or BGR; grayscale / RGBA are converted)."""
        canvas, size = self.prepare_image(image, image_format)
        self.reset_image()
        (self.features,) = self.encoder.run(None, {"image": canvas})
        self.original_size = (int(size[0]), int(size[1]))
        self.input_size = self.transform_size(size)
        self.is_image_set = True

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        """Use a stored 1x256x64x64 embedding of an image of size (H, W)."""
        emb = np.asarray(embedding, np.float32)
        want = tuple(self.decoder.get_inputs()[0].shape)
        if emb.shape != want:
            raise ValueError(f"embedding must have shape {want}, got {emb.shape}")
        self.features = emb
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = self.transform_size(self.original_size)
        self.is_image_set = True

    def transform_size(self, size: tuple[int, ...]) -> tuple[int, int]:
        from ..inference.transforms import get_preprocess_shape

        return get_preprocess_shape(int(size[0]), int(size[1]), self.image_size)

    def get_image_embedding(self) -> np.ndarray:
        """The image embedding, 1x256x64x64 float32."""
        self._require_image()
        assert self.features is not None
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set or self.features is None:
            raise RuntimeError("no image is set: call set_image(...) before predicting")

    # ---------------------------------------------------------------- prompts
    def _run_decoder(
        self, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None
    ) -> list[np.ndarray]:
        """coords BxNx2 (input frame), labels BxN in SAM-ONNX convention -> raw outputs."""
        assert self.original_size is not None
        m = self.mask_input_size
        if mask_input is None:
            mask, has = np.zeros((1, 1, m, m), np.float32), np.zeros(1, np.float32)
        else:
            mask, has = mask_input.reshape(1, 1, m, m).astype(np.float32), np.ones(1, np.float32)
        feed = {
            "image_embeddings": self.features,
            "point_coords": coords.astype(np.float32),
            "point_labels": labels.astype(np.float32),
            "mask_input": mask,
            "has_mask_input": has,
            "orig_im_size": np.array(self.original_size, np.float32),
        }
        return self.decoder.run(None, feed)

    def _select(
        self, outputs: list[np.ndarray], multimask_output: bool, return_logits: bool
    ) -> Prediction:
        masks, iou, low = outputs
        sel = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou, low = masks[:, sel], iou[:, sel], low[:, sel]
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt set, in original-image pixels (as ``SamPredictor.predict``).

        point_coords: Nx2 XY; point_labels: N (1 fg, 0 bg, -1 ignore); box: XYXY;
        mask_input: 1x256x256 low-res logits from a previous call. Returns masks
        CxHxW (bool, or float logits with ``return_logits``), scores C and
        low-res logits Cx256x256, with C = 3 if ``multimask_output`` else 1.
        """
        self._require_image()
        assert self.original_size is not None
        coords, labels = check_points(point_coords, point_labels)
        boxes = check_boxes(box)
        masks_in = check_mask_input(mask_input, self.mask_input_size)
        if coords is None and boxes is None:
            raise ValueError(
                "the ONNX decoder needs at least one point or a box (SAM's ONNX signature "
                "has no prompt-free form)"
            )
        parts_c: list[np.ndarray] = []
        parts_l: list[np.ndarray] = []
        if coords is not None:
            parts_c.append(self.transform.apply_coords(coords, self.original_size))
            parts_l.append(labels.astype(np.float32))
        if boxes is not None:
            corners = self.transform.apply_boxes(boxes, self.original_size).reshape(2, 2)
            parts_c.append(corners)
            parts_l.append(np.array([2.0, 3.0], np.float32))
        else:  # SAM appends a padding point when there is no box
            parts_c.append(np.zeros((1, 2)))
            parts_l.append(np.array([-1.0], np.float32))
        # float64 -> float32 before the graph adds 0.5, as the torch predictor does.
        c = np.concatenate(parts_c, 0).astype(np.float32)[None]
        lab = np.concatenate(parts_l, 0)[None]
        masks, iou, low = self._select(
            self._run_decoder(c, lab, masks_in), multimask_output, return_logits
        )
        return masks[0], iou[0], low[0]

    def predict_points(
        self,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """B point prompt sets in one decoder call (e.g. a grid of single points).

        point_coords BxNx2 XY in original-image pixels, point_labels BxN. Returns
        masks BxCxHxW, scores BxC, low-res logits BxCx256x256, equal to B
        ``predict`` calls.
        """
        self._require_image()
        assert self.original_size is not None
        coords, labels = check_points(point_coords, point_labels, batched=True)
        assert coords is not None and labels is not None
        b = coords.shape[0]
        c = self.transform.apply_coords(coords, self.original_size).astype(np.float32)
        c = np.concatenate([c, np.zeros((b, 1, 2), np.float32)], axis=1)
        lab = np.concatenate([labels, -np.ones((b, 1))], axis=1).astype(np.float32)
        return self._select(self._run_decoder(c, lab, None), multimask_output, return_logits)
