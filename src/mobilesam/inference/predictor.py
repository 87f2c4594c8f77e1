"""SamPredictor: encode an image once, then answer many prompts against it.

Drop-in for segment-anything's predictor, plus input validation and batches
(several images encoded together, any number of prompt sets per image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..modeling import Sam
from .transforms import ResizeLongestSide, get_preprocess_shape
from .validation import as_rgb_uint8, check_boxes, check_mask_input, check_points

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


class SamPredictor:
    """Prompted mask prediction for one image (or a batch of images) at a time."""

    def __init__(self, sam_model: Sam, encoder_batch_size: int = 4) -> None:
        self.model = sam_model
        # TinyViT has BatchNorm: predicting in training mode silently gives wrong masks.
        self.model.eval()
        self.transform = ResizeLongestSide(sam_model.image_size)
        self.encoder_batch_size = max(1, int(encoder_batch_size))
        self.reset_image()

    # ------------------------------------------------------------------ images
    @property
    def device(self) -> torch.device:
        return self.model.device

    def _prepare(self, image: Any, image_format: str) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = as_rgb_uint8(image, image_format)
        if self.model.image_format == "BGR":  # mirrors the reference's format handling
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        h, w = rgb.shape[:2]
        if min(get_preprocess_shape(h, w, self.transform.target_length)) < 1:
            raise ValueError(f"image of shape {rgb.shape} is too thin to resize to the model input")
        resized = self.transform.apply_image(rgb)
        t = torch.as_tensor(resized, device=self.device)
        return t.permute(2, 0, 1).contiguous()[None], rgb.shape[:2]

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an HxWx3 uint8 image (RGB or BGR; grayscale / RGBA are converted)."""
        tensor, size = self._prepare(image, image_format)
        self.set_torch_image(tensor, size)

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Encode a 1x3xhxw image already resized (longest side = model input size)."""
        self._encode([transformed_image], [tuple(int(v) for v in original_image_size)])

    def set_image_batch(self, images: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Encode several images in batches of ``encoder_batch_size``; use ``predict_batch``."""
        if len(images) == 0:
            raise ValueError("set_image_batch needs at least one image")
        prepared = [self._prepare(img, image_format) for img in images]
        with torch.no_grad():
            self._encode([t for t, _ in prepared], [s for _, s in prepared])

    def _encode(self, tensors: list[torch.Tensor], sizes: list[tuple[int, int]]) -> None:
        s = self.model.image_size
        for t in tensors:
            if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] != 3:
                raise ValueError(f"transformed image must be 1x3xHxW, got {tuple(t.shape)}")
            if max(t.shape[2:]) != s:
                raise ValueError(
                    f"transformed image's longest side must be {s}, got {tuple(t.shape[2:])}; "
                    "resize it with predictor.transform.apply_image first"
                )
        self.reset_image()
        if self.model.training:
            self.model.eval()
        feats = []
        for i in range(0, len(tensors), self.encoder_batch_size):
            chunk = tensors[i : i + self.encoder_batch_size]
            batch = torch.cat([self.model.preprocess(t.to(self.device)) for t in chunk], dim=0)
            feats.append(self.model.image_encoder(batch))
        self.set_embedding(
            torch.cat(feats, dim=0),
            sizes,
            [tuple(int(v) for v in t.shape[-2:]) for t in tensors],
        )

    def set_embedding(
        self,
        features: torch.Tensor,
        original_sizes: Sequence[tuple[int, int]],
        input_sizes: Sequence[tuple[int, int]],
    ) -> None:
        """Use already computed image embeddings (Bx256xHxW), e.g. from a cache.

        ``original_sizes`` / ``input_sizes`` give each image's (h, w) before and
        after the resize, as ``set_image`` would have recorded them.
        """
        if features.ndim != 4 or not (len(original_sizes) == len(input_sizes) == features.shape[0]):
            raise ValueError(
                f"features {tuple(features.shape)} need one original and input size per image"
            )
        self.reset_image()
        self.features = features
        self.original_sizes = [tuple(int(v) for v in s) for s in original_sizes]
        self.input_sizes = [tuple(int(v) for v in s) for s in input_sizes]
        # The dense positional encoding depends only on the model: computed once per image
        # set rather than once per prompt.
        self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        self.is_image_set = True

    def reset_image(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self._dense_pe: torch.Tensor | None = None
        self.original_sizes: list[tuple[int, int]] = []
        self.input_sizes: list[tuple[int, int]] = []

    # segment-anything compatible single-image attributes
    @property
    def original_size(self) -> tuple[int, int] | None:
        return self.original_sizes[0] if self.original_sizes else None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.input_sizes[0] if self.input_sizes else None

    def _require_image(self, single: bool = True) -> None:
        if not self.is_image_set or self.features is None:
            raise RuntimeError("no image is set: call set_image(...) before predicting")
        if single and self.features.shape[0] != 1:
            raise RuntimeError(
                f"{self.features.shape[0]} images are set (set_image_batch); use predict_batch"
            )

    def get_image_embedding(self) -> torch.Tensor:
        """The image embedding(s), Bx256x64x64 (B=1 after set_image)."""
        self._require_image(single=False)
        assert self.features is not None
        return self.features

    # ---------------------------------------------------------------- prompts
    def _to_torch_prompts(
        self,
        coords: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        original_size: tuple[int, int],
    ) -> tuple[torch.Tensor | None, ...]:
        """Original-frame numpy prompts (leading prompt-set axis) -> input-frame tensors."""
        dev = self.device
        ct = lt = bt = mt = None
        if coords is not None:
            c = self.transform.apply_coords(coords, original_size)
            ct = torch.as_tensor(c, dtype=torch.float, device=dev)
            lt = torch.as_tensor(labels, dtype=torch.int, device=dev)
        if boxes is not None:
            b = self.transform.apply_boxes(boxes, original_size)
            bt = torch.as_tensor(b, dtype=torch.float, device=dev)
        if mask_input is not None:
            mt = torch.as_tensor(mask_input, dtype=torch.float, device=dev)
        return ct, lt, bt, mt

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt set, in original-image pixels.

        point_coords: Nx2 XY; point_labels: N (1 fg, 0 bg, -1 ignore); box: XYXY;
        mask_input: 1x256x256 low-res logits from a previous call. Returns masks
        CxHxW (bool, or float logits with ``return_logits``), scores C and
        low-res logits Cx256x256, with C = 3 if ``multimask_output`` else 1.
        """
        self._require_image()
        coords, labels = check_points(point_coords, point_labels)
        boxes = check_boxes(box)
        masks_in = check_mask_input(mask_input, self.model.prompt_encoder.mask_input_size[0])
        ct, lt, bt, mt = self._to_torch_prompts(
            None if coords is None else coords[None],
            None if labels is None else labels[None],
            boxes,
            None if masks_in is None else masks_in[None],
            self.original_sizes[0],
        )
        if bt is not None:
            bt = bt[None, :]  # as the reference: (1, 1, 4), flattened by the prompt encoder
        masks, iou, low = self.predict_torch(ct, lt, bt, mt, multimask_output, return_logits)
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low[0].cpu().numpy()

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
        Returns masks BxCxHxW, iou BxC, low-res logits BxCx256x256.
        """
        self._require_image()
        return self._decode(
            0, point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
        )

    def _decode(
        self,
        index: int,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self.features is not None
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        points = (point_coords, point_labels) if point_coords is not None else None
        pe = self.model.prompt_encoder
        sparse, dense = pe(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.model.mask_decoder(
            image_embeddings=self.features[index : index + 1],
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        masks = self.model.postprocess_masks(
            low_res, self.input_sizes[index], self.original_sizes[index]
        )
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    @torch.no_grad()
    def predict_batch(
        self,
        point_coords_batch: Sequence[np.ndarray | None] | None = None,
        point_labels_batch: Sequence[np.ndarray | None] | None = None,
        box_batch: Sequence[np.ndarray | None] | None = None,
        mask_input_batch: Sequence[np.ndarray | None] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> list[Prediction]:
        """Prompts for every image set by ``set_image_batch`` (or ``set_image``).

        Each argument is a list with one entry per image (or ``None``). Per image:
        points Nx2 / KxNx2 with labels N / KxN, boxes 4 / Kx4, mask inputs
        Kx1x256x256; K prompt sets are decoded together. Returns one
        ``(masks KxCxHxW, scores KxC, low_res KxCx256x256)`` per image, equal to
        K separate ``predict`` calls.
        """
        self._require_image(single=False)
        assert self.features is not None
        n = self.features.shape[0]
        args = {
            "point_coords_batch": point_coords_batch,
            "point_labels_batch": point_labels_batch,
            "box_batch": box_batch,
            "mask_input_batch": mask_input_batch,
        }
        for name, value in args.items():
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries, but {n} images are set")

        def entry(seq: Sequence[Any] | None, i: int) -> Any:
            return None if seq is None else seq[i]

        size = self.model.prompt_encoder.mask_input_size[0]
        results: list[Prediction] = []
        for i in range(n):
            pc, pl = entry(point_coords_batch, i), entry(point_labels_batch, i)
            if pc is not None and np.asarray(pc).ndim == 2:
                pc = np.asarray(pc)[None]
                pl = None if pl is None else np.asarray(pl)[None]
            coords, labels = check_points(pc, pl, batched=True)
            boxes = check_boxes(entry(box_batch, i), f"box_batch[{i}]", batched=True)
            masks_in = check_mask_input(entry(mask_input_batch, i), size, batched=True)
            counts = {len(a) for a in (coords, boxes, masks_in) if a is not None}
            if len(counts) > 1:
                raise ValueError(
                    f"image {i}: points, boxes and mask inputs give different numbers of "
                    f"prompt sets {sorted(counts)}"
                )
            ct, lt, bt, mt = self._to_torch_prompts(
                coords, labels, boxes, masks_in, self.original_sizes[i]
            )
            masks, iou, low = self._decode(i, ct, lt, bt, mt, multimask_output, return_logits)
            results.append((masks.cpu().numpy(), iou.cpu().numpy(), low.cpu().numpy()))
        return results
