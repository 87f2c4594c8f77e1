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

    def tensors(
        self,
        coords: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> tuple[torch.Tensor | None, ...]:
        """Input-frame numpy prompts -> float32 / int32 tensors on the model's device."""
        dev = self.model.device
        ct = None if coords is None else torch.as_tensor(coords, dtype=torch.float, device=dev)
        lt = None if labels is None else torch.as_tensor(labels, dtype=torch.int, device=dev)
        bt = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float, device=dev)
        mt = (
            None
            if mask_input is None
            else torch.as_tensor(mask_input, dtype=torch.float, device=dev)
        )
        return ct, lt, bt, mt

    def decode(
        self,
        prepared: Any,
        coords: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask_output: bool,
        return_logits: bool,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ct, lt, bt, mt = self.tensors(coords, labels, boxes, mask_input)
        out = self.decode_torch(
            prepared, ct, lt, bt, mt, multimask_output, return_logits, input_size, original_size
        )
        return tuple(t.cpu().numpy() for t in out)  # type: ignore[return-value]

    @torch.no_grad()
    def decode_torch(
        self,
        prepared: Any,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> TorchPrediction:
        """Tensor prompts in the input frame -> masks BxCxHxW, IoU BxC, low-res BxCxSxS."""
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        features, dense_pe = prepared
        points = (point_coords, point_labels) if point_coords is not None else None
        masks, iou, low = self.model.decode(
            features,
            points=points,
            boxes=boxes,
            mask_input=mask_input,
            multimask_output=multimask_output,
            input_size=input_size,
            original_size=original_size,
            return_logits=return_logits,
            image_pe=dense_pe,
        )
        assert masks is not None
        return masks, iou, low
