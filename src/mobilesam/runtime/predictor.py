"""OnnxPredictor: ``SamPredictor``'s API on onnxruntime, where torch is not installed.

The predictor core (:mod:`mobilesam.inference.core`: validation, transform,
image state, batch rules) with the onnxruntime backends
(:mod:`mobilesam.runtime.onnx_backend`). Imports numpy, Pillow, onnxruntime and
the torch-free parts of mobilesam only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..inference.core import Prediction, PredictorCore
from ..inference.transforms import get_preprocess_shape
from ..inference.validation import check_points
from .onnx_backend import OnnxDecoder, OnnxEncoder


class OnnxPredictor(PredictorCore):
    """Prompted masks from ``encoder.onnx`` + ``decoder.onnx`` (see mobilesam.export).

    Same calling convention and outputs as :class:`mobilesam.SamPredictor`:
    ``set_image(HxWx3 uint8)`` then ``predict(...)`` -> masks CxHxW, scores C,
    low-res logits Cx256x256; ``set_image_batch`` / ``predict_batch`` too.
    """

    def __init__(
        self,
        encoder_path: str | Path,
        decoder_path: str | Path,
        num_threads: int | None = None,
    ) -> None:
        encoder = OnnxEncoder(encoder_path, num_threads)
        decoder = OnnxDecoder(
            decoder_path, num_threads, encoder.mask_threshold, encoder.mask_input_size
        )
        self.image_size = encoder.image_size
        self.image_format = encoder.image_format
        self.mask_threshold = encoder.mask_threshold
        self.mask_input_size = encoder.mask_input_size
        super().__init__(encoder, decoder)

    @classmethod
    def from_dir(
        cls, directory: str | Path, int8: bool = False, num_threads: int | None = None
    ) -> OnnxPredictor:
        """Load ``encoder[.int8].onnx`` and ``decoder[.int8].onnx`` from an export folder."""
        d = Path(directory)
        suffix = ".int8.onnx" if int8 else ".onnx"
        return cls(d / f"encoder{suffix}", d / f"decoder{suffix}", num_threads)

    def encoder_input(self, image: Any, image_format: str = "RGB") -> tuple[np.ndarray, tuple]:
        """HxWx3 uint8 -> (1x3xSxS float32 mean-padded encoder input, (H, W))."""
        resized, size = self.prepare_image(image, image_format)
        return self.encoder.canvas(resized), size  # type: ignore[attr-defined]

    def set_embedding(
        self,
        features: Any,
        original_sizes: Any,
        input_sizes: Any = None,
    ) -> None:
        """Use a stored 1x256x64x64 embedding of an image of size (H, W)."""
        emb = np.asarray(features, np.float32)
        want = self.decoder.embedding_shape  # type: ignore[attr-defined]
        if emb.shape != want:
            raise ValueError(f"embedding must have shape {want}, got {emb.shape}")
        super().set_embedding(emb, original_sizes, input_sizes)

    def transform_size(self, size: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of an image -> (h, w) of its resized encoder input."""
        return get_preprocess_shape(int(size[0]), int(size[1]), self.image_size)

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
        coords, labels = check_points(point_coords, point_labels, batched=True)
        return self._decode_numpy(0, multimask_output, return_logits, coords=coords, labels=labels)
