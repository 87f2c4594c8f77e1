"""What the CPU can do, read from the OS without importing any runtime.

Backends ask this before claiming a machine (bf16 needs native bf16 dot
products; without them OpenVINO and oneDNN emulate bf16 slower than fp32), and
artifact keys include it, since a compiled or quantised model is only valid for
the instructions it was made for.
"""

from __future__ import annotations

import functools
from pathlib import Path

# Native bf16 matrix instructions: AVX-512 BF16 (Cooper Lake, Zen 4+) or AMX (Sapphire Rapids+).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# int8 dot products: VNNI in AVX-512 or AVX (Alder Lake+), or AMX int8.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The flags common to every processor listed in a ``/proc/cpuinfo`` text.

    x86 lists them on ``flags`` lines, ARM on ``Features`` lines. A flag
    missing on one core counts as missing (a thread may land on any core).
    """
    sets = [
        set(line.split(":", 1)[1].split())
        for line in text.splitlines()
        if line.split(":", 1)[0].strip() in ("flags", "Features") and ":" in line
    ]
    return frozenset(set.intersection(*sets)) if sets else frozenset()


@functools.cache
def _cpuinfo() -> str:
    """The text of ``/proc/cpuinfo``, read once per process ("" where it does not exist)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (lower case); empty where ``/proc/cpuinfo`` does not exist."""
    return parse_cpuinfo(_cpuinfo())


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(BF16_FLAGS & (cpu_flags() if flags is None else flags))


def has_int8_dot(flags: frozenset[str] | None = None) -> bool:
    return bool(INT8_FLAGS & (cpu_flags() if flags is None else flags))


def needs_native_bf16() -> str | None:
    """``None`` on a CPU with native bf16, else why a bf16 backend should not run here."""
    if has_native_bf16():
        return None
    if not cpu_flags():
        return "CPU flags unknown (no /proc/cpuinfo): cannot confirm native bf16"
    return "CPU has no native bf16 (needs avx512_bf16 or amx_bf16); bf16 would be emulated"


#: Flags that change which backend is fastest or which can run at all (artifact keys).
RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "avx512_vnni",
    "avx_vnni",
)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``model name`` in ``/proc/cpuinfo``), else the platform's word."""
    import platform

    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of this machine."""
    return cpu_model(), cpu_flags()


def cpu_signature() -> str:
    """Model name and the relevant flags, e.g. for keying artifacts made on this machine."""
    flags = cpu_flags()
    return f"{cpu_model()} [{' '.join(f for f in RELEVANT_FLAGS if f in flags)}]"
