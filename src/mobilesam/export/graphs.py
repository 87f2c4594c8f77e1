"""The two modules that are exported to ONNX: the encoder and SAM's ONNX decoder.

Both wrap a loaded :class:`~mobilesam.modeling.Sam` without copying weights.

Encoder graph input
    ``image``: 1x3xSxS float32 in 0-255 units, the resized image (longest side
    S) placed top-left and the rest filled with the **pixel mean**. The graph
    normalises with ``(x - mean) / std``; padding with the mean makes the padded
    area exactly 0 after normalisation, which is what SAM's zero padding of the
    normalised image gives, so the preprocessing is bit-identical to
    ``Sam.preprocess`` without putting a data-dependent pad inside the graph.

Decoder graph
    The signature of segment-anything's ``SamOnnxModel`` (what SAM's web demo
    and ONNX tools load): inputs ``image_embeddings`` 1x256x64x64,
    ``point_coords`` BxNx2 float (XY in the resized S frame), ``point_labels``
    BxN float (1 fg, 0 bg, -1 padding point, 2 / 3 box top-left / bottom-right),
    ``mask_input`` 1x1x256x256 float, ``has_mask_input`` (1,) float,
    ``orig_im_size`` (2,) float (H, W); outputs ``masks`` (full-size logits at
    ``orig_im_size``), ``iou_predictions`` and ``low_res_masks``. As in SAM's
    ONNX model the caller appends the padding point (0, 0) / label -1 when there
    is no box; N is dynamic (and B, which SAM keeps at 1, too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import Sam


class EncoderOnnxModel(nn.Module):
    """Normalisation + image encoder: 1x3xSxS (0-255, mean-padded) -> 1x256x(S/16)x(S/16)."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.detach().clone(), False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder((image - self.pixel_mean) / self.pixel_std)


class DecoderOnnxModel(nn.Module):
    """Prompt encoder + mask decoder + mask post-processing with SAM's ONNX signature.

    The prompts are embedded with traceable arithmetic for SAM's ONNX label
    convention (-1 padding, 2/3 box corners, ``has_mask_input``), then decoded by
    :meth:`Sam.decode_embedded`, as in every other path.

    ``return_single_mask=False`` (SAM's export default) returns all mask tokens
    (token 0 is the single-mask output, 1..3 the multimask outputs);
    ``True`` picks one mask per prompt set the way SAM's ONNX model does
    (token 0 when there are more than 2 points including padding, otherwise the
    multimask output with the highest predicted IoU).
    """

    def __init__(self, model: Sam, return_single_mask: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.img_size = model.image_size
        self.return_single_mask = return_single_mask

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        # The same arithmetic as PromptEncoder._embed_points (+0.5, / S) so the
        # graph and the torch path agree to the last bit on the encodings.
        coords = (coords + 0.5) / self.img_size
        emb = pe.pe_layer._pe_encoding(coords)
        labels = labels.unsqueeze(-1)
        emb = emb * (labels != -1)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def _embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        dense = has_mask_input * pe.mask_downscaling(mask_input)
        return dense + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _prepadded_size(self, orig_im_size: torch.Tensor) -> torch.Tensor:
        """(H, W) -> the resized (h, w), rounded half up as ``get_preprocess_shape``."""
        size = orig_im_size.to(torch.float32)
        scale = self.img_size / torch.max(size)
        return torch.floor(scale * size + 0.5).to(torch.int64)

    def _select_single(
        self, masks: torch.Tensor, iou: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_tokens = self.mask_decoder.num_mask_tokens
        reweight = torch.zeros(1, n_tokens, dtype=iou.dtype, device=iou.device)
        reweight[0, 0] = 1000.0
        best = torch.argmax(iou + (num_points - 2.5) * reweight, dim=1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        n = sparse.shape[0]
        # Expanding here (not inside predict_masks) keeps the batch size symbolic.
        emb = image_embeddings.expand(n, -1, -1, -1)
        # The decode path every predictor uses, from the prompt embeddings on; called
        # unbound because this graph holds only the two modules it reads (holding the
        # whole Sam would put the image encoder's weights into the decoder graph).
        low_res, iou = Sam.decode_embedded(self, emb, sparse, dense)  # type: ignore[arg-type]
        if self.return_single_mask:
            low_res, iou = self._select_single(low_res, iou, point_coords.shape[1])
        s = self.img_size
        masks = F.interpolate(low_res, (s, s), mode="bilinear", align_corners=False)
        h_w = self._prepadded_size(orig_im_size)
        masks = masks[..., : h_w[0], : h_w[1]]
        size = orig_im_size.to(torch.int64)
        masks = F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        return masks, iou, low_res
