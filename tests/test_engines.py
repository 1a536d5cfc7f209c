"""The engine factory: every kind of engine is built, warmed up and started in one place.

Real parts: the tiny random Wav2Vec2ForCTC loaded by the real loading code, the real
batching engine, and a real shared inference process on a Unix socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import RATE
from conftest import server_config

from streaming.config import ModelConfig
from streaming.engine import EngineClosed
from streaming.engines import (
    LOCAL,
    build_engine,
    engine_kind,
    host_engine,
    shared_engine_url,
)
from streaming.errors import ModelLoadError
from streaming.metrics import Metrics
from streaming.model import LoadedModel
from streaming.shared_engine import engine_address


def window(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32)


async def test_a_local_engine_loads_warms_up_and_serves_a_window(
    tiny_model_dir: Path, tiny_model: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics(0)
    config = server_config(tiny_model_dir)
    built = await build_engine(config, metrics=metrics)  # loads the model from its folder
    try:
        assert built.model is not None and built.info == built.model.info
        assert built.info.name == str(tiny_model_dir)
        assert "loaded model" in caplog.text and "warm-up done" in caplog.text
        samples = window(1.0, 1)
        output = await asyncio.wrap_future(built.engine.submit(samples))
        np.testing.assert_allclose(output, tiny_model.infer(samples[None])[0], atol=1e-5)
        assert built.engine.stats.requests == 1
    finally:
        await built.engine.stop()  # the worker thread is done: it has told the metrics
    windows = metrics.registry.get_sample_value("streaming_engine_windows_total")
    assert windows == 1
    with pytest.raises(EngineClosed):
        await asyncio.wrap_future(built.engine.submit(samples))


async def test_a_given_model_is_not_loaded_again_and_warm_up_can_be_skipped(
    tiny_model_dir: Path, tiny_model: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = server_config(
        tiny_model_dir, model=ModelConfig(name=str(tiny_model_dir), warmup=False)
    )
    built = await build_engine(config, LOCAL, model=tiny_model)
    try:
        assert built.model is tiny_model
        assert "loaded model" not in caplog.text and "warm-up" not in caplog.text
        output = await asyncio.wrap_future(built.engine.submit(window(0.5, 2)))
        assert output.shape[1] == len(tiny_model.vocab.tokens)
    finally:
        await built.engine.stop()


async def test_a_shared_engine_url_connects_to_the_inference_process_with_the_same_output(
    tiny_model_dir: Path, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    config = server_config(tiny_model_dir)
    host = await host_engine(config, engine_address(tmp_path), model=tiny_model)
    try:
        built = await build_engine(config, shared_engine_url(host.address))
        assert built.model is None and built.info == tiny_model.info
        samples = window(1.0, 3)
        output = await asyncio.wrap_future(built.engine.submit(samples))
        np.testing.assert_allclose(output, tiny_model.infer(samples[None])[0], atol=1e-5)
        await built.engine.stop()
        with pytest.raises(ValueError, match="local engine"):
            await build_engine(config, shared_engine_url(host.address), model=tiny_model)
    finally:
        await host.stop()


async def test_engines_are_named_by_url_and_an_unknown_one_is_refused(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    assert engine_kind("local") == "local"
    assert engine_kind("unix:///run/engine.sock") == "unix"
    assert engine_kind("triton://gpu-box:8001/wav2vec2") == "triton"
    with pytest.raises(ValueError, match=r"grpc://host:1.*local, unix://\.\.\., triton://"):
        engine_kind("grpc://host:1")
    with pytest.raises(ValueError, match="local engine"):  # before reaching for Triton
        await build_engine(server_config(tiny_model_dir), "triton://host:1", model=tiny_model)


async def test_a_triton_url_builds_the_triton_client(tiny_model_dir: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelLoadError, match=f"^cannot reach Triton at 127.0.0.1:{port}: "):
        await build_engine(server_config(tiny_model_dir), f"triton://127.0.0.1:{port}")
