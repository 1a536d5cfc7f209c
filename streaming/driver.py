"""Drives one Session against the shared engine: the inference loop and back-pressure.

Protocol front ends (native, Vosk, WhisperLive, Deepgram) differ only in how they read
frames and word their messages; all of them feed audio through a driver and receive the
same events, so VAD, windowing and stabilisation behave identically on every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .audio import AudioFormat
from .beam_commit import CommitSearch
from .config import MODEL_SAMPLE_RATE, ServerConfig
from .engine import Engine, EngineClosed, InferenceError
from .errors import StreamError
from .events import ErrorEvent, Event, Final, Lag, Partial
from .hotwords import Hotword, HotwordError, alphabet, check_hotwords
from .metrics import Metrics
from .rescoring import FinalRescorer
from .session import PendingFinal, Session, SessionEvent
from .utterance import WindowRequest

EventSink = Callable[[list[Event]], None]
log = logging.getLogger(__name__)


class SessionDriver:
    """Feed it audio and control messages; events come out through ``sink``, in order.

    With a ``rescorer`` (``--lm``) finals are decoded by LM beam search in its worker
    threads; events behind a final that is still being decoded wait for it, so the client
    always sees a stream's events in the order the session produced them. The session's
    early-commit searches run there too, when a worker is free; their partials follow
    whatever was sent before them.
    """

    def __init__(
        self,
        session: Session,
        engine: Engine,
        config: ServerConfig,
        sink: EventSink,
        metrics: Metrics | None = None,
        *,
        rescorer: FinalRescorer | None = None,
    ) -> None:
        if rescorer is None and session.rescore_finals:
            raise ValueError("a session made with rescore_finals needs a rescorer")
        if rescorer is not None and rescorer.has_lm != session.rescore_finals:
            raise ValueError("a rescorer with an LM needs a session made with rescore_finals")
        self.session = session
        self.rescorer = rescorer
        self.hotwords: tuple[Hotword, ...] = ()
        self._out: deque[list[Event] | asyncio.Task[Final]] = deque()
        self._out_empty = asyncio.Event()
        self._out_empty.set()
        self._waiting_on: asyncio.Task[Final] | None = None
        self._searches: set[asyncio.Task[None]] = set()
        self.metrics = metrics
        self.engine = engine
        self._sink = sink
        self._work = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._high = int(config.backlog_high_s * MODEL_SAMPLE_RATE)
        self._low = int(config.backlog_low_s * MODEL_SAMPLE_RATE)
        self._lag_warn = int(config.lag_warning_s * MODEL_SAMPLE_RATE)
        self.behind = False
        self._first_audio: float | None = None  # monotonic time of the first audio frame
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._inference(), name="inference")

    async def finished(self) -> None:
        """Wait until the session has ended and every final has been emitted."""
        assert self._task is not None, "driver not started"
        await asyncio.shield(self._task)

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def aclose(self) -> None:
        """Drop everything at once (client gone): no leaked task or engine work."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stop_searches()
        pending = [item for item in self._out if isinstance(item, asyncio.Task)]
        self._out.clear()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._out_empty.set()
        self.session.cancel_inflight()

    # -- input ----------------------------------------------------------------------

    def set_hotwords(self, hotwords: tuple[Hotword, ...]) -> None:
        """Favour ``hotwords`` in this stream's finals (before any audio); StreamError
        ``invalid_hotwords`` or ``hotwords_unavailable`` says why not. Without an LM the
        stream's finals then go through the beam search too, and its partial words stay
        tentative, as with LM finals (the final may respell any of them)."""
        if not hotwords:
            self.hotwords = ()
            return
        if self.session.started or self.session.audio_started:
            raise StreamError(
                "start_after_audio", "hotwords are given when the stream starts, before any audio"
            )
        if self.rescorer is None:
            raise StreamError(
                "hotwords_unavailable",
                "this server cannot boost hotwords: it needs the optional package pyctcdecode",
            )
        try:
            check_hotwords(hotwords, alphabet(self.session.vocab))
        except HotwordError as exc:
            raise StreamError("invalid_hotwords", str(exc)) from None
        self.hotwords = hotwords
        self.session.rescore_finals = True

    def begin(self, fmt: AudioFormat) -> None:
        self.session.start(fmt)

    def feed(self, data: bytes) -> None:
        """One binary frame; raises StreamError (non-fatal) for a bad one."""
        before = self.session.audio_ms
        if self._first_audio is None:
            self._first_audio = time.monotonic()
        self._emit(self.session.feed(data))
        if self.metrics is not None:
            self.metrics.audio_seconds.inc((self.session.audio_ms - before) / 1000)
        self._check_backlog()
        self._work.set()

    def flush(self) -> None:
        self._emit(self.session.flush())
        self._work.set()

    def end(self, reason: str = "end") -> None:
        self._emit(self.session.end(reason))
        self._work.set()
        self._drained.set()

    @property
    def behind_real_time(self) -> bool:
        """Behind because the *server* is slow. A client sending faster than real time (a
        file at full speed) is behind its own audio by design and does not count."""
        if not self.behind or self._first_audio is None:
            return False
        elapsed_ms = (time.monotonic() - self._first_audio) * 1000
        return self.session.audio_ms <= elapsed_ms + 1000

    async def readable(self) -> None:
        """Returns once the session owes the engine little enough to accept more audio."""
        await self._drained.wait()

    # -- inference ------------------------------------------------------------------

    async def _inference(self) -> None:
        while True:
            request = self.session.next_request()
            if request is None:
                if self.session.ended and self.session.idle:
                    await self._out_empty.wait()  # finals still in LM decoding
                    await self._stop_searches()  # their utterances are final: moot
                    return
                self._work.clear()
                await self._work.wait()
                continue
            result = asyncio.wrap_future(self.engine.submit(request.samples, request.key))
            try:
                # wait() rather than await: only this task's own cancellation may end the
                # loop; a window the engine dropped or failed is the session's to report.
                await asyncio.wait({result})
            except asyncio.CancelledError:
                result.cancel()
                raise
            self._emit(self._settle(request, result))
            self._check_backlog()

    def _settle(
        self, request: WindowRequest, result: asyncio.Future[np.ndarray]
    ) -> list[SessionEvent]:
        """The session's events for one finished window: its text, or an error event."""
        if result.cancelled():
            return self.session.fail(request, "the engine dropped this window")
        error = result.exception()
        if error is None:
            return self.session.complete(request, result.result())
        if not isinstance(error, (InferenceError, EngineClosed)):
            log.error("engine failed unexpectedly", exc_info=error)
        return self.session.fail(request, str(error) or type(error).__name__)

    def _emit(self, events: list[SessionEvent]) -> None:
        if not events:
            return
        ready: list[Event] = []
        for event in events:
            if isinstance(event, CommitSearch):
                self._search(event)
            elif isinstance(event, PendingFinal):
                if ready:
                    self._out.append(ready)
                    ready = []
                self._out.append(asyncio.create_task(self._rescore(event), name="lm-final"))
            else:
                ready.append(event)
        if ready:
            self._out.append(ready)
        self._pump()

    def _search(self, search: CommitSearch) -> None:
        """Run an early-commit search if a decoder thread is free (finals come first)."""
        if self.rescorer is None or self.rescorer.busy:
            self.session.beam_failed(search)
            return
        task = asyncio.create_task(self._commit(search), name="lm-commit")
        self._searches.add(task)
        task.add_done_callback(self._searches.discard)

    async def _commit(self, search: CommitSearch) -> None:
        assert self.rescorer is not None
        try:
            words = await self.rescorer.decode(
                search.scores, self.hotwords, search.context, final=False
            )
        except Exception as exc:  # the words stay tentative; the final decodes them
            log.warning("LM early-commit search failed: %s", exc)
            self.session.beam_failed(search)
            return
        self._emit(self.session.beam_committed(search, words))

    async def _stop_searches(self) -> None:
        for task in list(self._searches):
            task.cancel()
        await asyncio.gather(*self._searches, return_exceptions=True)

    async def _rescore(self, pending: PendingFinal) -> Final:
        """The LM's final, or the greedy one if decoding fails: an utterance is never lost."""
        assert self.rescorer is not None
        try:
            words = await self.rescorer.decode(pending.scores, self.hotwords, pending.context)
            return pending.resolve(words)
        except Exception as exc:  # any decoder failure: keep the greedy text
            log.warning("LM decoding failed, sending the greedy final: %s", exc)
            return pending.greedy

    def _pump(self, _: object = None) -> None:
        """Deliver queued events up to the first final that is still being decoded."""
        while self._out:
            head = self._out[0]
            if isinstance(head, asyncio.Task):
                if not head.done():
                    if head is not self._waiting_on:
                        self._waiting_on = head
                        head.add_done_callback(self._pump)
                    self._out_empty.clear()
                    return
                self._out.popleft()
                if not head.cancelled():
                    self._deliver([head.result()])
            else:
                self._out.popleft()
                self._deliver(head)
        self._out_empty.set()

    def _deliver(self, events: list[Event]) -> None:
        if self.metrics is not None:
            for event in events:
                if isinstance(event, Partial):
                    self.metrics.partials.inc()
                elif isinstance(event, Final):
                    self.metrics.finals.inc()
                elif isinstance(event, ErrorEvent):
                    self.metrics.errors.labels(event.code).inc()
                else:
                    self.metrics.lag_events.labels("behind" if event.behind else "caught_up").inc()
        self._sink(events)

    def _check_backlog(self) -> None:
        backlog = self.session.backlog_samples
        if backlog > self._high:
            self._drained.clear()
        elif backlog <= self._low or self.session.ended:
            self._drained.set()
        # Hysteresis: "behind" past the warning level, "caught up" under half of it.
        if backlog > self._lag_warn and not self.behind:
            self.behind = True
            self._emit([self._lag(backlog)])
        elif backlog <= self._lag_warn // 2 and self.behind:
            self.behind = False
            self._emit([self._lag(backlog)])

    def _lag(self, backlog: int) -> Lag:
        lag_ms = backlog * 1000 // MODEL_SAMPLE_RATE
        return Lag(self.behind, lag_ms, self.session.audio_ms)
