"""The one way the tools load a model: name and/or weights file -> ``Sam`` on a device.

:func:`load_model` is what every command line tool, the benchmarks, evaluation,
the distillation teacher and the shipped shapes models go through. It finds the
weights (the given file, else the official file from the cache, downloaded if
allowed: :mod:`mobilesam.hub`), builds the architecture the file records (a
mobilesam ``.safetensors``) or the registered one named, loads the weights
strictly (:mod:`mobilesam.checkpoint`), moves the model to the device and
returns it in eval mode.

Every failure (unknown model name, missing, corrupt or mismatched file, weights
neither cached nor downloadable, a device that does not exist) raises
:class:`ModelLoadError` with a message meant for the user, so a caller needs one
``except`` clause; the command line prints it as ``mobilesam: error: ...``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .modeling import Sam


class ModelLoadError(ValueError):
    """A model could not be built or its weights could not be loaded.

    The message says what went wrong and, where there is one, what to do about it.
    A ``ValueError`` so that callers which caught the loaders' old ``ValueError``
    subclasses (``CheckpointError``) keep working.
    """


def _message(e: BaseException) -> str:
    # KeyError's str() is the repr of its argument, quotes included.
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def load_model(
    name: str | None = "vit_t",
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    random_weights: bool = False,
    download: bool = True,
    **overrides: Any,
) -> Sam:
    """Build model ``name`` with its weights, on ``device``, in eval mode.

    ``checkpoint`` is a ``.pt`` / ``.pth`` / ``.safetensors`` file; a ``.safetensors``
    that records its config (saved by mobilesam) is built from that config, so
    ``name`` may then be ``None``. Without ``checkpoint`` the official weights of
    ``name`` are taken from the cache, or downloaded there when ``download`` is
    true. ``random_weights`` builds ``name`` with freshly initialised weights
    instead (the caller seeds torch if it wants them reproducible). ``overrides``
    change config fields, e.g. ``image_size=256``.

    Raises :class:`ModelLoadError` for every failure.
    """
    from .build import build_model
    from .checkpoint import read_config
    from .config import SamConfig, get_config
    from .hub import WeightsUnavailableError, resolve_checkpoint

    known = {f.name for f in dataclasses.fields(SamConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ModelLoadError(f"unknown model config field(s): {', '.join(unknown)}")
    if random_weights and checkpoint is not None:
        raise ModelLoadError("give either a checkpoint or random weights, not both")
    if checkpoint is None and name is None:
        raise ModelLoadError("a model name is needed when no checkpoint is given")
    try:
        if checkpoint is None:
            get_config(name)  # an unknown name is reported as such, not as "no official weights"
        if random_weights:
            model = build_model(name, **overrides)
        else:
            path = resolve_checkpoint(name or "", checkpoint, allow_download=download)
            recorded = read_config(path)
            if recorded is None and name is None:
                raise ModelLoadError(
                    f"{path}: the file does not record its model config; give the model name too"
                )
            model = build_model(recorded if recorded is not None else name, path, **overrides)
    except ModelLoadError:
        raise
    # CheckpointError is a ValueError; so is a config the file's metadata cannot describe
    except (KeyError, FileNotFoundError, ValueError, WeightsUnavailableError) as e:
        raise ModelLoadError(_message(e)) from None
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:  # torch asserts on a missing CUDA
        raise ModelLoadError(f"cannot move the model to device {device!r}: {_message(e)}") from None
    return model.eval()
