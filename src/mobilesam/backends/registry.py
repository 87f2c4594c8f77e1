"""The backend registry: one :class:`BackendSpec` per way of running the networks.

A spec says what a backend needs (torch or not, which artifact files), whether
this machine can run it (a package is installed, the CPU has the instructions),
how to make its artifacts from a model and how to load them into an
``(EncoderBackend, DecoderBackend)`` pair for the predictor core. Names are
registered once, as model names are (the built-in ones by :mod:`.builtin`,
imported with this package). Torch-free: specs import their runtime
only inside ``check`` / ``convert`` / ``load``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..inference.core import DecoderBackend, EncoderBackend


@dataclass
class LoadContext:
    """What a backend gets to load or convert.

    ``artifacts``: the folder holding this model's artifacts (shared by all
    backends of one checkpoint on one machine; a spec reads and writes only the
    files it names). ``model``: a zero-argument callable returning the torch
    ``Sam`` (only backends with ``needs_torch`` or a ``convert`` call it).
    ``threads``: intra-op threads (None: the usable cores).
    """

    artifacts: Path
    model: Callable[[], Any]
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendSpec:
    """One backend.

    name: registry name (e.g. ``ort-fp32``); precision: ``fp32`` / ``bf16`` / ``int8``;
    needs_torch: loading it imports torch; artifacts: files ``convert`` writes
    into ``LoadContext.artifacts`` and ``load`` reads; check: ``None`` when
    this machine can run it, else the reason it cannot (missing package, CPU
    without the instructions); convert: makes the artifacts (None: none needed);
    load: the encoder and decoder backends.
    """

    name: str
    description: str
    precision: str
    needs_torch: bool
    check: Callable[[], str | None]
    load: Callable[[LoadContext], tuple[EncoderBackend, DecoderBackend]]
    artifacts: tuple[str, ...] = ()
    convert: Callable[[LoadContext], None] | None = None
    exact: bool = False  # the parity reference: faithful by definition


_BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    """Add a backend; a name can be registered only once."""
    if spec.name in _BACKENDS:
        raise ValueError(f"backend {spec.name!r} is already registered")
    _BACKENDS[spec.name] = spec
    return spec


def get_backend(name: str) -> BackendSpec:
    """The registered backend ``name``; the error lists the names that exist."""
    try:
        return _BACKENDS[name]
    except KeyError:
        names = ", ".join(list_backends())
        raise KeyError(f"unknown backend {name!r}; registered: {names}") from None


def list_backends() -> list[str]:
    """Registered names, in registration order (the built-ins: exact first)."""
    return list(_BACKENDS)
