"""The PyTorch backends of the predictor core: the exact path (the parity reference).

:class:`TorchEncoder` runs ``Sam.preprocess`` + the image encoder in batches;
:class:`TorchDecoder` runs :meth:`Sam.decode` (prompt encoder, mask decoder,
post-processing). Prompts arrive as numpy in the resized input frame and are
converted to tensors exactly as segment-anything's predictor converts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..modeling import Sam
from .core import DecodeRequest

TorchPrediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TorchEncoder:
    """Normalise, pad and encode images with ``model.image_encoder``, ``batch_size`` at a time."""

    def __init__(self, model: Sam, batch_size: int = 4) -> None:
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.image_size = model.image_size
        self.image_format = model.image_format

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """hxwx3 uint8 -> 1x3xhxw uint8 tensor on the model's device."""
        t = torch.as_tensor(image, device=self.model.device)
        return t.permute(2, 0, 1).contiguous()[None]

    def encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return self.encode_tensors([self.to_tensor(im) for im in images])

    @torch.no_grad()
    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """1x3xhxw images already resized (longest side = image_size) -> Bx256xHxW."""
        s = self.image_size
        for t in tensors:
            if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] != 3:
                raise ValueError(f"transformed image must be 1x3xHxW, got {tuple(t.shape)}")
            if max(t.shape[2:]) != s:
                raise ValueError(
                    f"transformed image's longest side must be {s}, got {tuple(t.shape[2:])}; "
                    "resize it with predictor.transform.apply_image first"
                )
        # TinyViT has BatchNorm: encoding in training mode silently gives wrong masks.
        if self.model.training:
            self.model.eval()
        dev = self.model.device
        feats = []
        for i in range(0, len(tensors), self.batch_size):
            chunk = tensors[i : i + self.batch_size]
            batch = torch.cat([self.model.preprocess(t.to(dev)) for t in chunk], dim=0)
            feats.append(self.model.image_encoder(batch))
        return torch.cat(feats, dim=0)


class TorchDecoder:
    """:meth:`Sam.decode` behind the decoder-backend interface."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.mask_threshold = float(model.mask_threshold)
        self.mask_input_size = int(model.prompt_encoder.mask_input_size[0])

    def prepare(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The dense positional encoding depends only on the model: computed once per
        # image rather than once per prompt.
        with torch.no_grad():
            return features, self.model.prompt_encoder.get_dense_pe()

    def tensors(self, request: DecodeRequest) -> DecodeRequest:
        """Numpy prompts -> float32 / int32 tensors on the model's device."""
        dev = self.model.device

        def t(value: Any, dtype: torch.dtype) -> torch.Tensor | None:
            return None if value is None else torch.as_tensor(value, dtype=dtype, device=dev)

        return request.replace(
            coords=t(request.coords, torch.float),
            labels=t(request.labels, torch.int),
            boxes=t(request.boxes, torch.float),
            mask_input=t(request.mask_input, torch.float),
        )

    def decode(
        self, prepared: Any, request: DecodeRequest
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.decode_torch(prepared, self.tensors(request))
        return tuple(_to_numpy(t) for t in out)  # type: ignore[return-value]

    @torch.no_grad()
    def decode_torch(self, prepared: Any, request: DecodeRequest) -> TorchPrediction:
        """Tensor prompts in the input frame -> masks BxCxHxW, IoU BxC, low-res BxCxSxS."""
        r = request
        if (r.coords is None) != (r.labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        features, dense_pe = prepared
        masks, iou, low = self.model.decode(
            features,
            points=(r.coords, r.labels) if r.coords is not None else None,
            boxes=r.boxes,
            mask_input=r.mask_input,
            multimask_output=r.multimask_output,
            input_size=r.input_size,
            original_size=r.original_size,
            return_logits=r.return_logits,
            image_pe=dense_pe,
        )
        assert masks is not None
        return masks, iou, low


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU numpy array; half-precision results (under autocast) come back as float32,
    since numpy has no bfloat16 and callers expect SAM's float32 scores and logits."""
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()
    return t.cpu().numpy()
