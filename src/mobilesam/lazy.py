"""Lazy public names for packages: ``import mobilesam`` stays cheap and torch-free.

A package lists ``name -> module`` and gets the ``__getattr__`` / ``__dir__``
pair of PEP 562: a name is imported from its module on first use and then kept
in the package's namespace. The torch-free runtime relies on this (importing
``mobilesam`` must not import torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], extra: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``names`` lazily.

    ``names`` maps an attribute to the module defining it, absolute
    (``"mobilesam.build"``) or relative to the package (``"students"``).
    ``extra`` lists names the package defines itself (shown by ``dir``).
    """
    modules = {k: v if v.startswith("mobilesam") else f"{package}.{v}" for k, v in names.items()}
    public = sorted(names) + list(extra)

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__
