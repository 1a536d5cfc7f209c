"""The Triton engine against a real Triton Inference Server (PyTriton) on loopback, CPU.

One server process for the module (it takes ~10 s to start on a small CPU, the first time
~10 s more to make its stub environment); the last test kills it and starts it again.
Skipped where the optional extra ``triton`` is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from client.api import stream_file
from streaming.audio import AudioFormat, to_int16_bytes
from streaming.config import (
    MODEL_SAMPLE_RATE,
    EngineConfig,
    ModelConfig,
    ServerConfig,
    VadConfig,
    WindowConfig,
)
from streaming.driver import SessionDriver
from streaming.engine import Engine, InferenceEngine, InferenceError
from streaming.errors import ModelLoadError
from streaming.events import Event, Final
from streaming.model import LoadedModel, ModelInfo, load_model
from streaming.server import Server
from streaming.session import Session
from streaming.triton_engine import TritonEngine, describe_model, model_info, triton_address
from streaming.windowing import WindowPlanner

pytest.importorskip("tritonclient.grpc.aio")
pytest.importorskip("pytriton")

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TritonProcess:
    """``python -m streaming.triton_server`` on loopback ports, in a process group of its
    own so that killing it takes Triton and its stubs down at once."""

    def __init__(self, log_path: Path) -> None:
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self) -> None:
        command = [
            sys.executable, "-m", "streaming.triton_server", "--model", "tiny-en",
            "--dtype", "fp32", "--threads", "1", "--no-warmup", "--host", "127.0.0.1",
            "--grpc-port", str(self.grpc), "--http-port", str(self.http),
            "--metrics-port", str(self.metrics), "--max-queue-delay-us", "2000",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://127.0.0.1:{self.http}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200 and self._models_ready():
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.kill()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"Triton did not become ready:\n{tail}")

    def _models_ready(self) -> bool:
        for model in ("wav2vec2", "wav2vec2-info"):
            url = f"http://127.0.0.1:{self.http}/v2/models/{model}/ready"
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status != 200:
                        return False
            except OSError:
                return False
        return True

    def kill(self) -> None:
        """SIGKILL the launcher, Triton and the stubs (the process group it leads)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    server = TritonProcess(tmp_path_factory.mktemp("triton") / "triton.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(ModelConfig(name="tiny-en", dtype="fp32"), threads=1)


@pytest.fixture(scope="module")
def demo_audio() -> np.ndarray:
    """The bundled demo recording: real speech, 12 s, 16 kHz."""
    path = Path(str(resources.files("streaming") / "assets" / "demo.wav"))
    audio, rate = sf.read(path, dtype="float32")
    assert rate == MODEL_SAMPLE_RATE
    return np.asarray(audio, dtype=np.float32)


@pytest.fixture(scope="module")
def speech_windows(bundled: LoadedModel, demo_audio: np.ndarray) -> list[np.ndarray]:
    """Windows of real speech at the lengths sessions send: first and steady ones."""
    audio = demo_audio
    planner = WindowPlanner(WindowConfig(), bundled.geometry, MODEL_SAMPLE_RATE)
    first, steady = planner.chunk + planner.right, planner.steady_length
    windows = []
    for i, start in enumerate(range(0, audio.size - steady, MODEL_SAMPLE_RATE // 2)):
        windows.append(audio[start : start + (steady if i % 3 else first)].copy())
    return windows


async def served(
    engine: TritonEngine | InferenceEngine, windows: list[np.ndarray]
) -> list[np.ndarray]:
    return list(await asyncio.gather(*(asyncio.wrap_future(engine.submit(w)) for w in windows)))


async def test_triton_gives_the_in_process_log_probabilities_for_real_speech(
    triton: TritonProcess, bundled: LoadedModel, speech_windows: list[np.ndarray]
) -> None:
    local = InferenceEngine(bundled, EngineConfig())
    await local.start()
    try:
        expected = await served(local, speech_windows)
    finally:
        await local.stop()
    engine = TritonEngine(triton.address)
    await engine.start()
    try:
        got = await served(engine, speech_windows)
        assert engine.info == bundled.info
        assert engine.stats.requests == len(speech_windows)
        assert engine.stats.failed_requests == 0
        assert engine.queue_depth == 0
        assert 0.0 < engine.load <= 1.0
    finally:
        await engine.stop()
    for mine, theirs in zip(got, expected):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(mine.argmax(-1), theirs.argmax(-1))


async def finals(engine: Engine, info: ModelInfo, audio: np.ndarray) -> list[Final]:
    """The finals of ``audio`` streamed through a session driver (real VAD, windows and
    stable text) on ``engine``: all audio first, so the windows do not depend on timing."""
    session = Session(info.vocab, info.geometry, VadConfig(), WindowConfig())
    events: list[Event] = []
    driver = SessionDriver(session, engine, ServerConfig(), events.extend)
    driver.start()
    try:
        driver.begin(AudioFormat())
        pcm = to_int16_bytes(audio)
        for i in range(0, len(pcm), 3200):  # 100 ms frames, as a live client sends
            driver.feed(pcm[i : i + 3200])
        driver.end()
        await asyncio.wait_for(driver.finished(), 120)
    finally:
        await driver.aclose()
    return [e for e in events if isinstance(e, Final)]


async def test_triton_gives_the_in_process_finals_word_for_word(
    triton: TritonProcess, bundled: LoadedModel, demo_audio: np.ndarray
) -> None:
    # Triton computes every window whole: so must the reference (no feature reuse)
    local = InferenceEngine(bundled, EngineConfig(reuse_features="off"))
    await local.start()
    try:
        expected = await finals(local, bundled.info, demo_audio)
    finally:
        await local.stop()
    engine = TritonEngine(triton.address)
    await engine.start()
    try:
        assert engine.info is not None
        got = await finals(engine, engine.info, demo_audio)
    finally:
        await engine.stop()
    assert len(expected) >= 2 and all(f.words for f in expected)
    assert got == expected


async def test_a_server_with_engine_triton_sends_the_in_process_finals_word_for_word(
    triton: TritonProcess, bundled: LoadedModel
) -> None:
    """The whole path: websocket server --engine triton://, the Python client, LM finals."""
    demo = Path(str(resources.files("streaming") / "assets" / "demo.wav"))
    # One chunk per window whatever the pace, so both servers plan the same windows.
    base = ServerConfig(
        host="127.0.0.1",
        port=0,
        model=ModelConfig(name="tiny-en", dtype="fp32"),
        window=WindowConfig(max_catchup_chunks=1),
        engine=EngineConfig(reuse_features="off"),  # Triton computes every window whole
        max_engine_load=1.0,
    )
    texts = []
    for config in (base, base.replace(inference=f"triton://{triton.address}")):
        async with Server(config, model=bundled if config is base else None) as server:
            result = await stream_file(demo, server.url, speed=0)
        assert result.ok, result.failure
        texts.append([(f["text"], f["start_ms"], f["end_ms"]) for f in result.finals])
    assert len(texts[0]) >= 3 and texts[1] == texts[0]


async def test_unreachable_triton_fails_start_with_one_line(bundled: LoadedModel) -> None:
    address = f"127.0.0.1:{free_port()}"
    engine = TritonEngine(address, connect_timeout_s=0.5)
    with pytest.raises(ModelLoadError) as raised:
        await engine.start()
    message = str(raised.value)
    assert message.startswith(f"cannot reach Triton at {address}: ")
    assert "\n" not in message


async def test_a_model_triton_does_not_serve_fails_start_with_one_line(
    triton: TritonProcess,
) -> None:
    engine = TritonEngine(triton.address, model_name="nope", connect_timeout_s=0.5)
    with pytest.raises(ModelLoadError, match=r"^cannot reach Triton at .*: model 'nope'"):
        await engine.start()


def test_the_model_description_keeps_case_for_each_front_end_to_choose(
    bundled: LoadedModel,
) -> None:
    raw = load_model(ModelConfig(name="tiny-en", dtype="fp32", lowercase=False), threads=1)
    document = describe_model(raw)
    assert model_info(document, lowercase=True) == bundled.info
    assert model_info(document, lowercase=False).vocab == raw.vocab
    assert triton_address("triton://gpu-box") == ("gpu-box:8001", "wav2vec2")
    assert triton_address("triton://10.0.0.2:9001/w2v") == ("10.0.0.2:9001", "w2v")


async def test_lost_triton_fails_windows_then_later_windows_succeed(
    triton: TritonProcess, speech_windows: list[np.ndarray]
) -> None:
    window = speech_windows[1]
    engine = TritonEngine(triton.address)
    await engine.start()
    try:
        before = await asyncio.wrap_future(engine.submit(window))
        in_flight = [engine.submit(w) for w in speech_windows]
        triton.kill()
        began = time.monotonic()
        outcomes = await asyncio.gather(
            *(asyncio.wrap_future(f) for f in in_flight), return_exceptions=True
        )
        assert all(isinstance(o, (np.ndarray, InferenceError)) for o in outcomes), outcomes
        with pytest.raises(InferenceError, match="lost the Triton inference server"):
            await asyncio.wrap_future(engine.submit(window))
        assert time.monotonic() - began < 5
        assert engine.stats.failed_requests >= 1

        await asyncio.to_thread(triton.start)
        deadline = time.monotonic() + 15
        while True:
            try:
                after = await asyncio.wrap_future(engine.submit(window))
                break
            except InferenceError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-4)
        assert engine.queue_depth == 0
    finally:
        await engine.stop()
