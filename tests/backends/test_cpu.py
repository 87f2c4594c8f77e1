"""CPU flags from /proc/cpuinfo text: intersection over cores, bf16 / int8 detection."""

from __future__ import annotations

from mobilesam.backends import cpu

EPYC = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni
bogomips\t: 4800.00

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni
"""

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"

ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_flags_of_an_avx512_bf16_epyc():
    flags = cpu.parse_cpuinfo(EPYC)
    assert {"avx2", "avx512_bf16", "avx512_vnni"} <= flags
    assert cpu.has_native_bf16(flags) and cpu.has_int8_dot(flags)


def test_a_flag_missing_on_one_core_is_missing():
    mixed = EPYC.replace("avx512_bf16 avx512_vnni\n", "\n", 1)
    flags = cpu.parse_cpuinfo(mixed)
    assert "avx512_bf16" not in flags and "avx2" in flags
    assert not cpu.has_native_bf16(flags)


def test_avx2_only_arm_and_empty_texts():
    assert not cpu.has_native_bf16(cpu.parse_cpuinfo(AVX2_ONLY))
    assert not cpu.has_int8_dot(cpu.parse_cpuinfo(AVX2_ONLY))
    assert cpu.parse_cpuinfo(ARM) == {"fp", "asimd", "bf16", "i8mm"}
    assert cpu.parse_cpuinfo("") == frozenset()


def test_this_machine_answers_without_raising():
    flags = cpu.cpu_flags()
    assert isinstance(flags, frozenset)
    reason = cpu.needs_native_bf16()
    assert (reason is None) == cpu.has_native_bf16()
