"""Pure ``nn.Module`` components of SAM and MobileSAM (no I/O, no registry)."""

from .common import LayerNorm2d, MLPBlock
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "LayerNorm2d",
    "MLPBlock",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TwoWayTransformer",
]
