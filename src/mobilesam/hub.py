"""Official weight files: where they come from and where they are cached.

Without a checkpoint, :func:`mobilesam.loading.load_model` (and so the CLI)
looks for the official file in the cache (``$MOBILESAM_HOME``, default
``~/.cache/mobilesam``) and otherwise downloads it there, atomically
(:func:`mobilesam.io.atomic_path`): the file appears under its final name only
once it is complete and loads as a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_path


@dataclass(frozen=True)
class WeightsInfo:
    """An official checkpoint file for a registered model."""

    model: str
    filename: str
    url: str
    approx_mb: int


OFFICIAL_WEIGHTS: dict[str, WeightsInfo] = {
    w.model: w
    for w in (
        WeightsInfo(
            "vit_t",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            39,
        ),
        WeightsInfo(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            358,
        ),
        WeightsInfo(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            1192,
        ),
        WeightsInfo(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            2445,
        ),
    )
}


class WeightsUnavailableError(RuntimeError):
    """The official weights are neither cached nor downloadable."""


def cache_dir() -> Path:
    """The weights cache: ``$MOBILESAM_HOME`` or ``~/.cache/mobilesam``."""
    env = os.environ.get("MOBILESAM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mobilesam"


def weights_info(model: str) -> WeightsInfo:
    name = "vit_h" if model == "default" else model
    if name not in OFFICIAL_WEIGHTS:
        raise KeyError(
            f"no official weights for model {model!r}; known: {', '.join(OFFICIAL_WEIGHTS)}"
        )
    return OFFICIAL_WEIGHTS[name]


def cached_path(model: str) -> Path:
    """Where the official file for ``model`` lives in the cache (it may not exist)."""
    return cache_dir() / weights_info(model).filename


def download(model: str, url: str | None = None, progress: bool = True) -> Path:
    """Download the official weights for ``model`` into the cache; returns the path.

    Written to a temporary file beside the target, checked to load as a
    checkpoint, then renamed: an interrupted or refused download never leaves a
    file under the final name.
    """
    import urllib.error  # here, not at the top: ~7 ms of every one-click process
    import urllib.request

    from tqdm import tqdm

    from .checkpoint import CheckpointError, read_state_dict

    info = weights_info(model)
    url = url or info.url
    target = cached_path(model)
    with atomic_path(target, suffix=".part") as tmp:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=info.filename, disable=not progress
                ) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise WeightsUnavailableError(
                f"could not download the {model} weights from {url} ({reason}).\n"
                f"Put the official file {info.filename} at {target}\n"
                f"(or set MOBILESAM_HOME to the folder holding it, or pass --checkpoint FILE)."
            ) from None
        try:
            read_state_dict(tmp)
        except CheckpointError as e:
            raise WeightsUnavailableError(
                f"downloaded file is not a valid checkpoint: {e}"
            ) from None
    return target


def resolve_checkpoint(
    model: str, checkpoint: str | os.PathLike | None = None, allow_download: bool = True
) -> Path:
    """The checkpoint to load: the given file, else the cached official one, else download."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    path = cached_path(model)
    if path.is_file():
        return path
    if not allow_download:
        raise WeightsUnavailableError(
            f"the {model} weights are not in the cache. Put {weights_info(model).filename} at "
            f"{path}, run `mobilesam weights download {model}`, or pass --checkpoint FILE."
        )
    return download(model)
