"""The predictor core: everything a predictor does that is not running a network.

Input validation, the resize-longest-side transform, gray/RGBA/BGR rules, the
image state (embeddings and sizes) and the batch rules live here once; the two
networks are *backends* behind a small interface:

- an :class:`EncoderBackend` turns resized uint8 images into embeddings;
- a :class:`DecoderBackend` turns one image's embedding and prompts (already in
  the resized input frame) into masks, IoU predictions and low-res logits.

``SamPredictor`` (PyTorch, exact) and ``OnnxPredictor`` (onnxruntime) are this
core with different backends; a new runtime means one backend module, not a
copied predictor. Torch-free: numpy, Pillow and the transform only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .transforms import ResizeLongestSide, get_preprocess_shape
from .validation import as_rgb_uint8, check_boxes, check_mask_input, check_points

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


class EncoderBackend(Protocol):
    """Resized images -> image embeddings."""

    image_size: int  # longest side of the resized image and side of the padded input
    image_format: str  # "RGB" or "BGR": the channel order the network was trained on

    def encode(self, images: Sequence[np.ndarray]) -> Any:
        """hxwx3 uint8 images (longest side ``image_size``) -> BxCxh'xw' embeddings."""
        ...


@dataclass(frozen=True)
class DecodeRequest:
    """B prompt sets for one image, and what to return for them.

    coords BxNx2 XY and boxes Bx4 XYXY in the resized input frame, labels BxN
    (1 fg, 0 bg, -1 ignore), mask_input Bx1xSxS low-res logits; any may be None.
    Numpy arrays for ``DecoderBackend.decode``, tensors for the torch backends'
    ``decode_torch``. Masks come back at ``original_size`` (H, W); the image was
    resized to ``input_size`` (h, w) before encoding.
    """

    input_size: tuple[int, int]
    original_size: tuple[int, int]
    coords: Any = None
    labels: Any = None
    boxes: Any = None
    mask_input: Any = None
    multimask_output: bool = True
    return_logits: bool = False

    @property
    def num_sets(self) -> int:
        """B, the number of prompt sets."""
        for value in (self.coords, self.boxes, self.mask_input):
            if value is not None:
                return len(value)
        return 1

    def replace(self, **changes: Any) -> DecodeRequest:
        return dataclasses.replace(self, **changes)


class DecoderBackend(Protocol):
    """One image's embedding + prompts -> masks."""

    mask_threshold: float
    mask_input_size: int  # side of the low-res logits (256 for the official models)

    def prepare(self, features: Any) -> Any:
        """Per-image state computed once per embedding (1xCxhxw) before any prompt."""
        ...

    def decode(self, prepared: Any, request: DecodeRequest) -> Prediction:
        """Masks BxCxHxW, IoU BxC, low-res logits BxCxSxS (numpy), C = 3 or 1."""
        ...


class PredictorCore:
    """Encode an image once, then answer many prompts against it.

    Holds the image state: ``features`` (the embeddings of the images set,
    backend-native), ``original_sizes`` and ``input_sizes`` ((H, W) before and
    after the resize, one per image).
    """

    def __init__(self, encoder: EncoderBackend, decoder: DecoderBackend) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.transform = ResizeLongestSide(encoder.image_size)
        self.reset_image()

    # ------------------------------------------------------------------ images
    def prepare_image(self, image: Any, image_format: str = "RGB") -> tuple[np.ndarray, tuple]:
        """Any accepted image -> (resized hxwx3 uint8 in the network's channel order, (H, W))."""
        rgb = as_rgb_uint8(image, image_format)
        if self.encoder.image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        h, w = rgb.shape[:2]
        if min(get_preprocess_shape(h, w, self.transform.target_length)) < 1:
            raise ValueError(f"image of shape {rgb.shape} is too thin to resize to the model input")
        return self.transform.apply_image(rgb), (int(h), int(w))

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an HxWx3 uint8 image (RGB or BGR; grayscale / RGBA are converted)."""
        self.set_image_batch([image], image_format)

    def set_image_batch(self, images: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Encode several images (use ``predict_batch`` afterwards)."""
        if len(images) == 0:
            raise ValueError("set_image_batch needs at least one image")
        prepared = [self.prepare_image(img, image_format) for img in images]
        resized = [r for r, _ in prepared]
        self.reset_image()
        features = self.encoder.encode(resized)
        self.set_embedding(features, [s for _, s in prepared], [r.shape[:2] for r in resized])

    def set_embedding(
        self,
        features: Any,
        original_sizes: Sequence[tuple[int, int]] | tuple[int, int],
        input_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """Use already computed image embeddings (BxCxhxw), e.g. from a cache.

        ``original_sizes`` gives each image's (H, W) (one pair is enough for one
        image); ``input_sizes`` the resized (h, w), computed from the originals
        when omitted. For one image the decoder's image-side work (``prepare``) is done
        here too, so the first click is as fast as the next ones.
        """
        if len(original_sizes) == 2 and np.isscalar(original_sizes[0]):
            original_sizes = [original_sizes]  # type: ignore[list-item]
        originals = [(int(s[0]), int(s[1])) for s in original_sizes]  # type: ignore[index]
        if input_sizes is None:
            target = self.transform.target_length
            inputs = [get_preprocess_shape(h, w, target) for h, w in originals]
        else:
            inputs = [(int(s[0]), int(s[1])) for s in input_sizes]
        if len(features.shape) != 4 or not (len(originals) == len(inputs) == features.shape[0]):
            raise ValueError(
                f"features {tuple(features.shape)} need one original and input size per image"
            )
        self.reset_image()
        self.features = features
        self.original_sizes = originals
        self.input_sizes = inputs
        self.is_image_set = True
        if len(originals) == 1:
            self.prepared(0)

    def reset_image(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.is_image_set = False
        self.features: Any = None
        self.original_sizes: list[tuple[int, int]] = []
        self.input_sizes: list[tuple[int, int]] = []
        self._prepared: tuple[int, Any] | None = None

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

    def get_image_embedding(self) -> Any:
        """The image embedding(s), BxCxhxw (B=1 after set_image)."""
        self._require_image(single=False)
        return self.features

    def prepared(self, index: int) -> Any:
        """The decoder's per-image state for image ``index`` (kept for the latest index)."""
        if self._prepared is None or self._prepared[0] != index:
            self._prepared = (index, self.decoder.prepare(self.features[index : index + 1]))
        return self._prepared[1]

    # ---------------------------------------------------------------- prompts
    def _decode_numpy(
        self, index: int, multimask_output: bool, return_logits: bool, **prompts: Any
    ) -> Prediction:
        """Original-frame prompts with a leading prompt-set axis -> the decoder's outputs."""
        size = self.original_sizes[index]
        if prompts.get("coords") is not None:
            prompts["coords"] = self.transform.apply_coords(prompts["coords"], size)
        if prompts.get("boxes") is not None:
            prompts["boxes"] = self.transform.apply_boxes(prompts["boxes"], size)
        request = DecodeRequest(
            self.input_sizes[index],
            size,
            multimask_output=multimask_output,
            return_logits=return_logits,
            **prompts,
        )
        return self.decoder.decode(self.prepared(index), request)

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
        masks_in = check_mask_input(mask_input, self.decoder.mask_input_size)
        masks, iou, low = self._decode_numpy(
            0,
            multimask_output,
            return_logits,
            coords=None if coords is None else coords[None],
            labels=None if labels is None else labels[None],
            boxes=boxes,
            mask_input=None if masks_in is None else masks_in[None],
        )
        return masks[0], iou[0], low[0]

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
        results: list[Prediction] = []
        for i in range(n):
            coords, labels, boxes, masks_in = self._batch_entry(i, **args)
            results.append(
                self._decode_numpy(
                    i,
                    multimask_output,
                    return_logits,
                    coords=coords,
                    labels=labels,
                    boxes=boxes,
                    mask_input=masks_in,
                )
            )
        return results

    def _batch_entry(
        self,
        i: int,
        point_coords_batch: Sequence[Any] | None,
        point_labels_batch: Sequence[Any] | None,
        box_batch: Sequence[Any] | None,
        mask_input_batch: Sequence[Any] | None,
    ) -> tuple[np.ndarray | None, ...]:
        """Image ``i``'s validated prompts, each with a leading prompt-set axis of one length."""

        def entry(seq: Sequence[Any] | None) -> Any:
            return None if seq is None else seq[i]

        pc, pl = entry(point_coords_batch), entry(point_labels_batch)
        if pc is not None and np.asarray(pc).ndim == 2:
            pc = np.asarray(pc)[None]
            pl = None if pl is None else np.asarray(pl)[None]
        coords, labels = check_points(pc, pl, batched=True)
        boxes = check_boxes(entry(box_batch), f"box_batch[{i}]", batched=True)
        size = self.decoder.mask_input_size
        masks_in = check_mask_input(entry(mask_input_batch), size, batched=True)
        counts = {len(a) for a in (coords, boxes, masks_in) if a is not None}
        if len(counts) > 1:
            raise ValueError(
                f"image {i}: points, boxes and mask inputs give different numbers of "
                f"prompt sets {sorted(counts)}"
            )
        return coords, labels, boxes, masks_in
