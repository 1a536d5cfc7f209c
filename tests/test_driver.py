"""The session driver alone: audio and engine completions in, events out through the sink.

A real Session with the real webrtcvad runs on espeak speech; the engine is a stand-in
whose windows wait until the test answers them (this file unit-tests the driver, not the
engine), answered with a frame-local stand-in model so any window reads the same frames.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future

import numpy as np
import pytest
from audio_fixtures import RATE, frames, silence, synthesize, to_s16
from fakes import GEOMETRY, VOCAB, ReceptiveFieldModel

from streaming.config import ServerConfig, VadConfig, WindowConfig
from streaming.driver import SessionDriver
from streaming.engine import EngineClosed, EngineStats, InferenceError
from streaming.errors import StreamError
from streaming.events import ErrorEvent, Event, Final, Lag, Partial
from streaming.feature_cache import FeatureKey
from streaming.rescoring import FinalRescorer
from streaming.session import Session

LIVE = 2 * RATE // 50  # one 20 ms frame of s16le


class HeldEngine:
    """Engine stand-in: each window waits in ``waiting`` until :meth:`answer`, or is
    answered at once when ``hold`` is off; ``failures`` fail the next windows instead."""

    def __init__(self, *, hold: bool) -> None:
        self.hold = hold
        self.model = ReceptiveFieldModel()
        self.waiting: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
        self.submitted: list[Future[np.ndarray]] = []
        self.failures: deque[Exception] = deque()

    @property
    def load(self) -> float:
        return 0.0

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def stats(self) -> EngineStats:
        return EngineStats()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def submit(self, samples: np.ndarray, key: FeatureKey | None = None) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        self.submitted.append(future)
        self.waiting.append((samples, future))
        if not self.hold:
            self.answer()
        return future

    def answer(self, count: int | None = None) -> None:
        """Settle the first ``count`` waiting windows (all of them by default)."""
        for _ in range(len(self.waiting) if count is None else count):
            samples, future = self.waiting.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # the driver gave it up
            if self.failures:
                future.set_exception(self.failures.popleft())
            else:
                future.set_result(self.model.window(samples))


class GatedDecoder:
    """LM decoder stand-in: each utterance's words wait until ``gate`` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def decode_words(
        self, log_probs: np.ndarray, hotwords: object = (), context: object = ()
    ) -> list[tuple[str, int, int]]:
        self.started.set()
        self.gate.wait(10)
        return [("rescored", 0, log_probs.shape[0])]


Build = Callable[..., tuple[SessionDriver, list[Event]]]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Makes started drivers (real Session, real webrtcvad) and closes them afterwards."""
    made: list[SessionDriver] = []

    def factory(
        engine: HeldEngine,
        *,
        rescorer: FinalRescorer | None = None,
        window: WindowConfig | None = None,
        early_commits: bool = False,
        **config: float,
    ) -> tuple[SessionDriver, list[Event]]:
        # Early commits only where a test asks: the others count the decoder's finals.
        session = Session(
            VOCAB,
            GEOMETRY,
            VadConfig(),
            window or WindowConfig(),
            rescore_finals=rescorer is not None,
            early_commits=early_commits,
        )
        events: list[Event] = []
        server = ServerConfig(**config)  # type: ignore[arg-type]
        driver = SessionDriver(session, engine, server, events.extend, rescorer=rescorer)
        driver.start()
        made.append(driver)
        return driver, events

    yield factory
    for driver in made:
        await asyncio.wait_for(driver.aclose(), 5)  # again after a test's own: harmless


@pytest.fixture(scope="module")
def two_sentences() -> bytes:
    """Two utterances for the VAD, then silence."""
    parts = [silence(0.5), synthesize("hello world"), silence(1.2)]
    parts += [synthesize("seven green apples"), silence(1.2)]
    return to_s16(np.concatenate(parts))


@pytest.fixture(scope="module")
def in_the_pause() -> int:
    """A byte offset into ``two_sentences`` past the first utterance's end (hangover
    included) and before the second sentence."""
    samples = int(0.5 * RATE) + synthesize("hello world").size + int(0.9 * RATE)
    return 2 * (samples // (LIVE // 2)) * (LIVE // 2)


async def feed_live(driver: SessionDriver, pcm: bytes) -> None:
    """``pcm`` in 20 ms frames, letting the driver run between them."""
    for frame in frames(pcm, LIVE):
        driver.feed(frame)
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def long_sentence() -> bytes:
    """3.2 s of speech without a pause, then silence."""
    speech = synthesize("the quick brown fox jumps over the lazy dog")
    return to_s16(np.concatenate([silence(0.5), speech, silence(1.2)]))


async def settle() -> None:
    """Let the driver's task run until it waits again (futures settle on the loop)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def readable_now(driver: SessionDriver) -> bool:
    waiter = asyncio.ensure_future(driver.readable())
    await settle()
    done = waiter.done()
    waiter.cancel()
    return done


async def close(driver: SessionDriver) -> None:
    """``aclose()``, which must finish on its own at once (not when a timeout cancels it)."""
    closing = asyncio.ensure_future(driver.aclose())
    await settle()
    assert closing.done(), "aclose() is still waiting"
    await closing


def finals(events: list[Event]) -> list[Final]:
    return [e for e in events if isinstance(e, Final)]


async def test_readable_blocks_above_the_high_mark_until_the_backlog_is_under_the_low_one(
    build: Build, long_sentence: bytes
) -> None:
    engine = HeldEngine(hold=True)
    # Each window advances at most 2 chunks (0.48 s): the backlog falls in small steps.
    window = WindowConfig(max_catchup_chunks=2)
    driver, _ = build(engine, window=window, backlog_high_s=1.8, backlog_low_s=0.8)
    high, low = int(1.8 * RATE), int(0.8 * RATE)
    session = driver.session
    for frame in frames(long_sentence, LIVE):
        assert await readable_now(driver), "blocked at or under the high-water mark"
        driver.feed(frame)
        if session.backlog_samples > high:
            break
    else:
        pytest.fail("the backlog never passed the high-water mark")
    waiter = asyncio.ensure_future(driver.readable())
    await settle()
    assert not waiter.done()
    backlogs = []
    while not waiter.done():
        assert engine.waiting, "the driver stopped asking for windows"
        engine.answer(1)
        await settle()
        backlogs.append(session.backlog_samples)
        assert waiter.done() == (backlogs[-1] <= low)
    # Still blocked under the high mark but above the low one: hysteresis, not a threshold.
    assert any(low < b <= high for b in backlogs[:-1])


async def test_lag_is_reported_once_past_the_warning_and_caught_up_only_under_half_of_it(
    build: Build, long_sentence: bytes
) -> None:
    engine = HeldEngine(hold=True)
    window = WindowConfig(max_catchup_chunks=1)  # the backlog falls 0.24 s per window
    driver, events = build(engine, window=window, lag_warning_s=1.0)
    warn = RATE
    session = driver.session

    def lags() -> list[Lag]:
        return [e for e in events if isinstance(e, Lag)]

    path: list[tuple[int, int]] = []  # (backlog, lag events so far) after every step
    for frame in frames(long_sentence, LIVE):
        driver.feed(frame)
        path.append((session.backlog_samples, len(lags())))
    await settle()  # the driver asks for its first window
    while engine.waiting:
        engine.answer(1)
        await settle()
        path.append((session.backlog_samples, len(lags())))
    assert [(lag.behind, lag.lag_ms > 1000) for lag in lags()] == [(True, True), (False, False)]
    assert lags()[1].lag_ms <= 500
    # "behind" exactly at the first step past the warning...
    first = next(i for i, (backlog, _) in enumerate(path) if backlog > warn)
    assert path[first - 1][1] == 0 and path[first][1] == 1
    # ...and no "caught up" while the backlog is under the warning but above half of it.
    assert any(warn // 2 < b <= warn and n == 1 for b, n in path[first:])
    assert all(n == 1 for b, n in path[first:] if b > warn // 2)
    assert not driver.behind


@pytest.mark.parametrize(
    "failure", [InferenceError("the model raised"), EngineClosed("the engine is stopping")]
)
async def test_an_engine_failure_becomes_an_error_event_and_the_stream_goes_on(
    build: Build, two_sentences: bytes, failure: Exception
) -> None:
    engine = HeldEngine(hold=False)
    engine.failures.append(failure)
    driver, events = build(engine)
    await feed_live(driver, two_sentences)
    driver.end()
    await asyncio.wait_for(driver.finished(), 10)
    [error] = [e for e in events if isinstance(e, ErrorEvent)]
    assert (error.code, error.fatal) == ("inference_failed", False)
    assert str(failure) in error.message
    assert events.index(error) < events.index(finals(events)[0])
    assert [f.utterance_id for f in finals(events)] == [0, 1]
    assert len(engine.submitted) > 2  # windows after the failed one ran too


async def test_a_bad_frame_raises_and_the_stream_goes_on(
    build: Build, two_sentences: bytes
) -> None:
    driver, events = build(HeldEngine(hold=False))
    with pytest.raises(StreamError) as bad:
        driver.feed(b"\x01\x02\x03")
    assert not bad.value.fatal
    driver.feed(two_sentences)
    driver.end()
    await asyncio.wait_for(driver.finished(), 10)
    assert [f.utterance_id for f in finals(events)] == [0, 1]


async def test_end_frees_the_reader_and_finished_waits_for_every_final(
    build: Build, two_sentences: bytes
) -> None:
    engine = HeldEngine(hold=True)
    driver, events = build(engine, backlog_high_s=1.0, backlog_low_s=0.5)
    driver.feed(two_sentences)
    assert not await readable_now(driver)
    driver.end()
    assert await readable_now(driver), "after end nothing more will be read"
    finished = asyncio.ensure_future(driver.finished())
    answered = 0
    while engine.waiting:
        await settle()
        assert not finished.done(), "finished before every window ran"
        engine.answer(1)
        answered += 1
        await settle()
    await finished
    assert answered >= 2  # one window at least per utterance
    assert [f.utterance_id for f in finals(events)] == [0, 1]
    assert driver.session.utterances_opened == 2
    assert isinstance([e for e in events if not isinstance(e, Lag)][-1], Final)
    assert driver.session.idle and driver.done


async def test_aclose_cancels_the_window_in_flight_and_leaves_no_task(
    build: Build, two_sentences: bytes
) -> None:
    engine = HeldEngine(hold=True)
    driver, events = build(engine)
    driver.feed(two_sentences[: 2 * RATE * 2])  # 2 s: an utterance is open
    await settle()
    [(_, inflight)] = engine.waiting
    await close(driver)
    assert inflight.cancelled(), "the engine would still run the window"
    assert driver.done
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert finals(events) == []
    # The session forgot the window: a new driver could plan it again.
    assert driver.session.next_request() is not None


async def test_events_behind_a_final_in_lm_decoding_wait_for_it(
    build: Build, two_sentences: bytes, in_the_pause: int
) -> None:
    decoder = GatedDecoder()
    rescorer = FinalRescorer(decoder)
    engine = HeldEngine(hold=False)
    driver, events = build(engine, rescorer=rescorer)
    try:
        await feed_live(driver, two_sentences[:in_the_pause])
        assert await asyncio.to_thread(decoder.started.wait, 10), "final 0 never went to the LM"
        held_from = len(engine.submitted)
        seen = len(events)
        await feed_live(driver, two_sentences[in_the_pause:])
        await settle()
        # Utterance 1 is open and its windows ran, but its events wait behind final 0.
        assert driver.session.utterances_opened == 2
        assert len(engine.submitted) > held_from + 2
        assert len(events) == seen
        assert all(isinstance(e, Partial) and e.utterance_id == 0 for e in events)
        decoder.gate.set()
        driver.end()
        await asyncio.wait_for(driver.finished(), 10)
    finally:
        decoder.gate.set()
        rescorer.close()
    order = [(type(e).__name__, getattr(e, "utterance_id", None)) for e in events]
    assert order[seen] == ("Final", 0), "final 0 is the first event let through"
    assert ("Partial", 1) in order[seen + 1 :]
    assert [(f.utterance_id, f.text) for f in finals(events)] == [(0, "rescored"), (1, "rescored")]
    ids = [u for _, u in order if u is not None]
    assert ids == sorted(ids)


async def test_aclose_during_lm_decoding_cancels_the_pending_final_and_leaves_no_task(
    build: Build, two_sentences: bytes, in_the_pause: int
) -> None:
    decoder = GatedDecoder()
    rescorer = FinalRescorer(decoder)
    driver, events = build(HeldEngine(hold=False), rescorer=rescorer)
    try:
        await feed_live(driver, two_sentences[:in_the_pause])
        assert await asyncio.to_thread(decoder.started.wait, 10), "final 0 never went to the LM"
        await close(driver)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert finals(events) == []
    finally:
        decoder.gate.set()
        rescorer.close()


def test_a_rescorer_goes_with_a_session_that_leaves_finals_to_it() -> None:
    session = Session(VOCAB, GEOMETRY, VadConfig(), WindowConfig(), rescore_finals=True)
    with pytest.raises(ValueError, match="rescorer"):
        SessionDriver(session, HeldEngine(hold=False), ServerConfig(), lambda _: None)


@pytest.mark.parametrize("how", ["cancelled", "unexpected exception"])
async def test_a_window_the_engine_drops_or_breaks_becomes_an_error_event_and_the_stream_goes_on(
    build: Build, two_sentences: bytes, how: str
) -> None:
    engine = HeldEngine(hold=True)
    driver, events = build(engine)
    feeding = asyncio.ensure_future(feed_live(driver, two_sentences))
    while not engine.waiting:
        await asyncio.sleep(0)
    _, future = engine.waiting.popleft()
    if how == "cancelled":  # the engine gives the window up, not the driver
        future.cancel()
    else:
        future.set_running_or_notify_cancel()
        future.set_exception(RuntimeError("a bug in an engine"))
    engine.hold = False
    engine.answer()
    await feeding
    driver.end()
    await asyncio.wait_for(driver.finished(), 10)
    [error] = [e for e in events if isinstance(e, ErrorEvent)]
    assert error.code == "inference_failed" and not error.fatal
    assert ("dropped" if how == "cancelled" else "a bug in an engine") in error.message
    assert [f.utterance_id for f in finals(events)] == [0, 1]


class SpreadDecoder:
    """LM decoder stand-in: four words spread evenly over whatever frames it is given
    (each early-commit search and each final); ``gate`` holds every decode until set."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.contexts: list[tuple[str, ...]] = []

    def decode_words(
        self, log_probs: np.ndarray, hotwords: object = (), context: object = ()
    ) -> list[tuple[str, int, int]]:
        self.calls += 1
        self.contexts.append(tuple(context))  # type: ignore[arg-type]
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("decoder exploded")
        n = log_probs.shape[0]
        return [(f"w{i}", i * n // 4, i * n // 4 + max(1, n // 8)) for i in range(4) if n >= 8]


async def test_early_commit_searches_commit_words_that_lead_the_final(
    build: Build, long_sentence: bytes
) -> None:
    decoder = SpreadDecoder()
    rescorer = FinalRescorer(decoder)
    driver, events = build(HeldEngine(hold=False), rescorer=rescorer, early_commits=True)
    try:
        await feed_live(driver, long_sentence)
        driver.end()
        await asyncio.wait_for(driver.finished(), 10)
    finally:
        rescorer.close()
    assert rescorer.searches >= 1 and rescorer.decoded == len(finals(events))
    committed = [e.committed for e in events if isinstance(e, Partial) and e.committed]
    assert committed, "no early commit reached a partial"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(committed))
    first = finals(events)[0]
    assert first.text.startswith(committed[-1]) and first.text != committed[-1]
    assert any(context for context in decoder.contexts), "later searches continue the LM"


def gated_searches(
    build: Build,
) -> tuple[SpreadDecoder, FinalRescorer, SessionDriver, list[Event]]:
    """A driver with early commits whose decoder holds every search until its gate opens."""
    decoder = SpreadDecoder()
    decoder.gate.clear()
    rescorer = FinalRescorer(decoder)
    driver, events = build(HeldEngine(hold=False), rescorer=rescorer, early_commits=True)
    return decoder, rescorer, driver, events


async def test_early_commit_searches_wait_for_a_free_decoder_thread_rather_than_queue(
    build: Build, long_sentence: bytes
) -> None:
    decoder, rescorer, driver, events = gated_searches(build)
    try:
        split = len(long_sentence) * 3 // 8 * 2
        await feed_live(driver, long_sentence[:split])
        await settle()
        assert decoder.calls == 1 and rescorer.busy, "a second search queued behind the first"
        decoder.gate.set()
        await feed_live(driver, long_sentence[split:])
        driver.end()
        await asyncio.wait_for(driver.finished(), 10)
    finally:
        decoder.gate.set()
        rescorer.close()
    assert finals(events) and rescorer.searches >= 1


async def test_failing_early_commit_searches_leave_words_tentative_and_the_final_greedy(
    build: Build, long_sentence: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    rescorer = FinalRescorer(SpreadDecoder(fail=True))
    driver, events = build(HeldEngine(hold=False), rescorer=rescorer, early_commits=True)
    try:
        await feed_live(driver, long_sentence)
        driver.end()
        await asyncio.wait_for(driver.finished(), 10)
    finally:
        rescorer.close()
    assert "early-commit search failed" in caplog.text
    assert all(e.committed == "" for e in events if isinstance(e, Partial))
    assert finals(events) and all(f.text for f in finals(events)), "the greedy finals stand"


async def test_aclose_with_an_early_commit_search_in_flight_leaves_no_task(
    build: Build, long_sentence: bytes
) -> None:
    decoder, rescorer, driver, events = gated_searches(build)
    try:
        await feed_live(driver, long_sentence[: len(long_sentence) // 4 * 2])
        await settle()
        assert decoder.calls == 1, "the search is running"
        await close(driver)
        assert asyncio.all_tasks() == {asyncio.current_task()}
    finally:
        decoder.gate.set()
        rescorer.close()
    assert finals(events) == []
