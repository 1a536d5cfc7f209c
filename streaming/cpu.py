"""What this machine's CPU can do fast, for picking the inference dtype.

Only the instruction set matters here: oneDNN runs bf16 on any AVX-512 CPU, but without
native bf16 instructions (AVX512-BF16 or AMX) it emulates them and is slower than fp32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty where there is none: not Linux)."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The CPU feature that runs bf16 natively ("amx_bf16" or "avx512_bf16"), or None."""
    have = cpu_flags() if flags is None else flags
    return next((f for f in NATIVE_BF16_FLAGS if f in have), None)
