"""A real ``python -m streaming --workers N`` server in a subprocess, and checks on what
it says; shared by the worker and shared-engine tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from audio_fixtures import RATE, synthesize, to_s16
from compat_support import cer

ROOT = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-m", "streaming"]
SENTENCES = [
    "it is a good day to go to the market",
    "she can scoop these things into three red bags",
]
START_TIMEOUT_S = 120.0


class WorkerServer:
    """``python -m streaming --model tiny-en --port 0 --workers N …`` with its output in files."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.out_path = folder / "stdout.txt"
        self.err_path = folder / "stderr.txt"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [*SERVER, "--model", "tiny-en", "--port", "0", "--threads", "1", *args],
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.out_path.read_text().splitlines():
                if line.startswith("streaming server ready on "):
                    return line.split()[4]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server did not start:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def health(url: str) -> dict[str, Any]:
    http = url.replace("ws://", "http://") + "health"
    with urllib.request.urlopen(http, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def workers_seen(url: str, wanted: int, tries: int = 300) -> dict[int, int]:
    """Worker index → pid, from /health requests (each a new connection) until ``wanted``
    workers have answered."""
    seen: dict[int, int] = {}
    for _ in range(tries):
        data = health(url)
        seen[data["worker"]] = data["pid"]
        if len(seen) == wanted:
            break
    return seen


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def check_words(text: str, reference: str) -> None:
    assert cer(text, reference) <= 0.45, f"{text!r} vs {reference!r}"
    words = {w for w in reference.split() if len(w) >= 3}
    heard = {w for w in words if w in text.replace(" ", "")}
    assert 2 * len(heard) >= len(words), f"heard {sorted(heard)} in {text!r}"


def utterance(sentence: str) -> bytes:
    lead = np.zeros(RATE // 2, dtype=np.float32)
    return to_s16(np.concatenate([lead, synthesize(sentence)]))
