"""What this CPU can do, read without importing torch: the flags that choose backends."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: Flags that change which backend is fastest or which can run at all.
RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "amx_bf16",
    "amx_tile",
    "avx512_vnni",
    "avx_vnni",
)


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) from the text of ``/proc/cpuinfo`` (first processor's lines)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of this machine; flags are empty where /proc/cpuinfo is missing."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = "", set()
    return model or platform.processor() or platform.machine(), frozenset(flags)


def cpu_flags() -> frozenset[str]:
    """This CPU's flags (``avx2``, ``avx512_bf16``, ``amx_bf16``, ...)."""
    return cpu_info()[1]


def has_native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_signature() -> str:
    """Model name and the relevant flags, e.g. for keying artifacts made on this machine."""
    model, flags = cpu_info()
    return f"{model} [{' '.join(f for f in RELEVANT_FLAGS if f in flags)}]"
