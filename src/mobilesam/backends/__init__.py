"""Inference backends behind one registry: what runs the encoder and decoder, chosen per machine.

Each backend is a :class:`~.registry.BackendSpec`: whether this machine can run
it, how to convert a model into its artifacts (exported graphs, quantised
copies), and how to load them as the encoder/decoder backends of the predictor
core (:mod:`mobilesam.inference.core`). Importing this package imports no torch.
"""

from . import builtin  # noqa: F401  (registers the built-in backends)
from .registry import BackendSpec, LoadContext, get_backend, list_backends, register_backend

__all__ = ["BackendSpec", "LoadContext", "get_backend", "list_backends", "register_backend"]
