"""What every engine whose model runs in another process shares: each window is a task.

The client of the shared inference process (:mod:`streaming.shared_engine`) and the
Triton client send a window and await its answer: a coroutine, :meth:`RemoteEngine._infer`.
This base turns it into the :class:`~streaming.engine.Engine` interface once: ``submit``
(from any thread) returns a :class:`concurrent.futures.Future` and runs the coroutine as a
task on the engine's event loop; cancelling the future cancels the task (the subclass
withdraws the window); at most ``max_queue`` windows are in flight, more wait their turn;
and the counters say what this process's windows cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from .config import EngineConfig
from .engine import EngineClosed, EngineStats
from .feature_cache import FeatureKey
from .model import ModelInfo

# (batch size, model seconds, seconds from send to answer) of one window, on the loop;
# the shape of streaming.metrics.Metrics.observe_shared.
WindowObserver = Callable[[int, float, float], None]


class RemoteEngine:
    """Base of :class:`~streaming.shared_engine.SharedEngineClient` and the Triton client.

    A subclass implements :meth:`_infer` (send one window, await its log-probabilities,
    :meth:`_account` for them), :meth:`start`, :meth:`stop` and :attr:`queue_depth`. Use
    it from the event loop it was started on; ``submit`` from another thread hands the
    window to that loop.
    """

    def __init__(
        self, config: EngineConfig | None = None, *, observer: WindowObserver | None = None
    ) -> None:
        self.config = config or EngineConfig()
        self.info: ModelInfo | None = None  # the served model, known once started
        self._observer = observer
        self._stats = EngineStats()
        self._load = 0.0
        self._in_flight = 0  # submitted, not yet answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[np.ndarray]] = set()
        self._closed = False

    @property
    def load(self) -> float:
        """The model's busy fraction, as of its last answer."""
        return self._load

    @property
    def stats(self) -> EngineStats:
        """This process's windows; ``batches`` counts its share of each model call."""
        return self._stats

    @property
    def queue_depth(self) -> int:
        """Windows waiting for the model (as far as this process knows)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Connect, learn :attr:`info`, and :meth:`_bind` to the running loop."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Refuse new windows, fail those in flight (:meth:`_cancel_in_flight`), disconnect."""
        raise NotImplementedError

    def _bind(self) -> None:
        """Serve from the running event loop (called by ``start``)."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.config.max_queue)

    async def _infer(self, samples: np.ndarray) -> np.ndarray:
        """Send one window and return its (frames, vocab) log-probabilities."""
        raise NotImplementedError

    def submit(self, samples: np.ndarray, key: FeatureKey | None = None) -> Future[np.ndarray]:
        """(frames, vocab) log-probabilities for one window; cancelling the future
        withdraws the window. ``key`` is ignored: the model's process sees windows alone."""
        future: Future[np.ndarray] = Future()
        loop = self._loop
        if self._closed or loop is None:
            future.set_exception(EngineClosed("inference engine is not running"))
            return future
        self._in_flight += 1
        future.add_done_callback(self._answered)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(samples, future)
        else:
            loop.call_soon_threadsafe(self._spawn, samples, future)
        return future

    def _answered(self, _: Future[np.ndarray]) -> None:
        self._in_flight -= 1

    def _spawn(self, samples: np.ndarray, future: Future[np.ndarray]) -> None:
        """On the engine's loop: run the window as a task tied to ``future``."""
        if future.done():
            return  # cancelled before its turn
        if self._closed:
            future.set_exception(EngineClosed("inference engine is stopping"))
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(samples))
        self._tasks.add(task)  # a task nothing refers to may be collected mid-flight
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self._settle(future, done))

        def withdraw(done: Future[np.ndarray]) -> None:
            if done.cancelled():
                loop.call_soon_threadsafe(task.cancel)

        future.add_done_callback(withdraw)

    async def _run(self, samples: np.ndarray) -> np.ndarray:
        assert self._slots is not None
        async with self._slots:
            if self._closed:
                raise EngineClosed("inference engine is stopping")
            return await self._infer(samples)

    def _settle(self, future: Future[np.ndarray], task: asyncio.Task[np.ndarray]) -> None:
        """Pass a finished task's outcome to the future its caller holds."""
        if future.done():
            return  # cancelled by the caller
        if task.cancelled():
            if self._closed:
                future.set_exception(EngineClosed("inference engine is stopping"))
            else:
                future.cancel()
        elif (error := task.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(task.result())

    async def _cancel_in_flight(self) -> None:
        """Refuse new windows; those in flight fail with :class:`EngineClosed`."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _account(self, batch: int, model_s: float, wait_s: float, samples: int) -> None:
        """Count one answered window of ``samples`` from a model call of ``batch``
        windows that took ``model_s``, ``wait_s`` after it was sent."""
        stats = self._stats
        stats.requests += 1
        stats.batches += 1 / max(batch, 1)
        stats.busy_seconds += model_s / max(batch, 1)
        stats.batch_sizes[batch] += 1
        stats.window_lengths[samples] += 1
        stats.audio_samples += samples
        stats.last_batch_ms = model_s * 1000
        if self._observer is not None:
            self._observer(max(batch, 1), model_s, wait_s)
