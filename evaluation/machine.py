"""The machine a number was measured on, named the same way in model cards and benchmark
results (the CPU model string is what tells two shared boxes apart)."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name: ``lscpu``, else ``/proc/cpuinfo``, else ``platform``."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"
