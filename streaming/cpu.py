"""What this machine's CPU can do fast: the inference dtype, and how many processes.

Only the instruction set matters for the dtype: oneDNN runs bf16 on any AVX-512 CPU, but
without native bf16 instructions (AVX512-BF16 or AMX) it emulates them and is slower than
fp32. One server process runs the model's Python code under one GIL beside its event loop
and tops out near one core, whatever ``--threads`` says: on a 2-core AMD EPYC, 2 processes
of 1 thread each (``--workers 2 --threads 1``) carry 24 live streams within the latency
target where one carries fewer than 16 (``benchmarks/README.md``, live load).
"""

from __future__ import annotations

import contextlib
import os
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


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workers_hint(cores: int, *, device: str, workers: int) -> str | None:
    """One log line for a single server process that runs the model on a CPU with cores to
    spare: how to use them. None where there is nothing to suggest."""
    if workers > 1 or cores < 2 or not device.startswith("cpu"):
        return None
    return (
        f"one server process uses about one of this machine's {cores} cores (the model's "
        f"Python code and the event loop share one GIL); --workers {cores} --threads 1 "
        "uses them all (on a 2-core CPU: 24 live streams instead of under 16, "
        "docs/production.md)"
    )
