"""What a number was measured on: CPU, cores, GPU, library versions and how busy the
machine was (a shared 2-core box disturbs timings; the result file must say so).

Every result file starts with :func:`machine_info`; :func:`machine_slug` names the file.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import time
from typing import Any

from evaluation.machine import cpu_model


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, GPU, library versions, load."""
    import torch
    import transformers

    from streaming.cpu import cpu_flags

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": sorted(f for f in ("avx2", "avx512f", "amx_bf16") if f in flags),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "training_paused": _training_paused(),
        "other_busy_processes": _busy_processes(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    with contextlib.suppress(ImportError):
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    return info


def _training_paused() -> bool | None:
    """True when a background ``training.train`` exists and is stopped (SIGSTOP)."""
    try:
        import psutil
    except ImportError:
        return None
    found = False
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "-m training.train" in cmd and "python" in cmd:
            found = True
            if proc.info.get("status") != psutil.STATUS_STOPPED:
                return False
    return True if found else None


def _busy_processes(threshold: float = 10.0, sample_s: float = 0.5) -> list[str] | None:
    """Other processes using more than ``threshold`` % CPU right now (shared machines)."""
    try:
        import psutil
    except ImportError:
        return None
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(sample_s)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            cpu = p.cpu_percent(None)
            if cpu >= threshold:
                cmd = " ".join(p.info.get("cmdline") or [])[:80]
                busy.append(f"{cpu:.0f}% {cmd}")
    return busy


def machine_slug(info: dict[str, Any]) -> str:
    """Short file-name tag: ``cpu-xeon-2c``, ``nvidia-h100-80gb-hbm3``…"""
    if info.get("gpu"):
        name = str(info["gpu"])
    else:
        name = str(info["cpu"])
        for noise in ("(R)", "(TM)", "CPU", "Processor", "Intel", "AMD", "@"):
            name = name.replace(noise, " ")
        name = re.sub(r"\d+\.\d+\s*GHz", " ", name)
        name = f"cpu {name} {info.get('cores')}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def machine_label(info: dict[str, Any]) -> str:
    """For plot titles: the GPU, else ``<cpu model>, <cores> cores``."""
    return str(info["gpu"] or f"{info['cpu']}, {info['cores']} cores")


def header(title: str, info: dict[str, Any]) -> None:
    paused = info.get("training_paused")
    note = {True: "paused", False: "RUNNING (numbers disturbed)", None: "none found"}[paused]
    print(f"# {title}")
    print(
        f"# machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"transformers {info['transformers']}, device {info['device']}"
        + (f" ({info['gpu']})" if info.get("gpu") else "")
    )
    print(f"# background training: {note}; load average {info['loadavg_at_start']}")
    if info.get("other_busy_processes"):
        print(f"# other busy processes: {'; '.join(info['other_busy_processes'])}")
    sys.stdout.flush()
