"""Inference engine: batching across callers, length buckets, fault isolation, OOM retry,
and futures: cancelling one drops its window."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from streaming import engine as engine_module
from streaming.config import EngineConfig
from streaming.engine import EngineClosed, InferenceEngine, InferenceError
from streaming.errors import ModelLoadError


class RecordingModel:
    """Returns each row's first sample as a (1, 2) array; records batch shapes."""

    def __init__(self, fail_on: float | None = None, oom_above: int | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.fail_on = fail_on
        self.oom_above = oom_above
        self.gate = threading.Event()
        self.gate.set()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait()
        self.shapes.append(batch.shape)
        if self.oom_above is not None and batch.shape[0] > self.oom_above:
            raise MemoryError("out of memory")
        if self.fail_on is not None and (batch[:, 0] == self.fail_on).any():
            raise ValueError("poisoned input")
        return np.stack([np.array([[row[0], row.size]], dtype=np.float32) for row in batch])


async def infer(engine: InferenceEngine, row: np.ndarray) -> np.ndarray:
    return await asyncio.wrap_future(engine.submit(row))


async def infer_many(engine: InferenceEngine, rows: list[np.ndarray]) -> list[object]:
    return await asyncio.gather(*(infer(engine, r) for r in rows), return_exceptions=True)


async def test_concurrent_requests_are_batched_together() -> None:
    model = RecordingModel()
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_batch=8, batch_deadline_ms=50)) as engine:
        rows = [np.full(100, i, dtype=np.float32) for i in range(8)]
        task = asyncio.ensure_future(infer_many(engine, rows))
        await asyncio.sleep(0.1)
        model.gate.set()
        results = await task
    assert [r[0][0] for r in results] == list(range(8))  # type: ignore[index]
    assert max(s[0] for s in model.shapes) > 1
    assert engine.stats.requests == 8


async def test_different_lengths_are_never_padded_into_one_batch() -> None:
    model = RecordingModel()
    async with InferenceEngine(model, EngineConfig(batch_deadline_ms=50)) as engine:
        rows = [np.zeros(n, dtype=np.float32) for n in (100, 200, 100, 300, 200)]
        results = await infer_many(engine, rows)
    assert [r[0][1] for r in results] == [100, 200, 100, 300, 200]  # type: ignore[index]
    assert all(len(set([s[1]])) == 1 for s in model.shapes)


async def test_a_failing_batch_fails_only_its_requests_and_the_engine_goes_on() -> None:
    model = RecordingModel(fail_on=7.0)
    async with InferenceEngine(model, EngineConfig(batch_deadline_ms=20)) as engine:
        results = await infer_many(
            engine, [np.full(10, 7.0, dtype=np.float32), np.zeros(20, dtype=np.float32)]
        )
        assert isinstance(results[0], InferenceError)
        assert "poisoned input" in str(results[0])
        assert not isinstance(results[1], BaseException)
        after = await infer(engine, np.ones(10, dtype=np.float32))
    assert after[0][0] == 1.0
    assert engine.stats.failed_requests == 1


async def test_out_of_memory_retries_in_smaller_batches() -> None:
    model = RecordingModel(oom_above=2)
    model.gate.clear()
    engine = InferenceEngine(
        model, EngineConfig(batch_deadline_ms=50), is_oom=lambda e: isinstance(e, MemoryError)
    )
    async with engine:
        task = asyncio.ensure_future(
            infer_many(engine, [np.full(10, i, dtype=np.float32) for i in range(8)])
        )
        await asyncio.sleep(0.1)
        model.gate.set()
        results = await task
    assert [r[0][0] for r in results] == list(range(8))  # type: ignore[index]
    assert any(s[0] > 2 for s in model.shapes)


async def test_a_cancelled_awaiter_drops_its_window() -> None:
    model = RecordingModel()
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(batch_deadline_ms=1)) as engine:
        first = asyncio.ensure_future(infer(engine, np.zeros(10, dtype=np.float32)))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(infer(engine, np.zeros(20, dtype=np.float32)))
        await asyncio.sleep(0.01)
        doomed.cancel()  # the client is gone: its session's task is cancelled
        model.gate.set()
        await first
    assert (1, 20) not in model.shapes
    assert engine.stats.requests == 1


async def test_a_cancelled_future_is_never_run_and_frees_its_place() -> None:
    model = RecordingModel()
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_queue=2, max_batch=1)) as engine:
        running = engine.submit(np.zeros(10, dtype=np.float32))
        while engine.queue_depth:  # the worker holds it, blocked in the model
            await asyncio.sleep(0.01)
        queued = engine.submit(np.zeros(20, dtype=np.float32))
        waiting = engine.submit(np.zeros(30, dtype=np.float32))  # beyond max_queue
        assert engine.queue_depth == 1
        assert queued.cancel() and waiting.cancel()
        assert not running.cancel()  # too late: the model has it
        last = engine.submit(np.zeros(40, dtype=np.float32))
        model.gate.set()
        assert (await asyncio.wrap_future(last))[0][1] == 40
        with pytest.raises(CancelledError):
            waiting.result()
    assert model.shapes == [(1, 10), (1, 40)]
    assert engine.stats.requests == 2


async def test_submit_after_stop_fails_with_engine_closed() -> None:
    engine = InferenceEngine(RecordingModel())
    with pytest.raises(EngineClosed, match="not running"):
        await infer(engine, np.zeros(10, dtype=np.float32))
    await engine.start()
    await engine.stop()
    with pytest.raises(EngineClosed, match="stopping"):
        await infer(engine, np.zeros(10, dtype=np.float32))


async def test_stop_finishes_queued_windows_and_closes_those_still_waiting() -> None:
    model = RecordingModel()
    model.gate.clear()
    engine = InferenceEngine(model, EngineConfig(max_queue=2, max_batch=1))
    await engine.start()
    futures = [engine.submit(np.full(10, i, dtype=np.float32)) for i in range(4)]
    stopping = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the worker is still in the model
    model.gate.set()
    await stopping
    assert [f.result()[0][0] for f in futures[:2]] == [0, 1]
    for future in futures[2:]:
        assert isinstance(future.exception(), EngineClosed)


async def test_full_queue_makes_callers_wait_instead_of_growing() -> None:
    model = RecordingModel()
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_queue=2, max_batch=1)) as engine:
        row = np.zeros(10, dtype=np.float32)
        tasks = [asyncio.ensure_future(infer(engine, row)) for _ in range(6)]
        await asyncio.sleep(0.05)
        assert engine.queue_depth <= 2
        model.gate.set()
        await asyncio.gather(*tasks)


class SlowModel(RecordingModel):
    """Takes at least ``seconds`` per batch, like a model that saturates the device."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return super().infer(batch)


async def test_load_is_the_busy_fraction_of_the_recent_past_and_decays_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "LOAD_WINDOW_S", 0.5)
    async with InferenceEngine(SlowModel(0.05)) as engine:
        assert engine.load == 0.0
        began = time.perf_counter()
        for i in range(6):  # back to back: the model is busy nearly all the time
            await infer(engine, np.full(4, float(i), dtype=np.float32))
        assert time.perf_counter() - began >= 0.3
        assert engine.load >= 0.5  # >= 0.3 s busy in the last 0.5 s
        await asyncio.sleep(0.6)
        assert engine.load == 0.0


async def test_padded_batches_reach_the_model_in_bucket_sizes_with_unchanged_outputs() -> None:
    model = RecordingModel()
    model.gate.clear()
    config = EngineConfig(max_batch=8, batch_deadline_ms=50, pad_batches="on")
    async with InferenceEngine(model, config) as engine:
        rows = [np.full(100, i + 1, dtype=np.float32) for i in range(5)]
        task = asyncio.ensure_future(infer_many(engine, rows))
        await asyncio.sleep(0.1)
        model.gate.set()
        results = await task
    assert [r[0][0] for r in results] == [1, 2, 3, 4, 5]  # type: ignore[index]
    assert all(s[0] in engine_module.BATCH_BUCKETS for s in model.shapes), model.shapes
    assert sum(engine.stats.batch_sizes.values()) == len(model.shapes)
    assert engine.stats.requests == 5  # the silent rows are not windows


async def test_batches_are_not_padded_for_a_model_on_the_cpu_by_default() -> None:
    model = RecordingModel()  # no device attribute: treated as the CPU
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_batch=8, batch_deadline_ms=50)) as engine:
        rows = [np.zeros(100, dtype=np.float32) for _ in range(3)]
        task = asyncio.ensure_future(infer_many(engine, rows))
        await asyncio.sleep(0.1)
        model.gate.set()
        await task
    assert sum(s[0] for s in model.shapes) == 3


def test_batch_buckets_at_most_double_a_batch_and_leave_big_ones_alone() -> None:
    assert [engine_module.padded_batch(n) for n in (1, 3, 5, 17, 33, 65, 200)] == [
        1,
        4,
        8,
        24,
        48,
        96,
        256,
    ]
    assert engine_module.padded_batch(1000) == 1000  # beyond the buckets: as it is
    buckets = engine_module.BATCH_BUCKETS
    assert all(b <= 2 * a for a, b in itertools.pairwise(buckets))
    with pytest.raises(ValueError, match="pad batches"):
        EngineConfig(pad_batches="yes").validate()


class RaggedModel(RecordingModel):
    """A model that takes masked, padded windows: records ragged calls' lengths."""

    def __init__(self, device: str = "cuda:0", masks_padding: bool = True) -> None:
        super().__init__()
        self.device = device
        self.masks_padding = masks_padding
        self.ragged: list[tuple[list[int], int]] = []

    def infer_ragged(self, rows: list[np.ndarray], batch_rows: int = 0) -> list[np.ndarray]:
        self.gate.wait()
        self.ragged.append(([r.size for r in rows], batch_rows))
        return [np.array([[r[0], r.size]], dtype=np.float32) for r in rows]


async def test_mixed_lengths_run_as_one_masked_call_for_a_model_that_takes_a_mask() -> None:
    model = RaggedModel()  # on "CUDA": pad_lengths auto is on
    model.gate.clear()
    config = EngineConfig(max_batch=8, batch_deadline_ms=50)
    async with InferenceEngine(model, config) as engine:
        rows = [np.full(n, n, dtype=np.float32) for n in (300, 100, 200, 300, 100)]
        task = asyncio.ensure_future(infer_many(engine, rows))
        await asyncio.sleep(0.1)
        model.gate.set()
        results = await task
    assert [(r[0][0], r[0][1]) for r in results] == [(n, n) for n in (300, 100, 200, 300, 100)]  # type: ignore[index]
    assert model.ragged == [([300, 100, 200, 300, 100], 8)]  # one call, batch padded to 8
    assert model.shapes == [] and engine.stats.batches == 1 and engine.stats.gathers == 1
    assert engine.stats.window_lengths == {300: 2, 100: 2, 200: 1}


def test_the_engine_log_names_the_window_lengths_that_cost_calls() -> None:
    from streaming.shared_engine import describe_lengths

    seen = {37120: 900, 40960: 40, 16000: 0, 20480: 7}
    assert describe_lengths(seen) == ("3 lengths, ms x windows: 2320x900 2560x40 1280x7")
    many = {320 * (i + 1): i + 1 for i in range(8)}
    assert describe_lengths(many, most=2) == "8 lengths, ms x windows: 160x8 140x7 ..."


async def test_a_round_of_one_length_keeps_the_plain_call() -> None:
    model = RaggedModel()
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_batch=4, batch_deadline_ms=50)) as engine:
        task = asyncio.ensure_future(infer_many(engine, [np.zeros(100, np.float32)] * 3))
        await asyncio.sleep(0.1)
        model.gate.set()
        await task
    assert model.ragged == [] and model.shapes == [(4, 100)]


async def test_lengths_are_not_padded_on_the_cpu_by_default() -> None:
    model = RaggedModel(device="cpu")
    model.gate.clear()
    async with InferenceEngine(model, EngineConfig(max_batch=4, batch_deadline_ms=50)) as engine:
        rows = [np.zeros(n, dtype=np.float32) for n in (100, 200)]
        task = asyncio.ensure_future(infer_many(engine, rows))
        await asyncio.sleep(0.1)
        model.gate.set()
        await task
    assert model.ragged == [] and sorted(model.shapes) == [(1, 100), (1, 200)]


def test_padding_lengths_for_a_model_without_an_attention_mask_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="attention mask"):
        InferenceEngine(RaggedModel(masks_padding=False), EngineConfig(pad_lengths="on"))
    # auto: such a model (wav2vec2-base's group norm) keeps exact-length groups
    assert not engine_module.pads_lengths(EngineConfig(), "cuda:0", masks_padding=False)
    with pytest.raises(ValueError, match="pad lengths"):
        EngineConfig(pad_lengths="maybe").validate()
