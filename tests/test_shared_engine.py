"""``--shared-engine``: one inference process batches the windows of every worker.

In-process: a real :class:`EngineHost` on a Unix socket with real models, real clients and
a real server. Out of process: the real CLI with ``--workers 2 --shared-engine`` and the
bundled tiny-en model, sentences spoken by espeak-ng.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import RATE, synthesize, to_s16
from conftest import server_config
from worker_support import (
    SENTENCES,
    START_TIMEOUT_S,
    WorkerServer,
    check_words,
    concurrent_streams_get_their_words,
    health,
    sigterm_mid_utterance,
    start_without_model,
    utterance,
    workers_seen,
)
from wsclient import of_type, stream_pcm

from streaming.__main__ import build_parser, config_from_args
from streaming.config import EngineConfig
from streaming.engine import EngineClosed, InferenceError
from streaming.engines import host_engine
from streaming.model import LoadedModel
from streaming.server import Server
from streaming.shared_engine import EngineHost, SharedEngineClient, engine_address


@pytest.fixture
async def host(
    tiny_model_dir: Path, tiny_model: LoadedModel, tmp_path: Path
) -> AsyncIterator[EngineHost]:
    # A long batching deadline, so windows from different clients meet in one batch.
    config = server_config(tiny_model_dir, engine=EngineConfig(batch_deadline_ms=300))
    running = await host_engine(config, engine_address(tmp_path), model=tiny_model)
    yield running
    await running.stop()


def window(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32)


async def infer(client: SharedEngineClient, samples: np.ndarray) -> np.ndarray:
    return await asyncio.wrap_future(client.submit(samples))


async def test_windows_from_two_workers_are_batched_together_and_match_the_model(
    host: EngineHost, tiny_model: LoadedModel
) -> None:
    clients = [SharedEngineClient(host.address) for _ in range(2)]
    for client in clients:
        await client.start()
    assert clients[0].info == tiny_model.info
    samples = [window(1.0, 1), window(1.0, 2)]
    outputs = await asyncio.gather(*(infer(c, s) for c, s in zip(clients, samples)))
    assert dict(host.engine.stats.batch_sizes) == {2: 1}  # one call for both workers
    expected = tiny_model.infer(np.stack(samples))
    for output, reference in zip(outputs, expected):
        np.testing.assert_allclose(output, reference, atol=1e-5)
    for client in clients:
        assert client.stats.requests == 1 and client.stats.batches == pytest.approx(0.5)
        assert client.stats.audio_samples == RATE
        await client.stop()


async def test_a_worker_whose_engine_is_gone_gets_a_clear_error(host: EngineHost) -> None:
    client = SharedEngineClient(host.address, connect_timeout_s=0.3)
    await client.start()
    await host.stop()
    with pytest.raises(InferenceError, match="shared inference process"):
        await infer(client, window(0.5, 3))
    await client.stop()


class GatedModel:
    """Holds every batch until ``gate`` is set: windows stay in flight."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.device = model.device
        self.gate = threading.Event()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(10)
        return self.model.infer(batch)


async def test_windows_in_flight_when_the_engine_goes_away_fail_with_a_clear_error(
    host: EngineHost, tiny_model: LoadedModel
) -> None:
    gated = GatedModel(tiny_model)
    host.engine.model = gated
    client = SharedEngineClient(host.address, connect_timeout_s=0.3)
    await client.start()
    pending = asyncio.ensure_future(infer(client, window(0.5, 5)))
    while host.engine.queue_depth == 0 and not host.engine.stats.gathers:
        await asyncio.sleep(0.01)
    for writer in list(host._writers):  # the engine process dies: its sockets close
        writer.close()
    with pytest.raises(InferenceError, match="lost the shared inference process"):
        await asyncio.wait_for(pending, 5)
    gated.gate.set()
    await client.stop()


async def test_a_cancelled_window_is_withdrawn_and_never_reaches_the_model(
    host: EngineHost, tiny_model: LoadedModel
) -> None:
    gated = GatedModel(tiny_model)
    host.engine.model = gated
    client = SharedEngineClient(host.address)
    await client.start()
    held = client.submit(window(0.5, 6))
    while not host.engine.stats.gathers:  # the engine is running it, held at the gate
        await asyncio.sleep(0.01)
    doomed = client.submit(window(0.25, 7))
    while not host.engine.queue_depth:  # queued behind it
        await asyncio.sleep(0.01)
    assert doomed.cancel()  # its session is gone
    await asyncio.sleep(0.2)  # the withdrawal crosses the socket (same event loop)
    gated.gate.set()
    await asyncio.wait_for(asyncio.wrap_future(held), 10)
    kept = await asyncio.wait_for(infer(client, window(0.3, 8)), 10)
    assert kept.shape[1] == len(tiny_model.vocab.tokens)
    assert dict(host.engine.stats.window_lengths) == {RATE // 2: 1, 3 * RATE // 10: 1}
    assert client.stats.audio_samples == RATE // 2 + 3 * RATE // 10
    await client.stop()


async def test_a_window_submitted_from_another_thread_is_served(
    host: EngineHost, tiny_model: LoadedModel
) -> None:
    client = SharedEngineClient(host.address)
    await client.start()
    samples = window(0.5, 9)
    future = await asyncio.to_thread(client.submit, samples)
    output = await asyncio.wait_for(asyncio.wrap_future(future), 10)
    np.testing.assert_allclose(output, tiny_model.infer(samples[None])[0], atol=1e-5)
    await client.stop()


async def test_stopping_a_worker_fails_its_windows_in_flight_with_engine_closed(
    host: EngineHost, tiny_model: LoadedModel
) -> None:
    gated = GatedModel(tiny_model)
    host.engine.model = gated
    client = SharedEngineClient(host.address, EngineConfig(max_queue=1))
    await client.start()
    sent = client.submit(window(0.5, 10))
    waiting = client.submit(window(0.5, 11))  # behind it: max_queue is 1
    while not host.engine.stats.gathers:
        await asyncio.sleep(0.01)
    await client.stop()
    for future in (sent, waiting):
        with pytest.raises(EngineClosed):
            await asyncio.wrap_future(future)
    with pytest.raises(EngineClosed):
        await infer(client, window(0.5, 12))
    gated.gate.set()


async def test_a_worker_reconnects_to_a_restarted_engine(
    host: EngineHost, tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    client = SharedEngineClient(host.address)
    await client.start()
    await host.stop()
    config = server_config(tiny_model_dir)
    restarted = await host_engine(config, host.address, model=tiny_model)
    try:
        output = await infer(client, window(0.5, 4))
        assert output.shape[1] == len(tiny_model.vocab.tokens)
    finally:
        await client.stop()
        await restarted.stop()


async def test_a_server_on_the_shared_engine_sends_the_same_text_as_one_on_its_own(
    host: EngineHost, tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    pcm = to_s16(np.concatenate([np.zeros(RATE // 2, np.float32), synthesize(SENTENCES[0])]))
    config = server_config(tiny_model_dir)
    texts = []
    for kwargs in ({"engine_address": host.address}, {"model": tiny_model}):
        async with Server(config, **kwargs) as server:  # type: ignore[arg-type]
            messages, code = await stream_pcm(server.url, pcm)
            assert code == 1000
            texts.append([m["text"] for m in of_type(messages, "final")])
            assert server.health()["shared_engine"] == ("engine_address" in kwargs)
    assert texts[0] == texts[1] and texts[0]


def test_shared_engine_option_fills_the_config() -> None:
    assert config_from_args(build_parser().parse_args([])).shared_engine is False
    args = build_parser().parse_args(["--workers", "2", "--shared-engine"])
    assert config_from_args(args).shared_engine is True


# -- the real CLI ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerServer]:
    server = WorkerServer(tmp_path_factory.mktemp("shared"), "--workers", "2", "--shared-engine")
    yield server
    assert server.stop() == 0


def engine_pids(stderr: str) -> list[int]:
    return [int(p) for p in re.findall(r"started the inference process \(pid (\d+)\)", stderr)]


async def test_streams_on_both_workers_get_their_words_from_one_model(
    pool: WorkerServer,
) -> None:
    await concurrent_streams_get_their_words(pool.url)
    loaded = [line for line in pool.stderr.splitlines() if "loaded model tiny-en" in line]
    assert len(loaded) == 1 and "[engine] " in loaded[0]  # the workers load no weights
    seen = workers_seen(pool.url, 2)
    assert sorted(seen) == [0, 1]
    assert all(health(pool.url)["shared_engine"] for _ in range(4))


async def test_a_killed_inference_process_is_restarted_and_streams_work_again(
    pool: WorkerServer,
) -> None:
    (first,) = engine_pids(pool.stderr)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "the inference process (pid" not in pool.stderr or "serving again" not in pool.stderr:
        assert time.monotonic() < deadline, "the inference process was not restarted"
        await asyncio.sleep(0.2)
    assert "exited unexpectedly with code -9" in pool.stderr
    assert len(engine_pids(pool.stderr)) == 2
    messages, code = await stream_pcm(pool.url, utterance(SENTENCES[1]), pace=0.01)
    assert code == 1000
    (final,) = of_type(messages, "final")
    check_words(final["text"], SENTENCES[1])
    assert pool.proc.poll() is None


async def test_sigterm_mid_stream_decodes_the_open_utterance_before_the_engine_stops(
    tmp_path: Path,
) -> None:
    server = WorkerServer(tmp_path, "--workers", "2", "--shared-engine", "--shutdown-grace-s", "5")
    try:
        messages = await sigterm_mid_utterance(server)
        assert not of_type(messages, "error")  # the engine outlived the workers' finals
    finally:
        server.stop()


def test_an_inference_process_that_cannot_load_the_model_fails_with_one_line() -> None:
    result = start_without_model("--shared-engine")
    assert "started worker" not in result.stderr  # no worker starts without an engine


def test_gpu_options_fill_the_config_with_safe_defaults() -> None:
    default = config_from_args(build_parser().parse_args([]))
    assert default.model.cudnn == "on" and default.engine.pad_batches == "auto"
    args = build_parser().parse_args(["--cudnn", "off", "--pad-batches", "on"])
    config = config_from_args(args)
    assert config.model.cudnn == "off" and config.engine.pad_batches == "on"
    config.validate()
