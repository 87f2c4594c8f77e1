"""mobilesam: lightweight Segment Anything (MobileSAM) and SAM, drop-in compatible.

    from mobilesam import sam_model_registry, SamPredictor
    model = sam_model_registry["vit_t"](checkpoint="mobile_sam.pt")
    predictor = SamPredictor(model)

Names are imported lazily, so ``import mobilesam`` is cheap and the torch-free
runtime (``mobilesam.runtime``) works where torch is not installed.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "sam_model_registry": "mobilesam.build",
    "build_model": "mobilesam.build",
    "build_sam": "mobilesam.build",
    "get_config": "mobilesam.config",
    "list_models": "mobilesam.config",
    "register_config": "mobilesam.config",
    "count_parameters": "mobilesam.build",
    "parameter_table": "mobilesam.build",
    "SamConfig": "mobilesam.config",
    "TinyViTConfig": "mobilesam.config",
    "ViTConfig": "mobilesam.config",
    "load_checkpoint": "mobilesam.checkpoint",
    "save_checkpoint": "mobilesam.checkpoint",
    "CheckpointError": "mobilesam.checkpoint",
    "Sam": "mobilesam.modeling",
    "SamPredictor": "mobilesam.inference.predictor",
    "ResizeLongestSide": "mobilesam.inference.transforms",
    "SamAutomaticMaskGenerator": "mobilesam.inference.amg",
    "load_model": "mobilesam.loading",
    "Predictor": "mobilesam.backends.predictor",
    "ModelLoadError": "mobilesam.loading",
    "OnnxPredictor": "mobilesam.runtime",
    "FastPredictor": "mobilesam.inference.fast_predictor",
    "evaluate_alignment": "mobilesam.evaluation.alignment",
}

__all__ = sorted(_LAZY) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, ("__version__",))
