"""A real ``python -m streaming --workers N`` server in a subprocess, and checks on what
it says; shared by the worker and shared-engine tests."""

from __future__ import annotations

import asyncio
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
from websockets.asyncio.client import connect
from wsclient import collect_until_close, of_type, recv_json, stream_pcm

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


def start_without_model(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI pointed at a missing model folder; asserts it failed at start with exactly
    one ``streaming-server: error:`` line (no traceback, no ready line) that says so."""
    result = subprocess.run(
        [*SERVER, "--model", "/no/such/folder", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "streaming-server: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("streaming-server: error: ")
    assert "does not exist" in errors[0]
    assert "ready on" not in result.stdout
    return result


async def sigterm_mid_utterance(server: WorkerServer) -> list[dict[str, Any]]:
    """SIGTERM while an utterance is open (no "end" sent); asserts the server still sends
    that utterance's final (reason "shutdown"), closes with 1001 and exits 0. Returns every
    message the client got."""
    async with connect(server.url) as ws:
        await recv_json(ws)
        await ws.send(utterance("this sentence is cut short by a server restart"))
        while (await recv_json(ws))["type"] != "partial":
            pass
        server.proc.send_signal(signal.SIGTERM)
        messages = await collect_until_close(ws, timeout=30)
    finals = of_type(messages, "final")
    assert len(finals) == 1 and finals[0]["reason"] == "shutdown"
    assert finals[0]["text"]
    assert ws.close_code == 1001
    assert await asyncio.to_thread(server.proc.wait, 30) == 0  # raises if it takes longer
    return messages


async def concurrent_streams_get_their_words(url: str) -> None:
    """Six concurrent paced streams of the two sentences; each final has its own words."""
    references = SENTENCES * 3
    audio = {sentence: utterance(sentence) for sentence in SENTENCES}
    results = await asyncio.gather(
        *(stream_pcm(url, audio[reference], pace=0.01) for reference in references)
    )
    for (messages, code), reference in zip(results, references):
        assert code == 1000
        (final,) = of_type(messages, "final")
        check_words(final["text"], reference)
