"""Reading and writing model weights.

One loader for every format: official ``.pt`` / ``.pth`` state dicts (read
with ``torch.load(weights_only=True)``, so a pickle that tries to run code is
refused before anything runs) and ``.safetensors``. Loading is strict: every
missing, unexpected or mis-shaped key is reported in one error.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .config import SamConfig
from .io import atomic_path

CONFIG_KEY = "mobilesam_config"
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the model."""


def _read_safetensors(
    path: Path, with_tensors: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (``with_tensors`` False: the header only)."""
    from safetensors import SafetensorError, safe_open

    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys() if with_tensors else ():
                tensors[key] = f.get_tensor(key)
        return tensors, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {e}"
        ) from None


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes from the restricted unpickler
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        detail = text.split("WeightsUnpickler error:", 1)[-1].split(". Please use")[0].strip()
        detail = detail.split(" Check the documentation")[0].strip() or type(e).__name__
        if "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refused to load: the file's pickle asks to import or call code "
                f"({detail}); a weights file never needs that. Nothing was executed."
            ) from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or not a weights file; "
            f"nothing was executed): {detail}"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for garbage input
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or not a weights file): {first}"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` / ``.pt`` / ``.pth`` on the CPU.

    Accepts a bare state dict or one wrapped under ``model`` / ``state_dict``;
    strips a DistributedDataParallel ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if path.suffix == ".safetensors":
        sd: object = _read_safetensors(path)[0]
    else:
        sd = _read_torch(path)
    if isinstance(sd, Mapping):
        for key in _WRAPPER_KEYS:
            inner = sd.get(key)
            if isinstance(inner, Mapping) and inner and not isinstance(inner, torch.Tensor):
                sd = inner
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    if not sd:
        raise CheckpointError(f"{path}: the state dict is empty")
    out = dict(sd)
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def read_config(path: str | Path) -> SamConfig | None:
    """The model config recorded in a safetensors file we saved, else ``None``."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    text = _read_safetensors(path, with_tensors=False)[1].get(CONFIG_KEY)
    return SamConfig.from_json(text) if text else None


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state_dict`` into ``module``, reporting every mismatch in one error."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        ):
            if items:
                shown = "\n    ".join(items[:20])
                more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
                parts.append(f"  {len(items)} {title}:\n    {shown}{more}")
        raise CheckpointError("checkpoint does not fit the model:\n" + "\n".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint file into ``model`` strictly; returns the model."""
    try:
        load_state_dict_strict(model, read_state_dict(path))
    except CheckpointError as e:
        if str(e).startswith("checkpoint does not fit"):
            raise CheckpointError(f"{path}: {e}") from None
        raise
    return model


def save_checkpoint(model: nn.Module, path: str | Path, config: SamConfig | None = None) -> Path:
    """Write ``model``'s weights as safetensors (atomically), recording its config.

    The file then loads with ``build_model(checkpoint=path)`` and, for
    registered architectures, with ``sam_model_registry[name](checkpoint=path)``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: checkpoints are saved as .safetensors")
    config = config if config is not None else getattr(model, "config", None)
    meta = {CONFIG_KEY: config.to_json()} if config is not None else {}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path
