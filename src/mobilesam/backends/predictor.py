"""``Predictor.load``: the one-line entry point to the fastest faithful backend on this machine.

    from mobilesam import Predictor
    predictor = Predictor.load("vit_t", backend="auto")   # or "ort-fp32", "torch-exact", ...
    predictor.set_image(rgb); masks, scores, low_res = predictor.predict(point_coords=..., ...)

With ``backend="auto"`` the first use on a machine converts the model and
measures the candidates (:func:`.select.choose`, a minute or two, with a
progress bar); later uses read the remembered choice and load its artifacts
directly, so a torch-free choice never imports torch. ``SamPredictor`` stays
the exact, drop-in class.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..inference.core import PredictorCore
from .artifacts import ArtifactStore, weights_digest
from .registry import LoadContext, get_backend

AUTO = "auto"


def _calibration_image() -> Any:
    """The photo the choice is measured on (shipped with the package)."""
    from ..io import read_image

    return read_image(Path(__file__).resolve().parents[1] / "assets" / "dog.jpg")


def _model_factory(
    name: str,
    checkpoint: Path | None,
    random_weights: bool,
    device: str,
    overrides: dict[str, Any],
) -> Callable[[], Any]:
    """A memoised loader: torch is imported only if a backend asks for the model."""

    @lru_cache(maxsize=1)
    def load() -> Any:
        from ..loading import load_model

        if random_weights:
            import torch

            torch.manual_seed(0)  # the artifacts are keyed as "random-seed0"
        return load_model(
            name, checkpoint, device=device, random_weights=random_weights, **overrides
        )

    return load


def weights_id(
    name: str,
    checkpoint: str | os.PathLike | None,
    random_weights: bool,
    download: bool,
    root: str | os.PathLike | None = None,
) -> tuple[str, Path | None]:
    """(identity of the weights for artifact keys, the resolved checkpoint path).

    Raises :class:`~mobilesam.loading.ModelLoadError` for an unknown model or
    weights that are neither given, cached nor downloadable.
    """
    from ..config import get_config
    from ..hub import WeightsUnavailableError, resolve_checkpoint
    from ..loading import ModelLoadError

    try:
        if checkpoint is None:
            get_config(name)  # an unknown name is reported as such
        if random_weights:
            if checkpoint is not None:
                raise ModelLoadError("give either a checkpoint or random weights, not both")
            return "random-seed0", None
        path = resolve_checkpoint(name, checkpoint, allow_download=download)
    except KeyError as e:
        raise ModelLoadError(str(e.args[0]) if e.args else str(e)) from None
    except (FileNotFoundError, WeightsUnavailableError) as e:
        raise ModelLoadError(str(e)) from None
    return weights_digest(path, root), path


class Predictor(PredictorCore):
    """A predictor on one registered backend (see :meth:`load`).

    ``backend`` is its name; ``choice`` the remembered measurement when it was
    chosen automatically.
    """

    def __init__(
        self,
        encoder: Any,
        decoder: Any,
        backend: str,
        choice: dict | None,
        model_loader: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(encoder, decoder)
        self.backend = backend
        self.choice = choice
        self.model_loader = model_loader  # the torch Sam, loaded on first call (memoised)

    @classmethod
    def load(
        cls,
        model: str = "vit_t",
        checkpoint: str | os.PathLike | None = None,
        backend: str = AUTO,
        *,
        random_weights: bool = False,
        device: str = "cpu",
        threads: int | None = None,
        download: bool = True,
        progress: bool = True,
        root: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None,
        candidates: Sequence[str] | None = None,
    ) -> Predictor:
        """The predictor for ``model`` (official weights, a checkpoint or random weights).

        ``backend="auto"`` uses the choice remembered for these weights on this
        machine, measuring the candidates first if there is none; a name forces
        that backend (an error if this machine cannot run it). ``root`` is the
        artifact folder (default ``$MOBILESAM_HOME/backends``); ``overrides`` change
        config fields (e.g. ``{"image_size": 256}``) and are part of the artifacts' key;
        ``candidates`` limits the backends a first automatic choice measures.
        """
        overrides = dict(overrides or {})
        wid, path = weights_id(model, checkpoint, random_weights, download, root)
        if overrides:
            wid += "-" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        store = ArtifactStore(model, wid, root)
        factory = _model_factory(model, path, random_weights, device, overrides)
        ctx = LoadContext(store.dir, factory, threads)
        if backend != AUTO:
            from ..loading import ModelLoadError

            try:
                spec = get_backend(backend)
            except KeyError as e:
                raise ModelLoadError(str(e.args[0])) from None
            why = spec.check()
            if why is not None:
                raise ModelLoadError(f"backend {backend} cannot run here: {why}")
            store.ensure(spec, ctx)
            return cls(*spec.load(ctx), backend, None, factory)
        choice = store.current_choice()
        if choice is None:
            # Processes starting at once measure once: the others wait, then read the choice.
            with store.lock(".choice.lock"):
                choice = store.current_choice()
                if choice is None:
                    from .select import choose

                    image = _calibration_image()
                    choice = choose(store, ctx, image, names=candidates, progress=progress)
        return cls._load_choice(store, ctx, choice)

    @classmethod
    def _load_choice(cls, store: ArtifactStore, ctx: LoadContext, choice: dict) -> Predictor:
        """The chosen backend, else the next fastest faithful one, else the exact path."""
        ranked = sorted(
            (c for c in choice.get("candidates", []) if c.get("faithful") and not c.get("error")),
            key=lambda c: (c.get("encoder_ms") or 1e18) + (c.get("click_ms") or 1e18),
        )
        names = [choice["backend"]] + [c["backend"] for c in ranked] + ["torch-exact"]
        for name in dict.fromkeys(names):
            try:
                spec = get_backend(name)
                why = spec.check()
                if why is not None:
                    raise RuntimeError(why)
                store.ensure(spec, ctx)  # rebuilds a missing or corrupt artifact
                return cls(*spec.load(ctx), name, choice, ctx.model)
            except Exception as e:  # noqa: BLE001 - fall back to the next candidate
                print(
                    f"mobilesam: warning: backend {name} unusable ({e}); trying the next",
                    file=sys.stderr,
                )
        raise RuntimeError("no backend could be loaded")  # torch-exact failing is a real error
