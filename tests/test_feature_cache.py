"""Feature reuse across a stream's overlapping windows: the cache's bookkeeping alone, the
bundled model's reusing call against whole-window inference, and the engine that routes
keyed windows through it."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import numpy as np
import pytest
from audio_fixtures import silence, synthesize, to_s16

from streaming.config import EngineConfig, ModelConfig, ServerConfig, VadConfig, WindowConfig
from streaming.engine import InferenceEngine, reuses_features
from streaming.engines import build_local_engine
from streaming.errors import ModelLoadError
from streaming.feature_cache import FeatureCache, FeatureKey
from streaming.model import LoadedModel, load_model
from streaming.session import Session
from streaming.utterance import WindowRequest

STRIDE = 320


@pytest.fixture(scope="module")
def bundled_fp32() -> LoadedModel:
    # fp32: the checks are of exactness, which bf16 rounding (auto on some CPUs) would blur
    return load_model(ModelConfig(name="tiny-en", dtype="fp32", warmup=False), threads=1)


def stream_windows(model: LoadedModel) -> list[WindowRequest]:
    """Every window a real Session asks for over one spoken utterance, in order."""
    session = Session(model.vocab, model.geometry, VadConfig(), WindowConfig())
    pcm = to_s16(np.concatenate([silence(0.3), synthesize("the quick brown fox"), silence(1)]))
    requests: list[WindowRequest] = []
    for start in range(0, len(pcm), 3200):
        session.feed(pcm[start : start + 3200])
        while (request := session.next_request()) is not None:
            requests.append(request)
            session.complete(request, model.infer(request.samples[None])[0])
    session.end()
    while (request := session.next_request()) is not None:
        requests.append(request)
        session.complete(request, model.infer(request.samples[None])[0])
    return requests


def test_a_window_reuses_the_frames_its_stream_read_before() -> None:
    cache = FeatureCache()
    features = np.arange(100 * 2).reshape(100, 2)
    cache.store(FeatureKey("a", 0), STRIDE, features)
    known, frames = cache.reusable(FeatureKey("a", 12 * STRIDE), STRIDE, 100)
    assert known == 88
    np.testing.assert_array_equal(frames, features[12:])
    # fully inside the stored window (a final window ending where it did)
    known, frames = cache.reusable(FeatureKey("a", 12 * STRIDE), STRIDE, 50)
    assert known == 50 and len(frames) == 50


def test_no_reuse_across_streams_before_the_stored_frames_or_off_the_frame_grid() -> None:
    cache = FeatureCache()
    cache.store(FeatureKey("a", 10 * STRIDE), STRIDE, np.zeros((20, 2)))
    assert cache.reusable(FeatureKey("b", 10 * STRIDE), STRIDE, 20) == (0, None)
    assert cache.reusable(FeatureKey("a", 9 * STRIDE), STRIDE, 20) == (0, None)
    assert cache.reusable(FeatureKey("a", 10 * STRIDE + 5), STRIDE, 20) == (0, None)
    assert cache.reusable(FeatureKey("a", 30 * STRIDE), STRIDE, 20) == (0, None)  # a gap


def test_a_stream_is_forgotten_after_its_last_window_and_the_cache_stays_bounded() -> None:
    cache = FeatureCache(streams=2)
    cache.store(FeatureKey("a", 0), STRIDE, np.zeros((5, 2)))
    cache.store(FeatureKey("a", 0, last=True), STRIDE, np.zeros((5, 2)))
    assert len(cache) == 0
    for name in "bcd":
        cache.store(FeatureKey(name, 0), STRIDE, np.zeros((5, 2)))
    assert len(cache) == 2
    assert cache.reusable(FeatureKey("b", 0), STRIDE, 5) == (0, None)  # least recent gone
    assert cache.reusable(FeatureKey("d", 0), STRIDE, 5)[0] == 5
    with pytest.raises(ValueError, match="at least one"):
        FeatureCache(streams=0)


def test_reusing_features_gives_whole_window_outputs_when_windows_are_not_rescaled(
    bundled_fp32: LoadedModel,
) -> None:
    # Without per-window scaling a frame's features depend on its own 400 samples only, so
    # reuse must be exact; with it, only the scale of reused frames may differ.
    unscaled = dataclasses.replace(bundled_fp32, normalize=False)
    requests = stream_windows(unscaled)
    assert len(requests) >= 6 and requests[-1].plan.final
    cache = FeatureCache()
    for request in requests:
        whole = unscaled.infer(request.samples[None])[0]
        (reused,) = unscaled.infer_reusing([request.samples], [request.key], cache)
        assert reused.shape == whole.shape
        np.testing.assert_allclose(reused, whole, atol=1e-4)
    assert cache.misses == 1 and cache.hits == len(requests) - 1
    # a short utterance's windows still grow; a long one's reuse nine frames in ten
    frames = sum(unscaled.geometry.frames(r.samples.size) for r in requests)
    assert cache.reused_frames >= 0.75 * frames
    assert len(cache) == 0  # the final window let the utterance go


def test_reusing_changes_only_the_scale_of_reused_frames(bundled_fp32: LoadedModel) -> None:
    requests = stream_windows(bundled_fp32)
    cache = FeatureCache()
    texts = []
    for i, request in enumerate(requests):
        whole = bundled_fp32.infer(request.samples[None])[0]
        (reused,) = bundled_fp32.infer_reusing([request.samples], [request.key], cache)
        if i == 0:  # nothing to reuse: the same computation (scaled in numpy, not torch)
            np.testing.assert_allclose(reused, whole, rtol=1e-5, atol=1e-5)
        texts.append((whole.argmax(-1), reused.argmax(-1)))
    agree = np.mean(np.concatenate([a == b for a, b in texts]))
    assert agree >= 0.97, f"best paths agree on {agree:.1%} of frames"


def test_a_batch_of_streams_at_different_points_is_one_reusing_call(
    bundled_fp32: LoadedModel,
) -> None:
    unscaled = dataclasses.replace(bundled_fp32, normalize=False)
    requests = stream_windows(unscaled)
    together = FeatureCache()
    # two streams over the same windows, one a window ahead: rows of different lengths
    # and different amounts of reusable audio in each call
    for a, b in itertools.pairwise(requests):
        keys = [dataclasses.replace(a.key, stream="x"), dataclasses.replace(b.key, stream="y")]
        got = unscaled.infer_reusing([a.samples, b.samples], keys, together)
        for request, output in zip((a, b), got):
            expected = unscaled.infer(request.samples[None])[0]
            np.testing.assert_allclose(output, expected, atol=1e-4)
    assert together.misses == 2 and together.hits == 2 * (len(requests) - 2)


async def test_the_engine_reuses_features_for_keyed_windows_on_the_cpu(
    bundled_fp32: LoadedModel, tiny_model: LoadedModel
) -> None:
    unscaled = dataclasses.replace(bundled_fp32, normalize=False)
    requests = stream_windows(unscaled)
    engine = InferenceEngine(unscaled, EngineConfig())  # auto: on for tiny-en on the CPU
    assert engine.reuses_features
    async with engine:
        for request in requests:
            got = await asyncio.wrap_future(engine.submit(request.samples, request.key))
            expected = unscaled.infer(request.samples[None])[0]
            np.testing.assert_allclose(got, expected, atol=1e-4)
        unkeyed = await asyncio.wrap_future(engine.submit(requests[0].samples))
        assert unkeyed.shape == unscaled.infer(requests[0].samples[None])[0].shape
    assert engine.features.hits == len(requests) - 1
    assert engine.stats.requests == len(requests) + 1 and engine.stats.failed_requests == 0
    off = InferenceEngine(unscaled, EngineConfig(reuse_features="off"))
    assert not off.reuses_features
    # the random test model normalises its first convolution across time (group norm)
    assert not InferenceEngine(tiny_model, EngineConfig()).reuses_features


def test_reuse_is_auto_on_the_cpu_only_and_refused_for_a_model_that_cannot() -> None:
    auto = EngineConfig()
    assert reuses_features(auto, "cpu", framewise=True)
    assert not reuses_features(auto, "cuda", framewise=True)
    assert not reuses_features(auto, "cpu", framewise=False)
    assert reuses_features(EngineConfig(reuse_features="on"), "cuda", framewise=True)
    with pytest.raises(ModelLoadError, match="frame by frame"):
        reuses_features(EngineConfig(reuse_features="on"), "cpu", framewise=False)
    with pytest.raises(ValueError, match="reuse features"):
        EngineConfig(reuse_features="sometimes").validate()


def test_the_compiled_transformer_gives_the_eager_outputs(bundled_fp32: LoadedModel) -> None:
    requests = stream_windows(bundled_fp32)
    compiled = dataclasses.replace(bundled_fp32)  # its own compiled_tail; same weights
    seconds = compiled.compile_tail(requests[-2].samples.size)
    assert seconds > 0 and compiled.compiled_tail is not None
    eager_cache, compiled_cache = FeatureCache(), FeatureCache()
    for request in requests:
        (eager,) = bundled_fp32.infer_reusing([request.samples], [request.key], eager_cache)
        (fast,) = compiled.infer_reusing([request.samples], [request.key], compiled_cache)
        np.testing.assert_allclose(fast, eager, atol=2e-3)  # fp32: fused kernels' rounding


def test_a_failed_compile_is_one_clear_error(
    bundled_fp32: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def no_compiler(*args: object, **kwargs: object) -> object:
        def run(*a: object) -> object:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")

        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    model = dataclasses.replace(bundled_fp32)
    with pytest.raises(ModelLoadError) as raised:
        model.compile_tail(16000)
    message = str(raised.value)
    assert message.startswith("--compile: torch.compile failed (RuntimeError: InvalidCxxCompiler")
    assert "\n" not in message and "g++" in message
    assert model.compiled_tail is None  # eager again


async def test_compile_is_refused_where_no_window_reuses_features(
    bundled_fp32: LoadedModel,
) -> None:
    config = ServerConfig(
        model=ModelConfig(name="tiny-en", compile=True, warmup=False),
        engine=EngineConfig(reuse_features="off"),
    )
    with pytest.raises(ModelLoadError, match="reuses none"):
        await build_local_engine(config, model=bundled_fp32)


def test_a_stored_window_holds_its_own_frames_not_the_batch_it_came_from(
    bundled_fp32: LoadedModel,
) -> None:
    requests = stream_windows(bundled_fp32)
    cache = FeatureCache()
    rows = [requests[3].samples, requests[3].samples.copy()]  # one convolution call
    keys = [FeatureKey("a", 0), FeatureKey("b", 0)]
    bundled_fp32.infer_reusing(rows, keys, cache)
    for stream in ("a", "b"):
        known, features = cache.reusable(FeatureKey(stream, 0), STRIDE, 10**6)
        assert known == len(features) > 0
        held = features.untyped_storage().nbytes()
        assert held == features.numel() * features.element_size()  # no batch behind it
