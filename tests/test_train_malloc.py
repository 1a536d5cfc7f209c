"""The trainer's allocator (training/malloc.py) and its bf16 choice (training/train.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import streaming.cpu
from training.malloc import find_tcmalloc, preloaded
from training.train import use_bf16

ROOT = Path(__file__).resolve().parent.parent


def test_tcmalloc_is_found_in_the_first_library_dir_that_has_it(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert find_tcmalloc((str(empty), str(full))) == full / "libtcmalloc_minimal.so.4"
    assert find_tcmalloc((str(empty),)) is None


def test_the_allocator_is_read_from_ld_preload() -> None:
    assert preloaded({"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}) == "tcmalloc"
    assert preloaded({"LD_PRELOAD": "/usr/lib/libfoo.so"}) == "glibc"
    assert preloaded({}) == "glibc"


@pytest.mark.skipif(find_tcmalloc() is None, reason="libtcmalloc-minimal4 is not installed")
def test_reexec_runs_the_module_with_tcmalloc_mapped_into_the_process(tmp_path: Path) -> None:
    (tmp_path / "probe_maps.py").write_text(
        "print(any('tcmalloc' in line for line in open('/proc/self/maps')))\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    code = "from training.malloc import reexec_under_tcmalloc as r; r('probe_maps', [])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith("re-running under") and out[-1] == "True"


def test_bf16_only_where_the_hardware_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(streaming.cpu, "native_bf16", lambda: None)
    assert not use_bf16(False, cpu)  # AVX2-only: emulated bf16 is far slower than fp32
    assert use_bf16(False, cuda)
    monkeypatch.setattr(streaming.cpu, "native_bf16", lambda: "avx512_bf16")
    assert use_bf16(False, cpu)
    assert not use_bf16(True, cpu) and not use_bf16(True, cuda)
