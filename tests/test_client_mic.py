"""The microphone client for real, on a machine without a sound card.

scripts/virtual-mic.sh starts PulseAudio with a null sink "vmic" whose monitor is the
default source; speech played into it with `paplay -d vmic` is what sounddevice records
from the ALSA "pulse" device. Skipped (with the reason) only where PulseAudio cannot run.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import RATE, speech_with_pauses

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vmic() -> str:
    """The virtual microphone's sink name, once PulseAudio answers."""
    missing = [t for t in ("pulseaudio", "pactl", "paplay") if shutil.which(t) is None]
    if missing:
        pytest.skip(
            f"PulseAudio cannot be started: {', '.join(missing)} not installed"
            " (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    started = subprocess.run(
        ["bash", str(REPO / "scripts" / "virtual-mic.sh")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if subprocess.run(["pactl", "info"], capture_output=True, timeout=10).returncode != 0:
        pytest.skip(f"PulseAudio cannot be started: {started.stderr.strip()}")
    try:
        import sounddevice as sd
    except OSError as exc:
        pytest.fail(
            f"PulseAudio runs but PortAudio is missing (apt-get install libportaudio2): {exc}"
        )
    # PortAudio lists devices once, when initialised: pick up the PulseAudio ones.
    sd._terminate()
    sd._initialize()
    return "vmic"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio, _ = speech_with_pauses(["hello world", "this is a test"], pause_s=1.2, lead_s=0.2)
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(str(path), audio, RATE)
    return path


async def play(sink: str, path: Path) -> None:
    proc = await asyncio.create_subprocess_exec("paplay", "-d", sink, str(path))
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_virtual_mic_records_what_is_played(vmic: str, speech_wav: Path) -> None:
    from client.mic import Microphone

    lines: list[str] = []
    mic = Microphone("pulse", 16000, 100, status=lines.append)
    assert mic.rate == 16000 and mic.blocksize == 1600
    stop = asyncio.Event()

    async def player() -> None:
        while not any("listening" in line for line in lines):
            await asyncio.sleep(0.02)
        await play(vmic, speech_wav)
        await asyncio.sleep(0.3)
        stop.set()

    task = asyncio.create_task(player())
    blocks = [b async for b in mic.blocks(stop, seconds=60)]
    await task
    audio = np.concatenate(blocks).astype(np.float64) / 32768
    played, _ = sf.read(str(speech_wav))
    assert len(audio) / 16000 >= len(played) / RATE - 0.2
    assert mic.stats.dropped_blocks == 0
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.1 * float(np.sqrt(np.mean(played**2))), f"silence recorded (rms {rms})"
    # the pause between the sentences is heard as a pause: loud and quiet 100 ms blocks
    levels = np.sqrt(np.mean(audio[: len(audio) // 1600 * 1600].reshape(-1, 1600) ** 2, axis=1))
    assert (levels > 0.01).sum() >= 5 and (levels < 0.001).sum() >= 5


async def test_mic_client_end_to_end(
    vmic: str, speech_wav: Path, server: Any, tmp_path: Path
) -> None:
    """`python -m client mic` on a terminal (pty): speech played into the virtual mic is
    streamed to the real server, captions update in place, Ctrl-C finishes cleanly, and
    the latency report holds every final and word."""
    report = tmp_path / "mic.json"
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "mic", "--device", "pulse", "--url", server.url,
        "--seconds", "60", "--report", str(report), "--timestamps",
        stdin=subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "100"},
    )  # fmt: skip
    os.close(slave)
    raw = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the client exited and the pty closed
                return
            if not data:
                return
            raw.extend(data)

    reader = asyncio.create_task(asyncio.to_thread(read_terminal))
    assert proc.stderr is not None
    err_lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "client exited early:\n" + "".join(err_lines)
            err_lines.append(line)
            if "listening" in line:
                break
        await play(vmic, speech_wav)
        await asyncio.sleep(1.5)  # trailing silence: the VAD ends the last utterance
        proc.send_signal(signal.SIGINT)
        _, rest = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
        os.close(master)
    err = "".join(err_lines) + rest.decode()
    assert proc.returncode == 0, err
    assert "recording from [" in err and "stopping: finishing the stream" in err
    assert "latency (ms)" in err and "DROPPED" not in err

    data = json.loads(report.read_text())
    (session,) = data["sessions"]
    summary = session["summary"]
    assert summary["ok"] and summary["interrupted"]
    assert summary["dropped_blocks"] == 0
    assert summary["audio_s"] >= sf.info(str(speech_wav)).duration
    assert 0.5 <= summary["speed_x_realtime"] <= 1.1  # a live source (device start-up aside)
    finals = session["finals"]
    assert len(finals) >= 1, "the server heard no speech from the virtual microphone"
    for u in session["utterances"]:
        assert 0 <= u["final_latency_ms"] < 5000
    for w in session["words"]:
        if w["partial_latency_ms"] is not None:
            assert 0 <= w["partial_latency_ms"] < 5000
    assert summary["latency_ms"]["final"]["count"] == len(finals)

    # live captions on the terminal: in-place updates, each final on its own line
    shown = raw.decode(errors="replace")
    assert "\r\x1b[2K" in shown
    if summary["partials"]:
        assert "\x1b[2m" in shown or all(not f["text"] for f in finals)
    for f in finals:
        if f["text"]:
            assert re.search(re.escape(f["text"]) + r"\r?\n", shown), f["text"]
