"""Inference: from an image and prompts to masks.

Data flows one way: image -> :mod:`.transforms` (the only resize) -> encoder
backend -> embedding -> decoder backend (:meth:`Sam.decode`: prompt encoder +
mask decoder + post-processing) -> masks.

- :mod:`.core` -- ``PredictorCore``: validation (:mod:`.validation`), the
  transform, image state and batch rules, with the two networks as backends
  (torch-free; ``OnnxPredictor`` in :mod:`mobilesam.runtime` is this core too);
- :mod:`.torch_backend` -- the exact PyTorch backends;
  :mod:`.predictor` -- ``SamPredictor``, the core on them (drop-in, parity reference);
- :mod:`.optimize` (``optimize_model``: :mod:`.fold`, :mod:`.fused_attention`) and
  :mod:`.fast_predictor` (``FastPredictor``, a decoder backend on
  :mod:`.fast_decoder`'s low-rank shared-embedding decoder, :mod:`.lowrank`);
- :mod:`.cache` -- the one embedding cache (content digest, LRU, byte budget);
- :mod:`.masks` -- mask utilities (boxes, NMS, RLE, stability, IoU, ``MaskRecords``);
- :mod:`.amg` -- ``SamAutomaticMaskGenerator`` (options and defaults in
  :mod:`.amg_options`, point grids and crops in :mod:`.grids`); its fast path is
  :mod:`.amg_fast`'s ``FastCropProcessor`` with :mod:`.window_resize`; the
  hierarchical strategy is :mod:`.amg_hierarchical`, box refinement :mod:`.amg_refine`;
- :mod:`.everything_pipeline` -- segment everything over a folder with reading and
  writing overlapped (options and jobs in the import-light :mod:`.folder_options`).
"""
