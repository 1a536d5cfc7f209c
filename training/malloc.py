"""Run training under tcmalloc when the machine has it.

CPU training allocates activation buffers of a new shape at every step.  glibc either
fragments its heap with them (RSS grew ~1 GB per 10 minutes here) or, with the fixed mmap
threshold ``train.py`` sets, maps and unmaps them every step: on a 2-core AMD EPYC (AVX2)
that spent a third of the CPU time in page faults (0.35 steps/s).  tcmalloc keeps freed
pages for reuse without fragmenting: 0.57 steps/s on the same machine, same run.  An
allocator can only be chosen before the process starts, so the command line re-executes
itself with ``LD_PRELOAD`` (as ``torch.backends.xeon.run_cpu`` does); where the library is
missing (Debian package ``libtcmalloc-minimal4``), training goes on with glibc.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


def find_tcmalloc(dirs: tuple[str, ...] = LIBRARY_DIRS) -> Path | None:
    """The first tcmalloc shared library found in ``dirs``, or None."""
    for d in dirs:
        for name in TCMALLOC_NAMES:
            path = Path(d) / name
            if path.exists():
                return path
    return None


def preloaded(environ: Mapping[str, str] = os.environ) -> str:
    """The allocator this process was started with: "tcmalloc" or "glibc"."""
    return "tcmalloc" if "tcmalloc" in environ.get("LD_PRELOAD", "") else "glibc"


def reexec_under_tcmalloc(module: str, argv: list[str]) -> None:
    """Replace this process by ``python -m module argv`` with tcmalloc preloaded.

    Returns (doing nothing) when tcmalloc is already loaded or not installed.
    """
    if preloaded() == "tcmalloc":
        return
    lib = find_tcmalloc()
    if lib is None:
        print("tcmalloc not found (apt-get install libtcmalloc-minimal4): training with glibc")
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(p for p in (str(lib), env.get("LD_PRELOAD", "")) if p)
    print(f"re-running under {lib} (faster CPU training; --malloc glibc keeps glibc)", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
