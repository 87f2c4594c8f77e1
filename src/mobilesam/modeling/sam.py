"""The Sam module: image encoder + prompt encoder + mask decoder, with SAM's
pre-processing (normalise, pad) and post-processing (upscale, crop, resize)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder


class Sam(nn.Module):
    """Segment Anything model; ``image_encoder`` is TinyViT (MobileSAM) or a ViT (SAM)."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def image_size(self) -> int:
        """Side of the square, padded encoder input (1024 for the official models)."""
        return int(self.image_encoder.img_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B)x3xhxw image in 0-255 units, then zero-pad to image_size."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        s = self.image_size
        return F.pad(x, (0, s - w, 0, s - h))

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits BxCx(4H)x(4W) -> BxCxHxW logits at the original image size.

        Bilinear to the padded input size, crop the padding (input_size is the
        resized image's (h, w)), bilinear to original_size; no antialiasing.
        """
        s = self.image_size
        masks = F.interpolate(masks, (s, s), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(
            masks, tuple(int(v) for v in original_size), mode="bilinear", align_corners=False
        )

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool | None = True,
        input_size: tuple[int, ...] | None = None,
        original_size: tuple[int, ...] | None = None,
        return_logits: bool = False,
        image_pe: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Embedding + prompts -> (masks, IoU predictions, low-res logits): the one decode path.

        image_embeddings: 1xCxhxw (shared by all B prompt sets) or BxCxhxw.
        points: (BxNx2 XY, BxN labels) and boxes Bx4 XYXY, in the resized input
        frame; mask_input: Bx1x(4h)x(4w) low-res logits of an earlier call.
        ``image_pe`` may pass a dense positional encoding computed once per image.
        Returns masks BxCxHxW at ``original_size`` (bool, or float logits with
        ``return_logits``; ``None`` when no sizes are given, e.g. in training),
        IoU BxC and low-res logits BxCx(4h)x(4w), C = 3 if ``multimask_output`` else 1
        (all 4 mask tokens with ``multimask_output=None``).
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.decode_embedded(image_embeddings, sparse, dense, image_pe)
        if multimask_output is not None:
            sel = slice(1, None) if multimask_output else slice(0, 1)
            low_res, iou = low_res[:, sel], iou[:, sel]
        if input_size is None or original_size is None:
            return None, iou, low_res
        masks = self.postprocess_masks(low_res, input_size, original_size)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res

    def decode_embedded(
        self,
        image_embeddings: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        image_pe: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder on embedded prompts: all tokens' low-res logits and IoU.

        ``sparse`` BxKxC / ``dense`` BxCxhxw prompt embeddings (from the prompt
        encoder, or from a graph's own traceable prompt embedding, as in export).
        """
        if image_pe is None:
            image_pe = self.prompt_encoder.get_dense_pe()
        return self.mask_decoder.predict_masks(image_embeddings, image_pe, sparse, dense)

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """segment-anything's batched API.

        Each record holds ``image`` (3xhxw, already resized to the long side),
        ``original_size`` (H, W) and optionally ``point_coords`` (BxNx2),
        ``point_labels`` (BxN), ``boxes`` (Bx4), ``mask_inputs`` (Bx1x256x256),
        all in the resized frame. Returns per image ``masks`` (bool, original
        size), ``iou_predictions`` and ``low_res_logits``.
        """
        images = torch.stack([self.preprocess(r["image"]) for r in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        outputs = []
        for record, emb in zip(batched_input, embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            masks, iou, low_res = self.decode(
                emb.unsqueeze(0),
                points=points,
                boxes=record.get("boxes"),
                mask_input=record.get("mask_inputs"),
                multimask_output=multimask_output,
                input_size=tuple(record["image"].shape[-2:]),
                original_size=record["original_size"],
            )
            outputs.append({"masks": masks, "iou_predictions": iou, "low_res_logits": low_res})
        return outputs
