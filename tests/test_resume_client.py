"""The Python client resumes a stream whose connection drops: through a TCP proxy that is
cut (no close frame, as when a replica dies) and then leads to a second real server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from status_recorder import StatusRecorder
from test_golden_wire import BUNDLED, DEMO, golden_config

from client.api import stream_file
from client.connection import StreamResult
from streaming.config import LmConfig, ModelConfig, ServerConfig
from streaming.model import LoadedModel, load_model
from streaming.server import Server

KEY = "a shared resume key for the tests"
SPEED = 2.0
CUT_AFTER_S = 2.3  # 4.6 s of audio: inside the second sentence

pytestmark = pytest.mark.skipif(
    not (BUNDLED / "config.json").is_file(), reason="the bundled tiny-en model is not present"
)


class Proxy:
    """Forwards TCP connections to ``target``; ``cut`` drops them all without a word."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self, new_target: int) -> None:
        self.target = new_target
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut(self.target)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(ModelConfig(name=str(BUNDLED), warmup=False), threads=1)


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio, rate = sf.read(DEMO, dtype="int16")
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    sf.write(path, audio[: int(7.6 * rate)], rate, subtype="PCM_16")
    return path


def _config(key: str = KEY) -> ServerConfig:
    return golden_config(resume_key=key, lm=LmConfig(path="none"))


@contextlib.asynccontextmanager
async def servers(
    model: LoadedModel, second_key: str = KEY
) -> AsyncIterator[tuple[Server, Server]]:
    async with Server(_config(), model=model) as a, Server(_config(second_key), model=model) as b:
        yield a, b


async def _cut_stream(
    path: Path, first: Server, second: Server, **options: Any
) -> tuple[StreamResult, StatusRecorder]:
    proxy = Proxy(first.port)
    await proxy.start()
    statuses = StatusRecorder()
    try:
        client = asyncio.ensure_future(
            stream_file(path, proxy.url, speed=SPEED, listener=statuses, **options)
        )
        await asyncio.sleep(CUT_AFTER_S)
        proxy.cut(second.port)
        return await client, statuses
    finally:
        await proxy.stop()


def _check_shown_once(result: StreamResult) -> None:
    ids = [f["utterance_id"] for f in result.finals]
    assert ids == list(range(len(ids))), ids
    starts = [w["start_ms"] for f in result.finals for w in f["words"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


async def test_a_dropped_stream_resumes_on_another_server_with_the_same_transcript(
    bundled: LoadedModel, two_sentences: Path
) -> None:
    async with servers(bundled) as (first, second):
        uncut = await stream_file(two_sentences, first.url, speed=SPEED)
        result, _ = await _cut_stream(two_sentences, first, second)
    assert result.ok, result.failure
    assert len(result.resumes) == 1 and "new_stream_at" not in result.resumes[0], result.resumes
    assert result.resumes[0]["reason"] == "connection lost"
    assert result.transcript == uncut.transcript
    _check_shown_once(result)
    assert result.audio_s == pytest.approx(7.6, abs=0.01)  # the replay is not counted again
    assert result.summary()["resumes"] == 1


async def test_a_refused_resume_goes_on_as_a_new_stream_without_losing_what_was_shown(
    bundled: LoadedModel, two_sentences: Path
) -> None:
    async with servers(bundled, second_key="another key, not the first server's") as (a, b):
        result, statuses = await _cut_stream(two_sentences, a, b)
    assert result.ok, result.failure
    refused, new_stream = result.resumes  # a resume attempt, then a new stream
    assert refused["refused"] == "unknown_key"
    assert new_stream["new_stream_at"] > 0
    assert "all the rest" in result.transcript and "happiness" in result.transcript
    _check_shown_once(result)
    assert any("new stream" in line for line in statuses.lines), statuses.lines


async def test_past_its_buffer_bound_the_client_says_so_and_goes_on_with_a_gap(
    bundled: LoadedModel, two_sentences: Path
) -> None:
    async with servers(bundled) as (first, second):
        result, statuses = await _cut_stream(two_sentences, first, second, max_unacked_s=1.0)
    assert result.ok, result.failure
    assert any("not acknowledged the last 1 s" in line for line in statuses.lines)
    gap_from = result.resumes[0]["new_stream_at"]
    assert gap_from > 0 and "offset" not in result.resumes[0]
    _check_shown_once(result)
