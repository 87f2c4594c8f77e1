"""SamPredictor: encode an image once, then answer many prompts against it.

Drop-in for segment-anything's predictor, plus input validation and batches
(several images encoded together, any number of prompt sets per image). It is
the predictor core (:mod:`mobilesam.inference.core`) with the exact PyTorch
backends (:mod:`mobilesam.inference.torch_backend`), plus the torch-facing
methods of segment-anything's API (``set_torch_image``, ``predict_torch``).
"""

from __future__ import annotations

import torch

from ..modeling import Sam
from .core import DecoderBackend, DecodeRequest, EncoderBackend, Prediction, PredictorCore
from .torch_backend import TorchDecoder, TorchEncoder

__all__ = ["Prediction", "SamPredictor"]


class _TensorEncoder:
    """Another runtime's encoder backend whose numpy embeddings become tensors here."""

    def __init__(self, encoder: EncoderBackend, device: torch.device) -> None:
        self.inner = encoder
        self.image_size = encoder.image_size
        self.image_format = encoder.image_format
        self.device = device

    def encode(self, images: list) -> torch.Tensor:
        return torch.as_tensor(self.inner.encode(images), device=self.device)

    def encode_tensors(self, tensors: list) -> torch.Tensor:
        raise NotImplementedError("set_torch_image needs the torch encoder; use set_image")


class SamPredictor(PredictorCore):
    """Prompted mask prediction for one image (or a batch of images) at a time.

    ``decoder`` replaces the exact decoder backend (the optimised predictor
    passes its shared-embedding decoder); ``encoder`` replaces the image
    encoder (e.g. an onnxruntime or OpenVINO backend chosen for this machine;
    its embeddings are turned into tensors). The defaults are the exact path.
    """

    def __init__(
        self,
        sam_model: Sam,
        encoder_batch_size: int = 4,
        decoder: DecoderBackend | None = None,
        encoder: EncoderBackend | None = None,
    ) -> None:
        self.model = sam_model
        # TinyViT has BatchNorm: predicting in training mode silently gives wrong masks.
        self.model.eval()
        self.encoder_batch_size = max(1, int(encoder_batch_size))
        self.torch_decoder = TorchDecoder(sam_model)
        super().__init__(
            TorchEncoder(sam_model, self.encoder_batch_size)
            if encoder is None
            else _TensorEncoder(encoder, sam_model.device),
            decoder if decoder is not None else self.torch_decoder,
        )

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Encode a 1x3xhxw image already resized (longest side = model input size)."""
        self.reset_image()
        features = self.encoder.encode_tensors([transformed_image])  # type: ignore[attr-defined]
        size = tuple(int(v) for v in original_image_size)
        self.set_embedding(features, [size], [tuple(int(v) for v in transformed_image.shape[-2:])])

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the resized input frame (see ``transform``).

        point_coords BxNx2, point_labels BxN, boxes Bx4, mask_input Bx1x256x256.
        Returns masks BxCxHxW, iou BxC, low-res logits BxCx256x256. Runs the
        decoder backend when it takes tensors (``decode_torch``), else the exact one.
        """
        self._require_image()
        request = DecodeRequest(
            self.input_sizes[0],
            self.original_sizes[0],
            coords=point_coords,
            labels=point_labels,
            boxes=boxes,
            mask_input=mask_input,
            multimask_output=multimask_output,
            return_logits=return_logits,
        )
        if hasattr(self.decoder, "decode_torch"):
            return self.decoder.decode_torch(self.prepared(0), request)  # type: ignore[attr-defined]
        return self.torch_decoder.decode_torch(
            self.torch_decoder.prepare(self.features[0:1]), request
        )
