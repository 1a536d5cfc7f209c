"""One inference engine per process: batches windows from all sessions on one worker thread.

Callers ``submit(samples)`` and get a :class:`concurrent.futures.Future`; asyncio callers
await it with ``asyncio.wrap_future``, and cancelling the future drops the window if the
worker has not taken it yet (a client gone leaves no engine work). At most ``max_queue``
windows are queued for the worker; more wait their turn in order, outside the queue. The
worker takes the first, waits at most ``batch_deadline_ms`` for more, groups them by exact
length (so no padding ever changes an output), runs each group as one batch, and settles
the futures from its thread. For a model that takes an attention mask (``pad_lengths``), a
round of mixed lengths is instead one call, each window padded to the longest and masked.
Windows submitted with a :class:`~streaming.feature_cache.FeatureKey` reuse the front-end
features of their stream's previous window (``reuse_features``), as one call per round.
A failing batch fails only its own requests; CUDA out-of-memory retries the batch in halves.

This module is the engine layer: it imports no asyncio, so ``async`` here only marks the
methods an event loop awaits (:class:`Engine`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import types
from collections import defaultdict, deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from .config import EngineConfig
from .errors import ModelLoadError
from .feature_cache import FeatureCache, FeatureKey

log = logging.getLogger(__name__)

LOAD_WINDOW_S = 5.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def padded_batch(size: int) -> int:
    """The bucket a batch of ``size`` windows is padded to (``pad_batches``)."""
    for bucket in BATCH_BUCKETS:
        if bucket >= size:
            return bucket
    return size


def pads_batches(config: EngineConfig, device: str) -> bool:
    """Whether batches for a model on ``device`` are padded to :data:`BATCH_BUCKETS`."""
    pad = config.pad_batches
    return pad == "on" or (pad == "auto" and device.startswith("cuda"))


def warmup_batches(config: EngineConfig, device: str) -> list[int]:
    """Batch sizes to run once at start-up: every bucket when batches are padded (each is
    a shape the GPU would otherwise first meet under load), else a single window."""
    if not pads_batches(config, device):
        return [1]
    return [b for b in BATCH_BUCKETS if b <= padded_batch(config.max_batch)]


def pads_lengths(config: EngineConfig, device: str, masks_padding: bool) -> bool:
    """Whether a round of mixed window lengths runs as one masked call (``pad_lengths``)."""
    mode = config.pad_lengths
    if mode == "on" and not masks_padding:
        raise ModelLoadError(
            "--pad-lengths on needs a model whose feature extractor takes an attention mask "
            "(feat_extract_norm 'layer'); padding would change this model's outputs"
        )
    return masks_padding and (mode == "on" or (mode == "auto" and device.startswith("cuda")))


def reuses_features(config: EngineConfig, device: str, framewise: bool) -> bool:
    """Whether windows with a stream key reuse their stream's features (``reuse_features``)."""
    mode = config.reuse_features
    if mode == "on" and not framewise:
        raise ModelLoadError(
            "--reuse-features on needs a model whose feature extractor works frame by frame "
            "(feat_extract_norm 'layer'); this one normalises across time"
        )
    return framewise and (mode == "on" or (mode == "auto" and device == "cpu"))


class BatchModel(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray: ...


class ReusingBatchModel(BatchModel, Protocol):
    """A model that can take a window's known front-end features from a cache."""

    framewise_features: bool

    def infer_reusing(
        self, rows: list[np.ndarray], keys: list[FeatureKey], cache: FeatureCache
    ) -> list[np.ndarray]: ...


class RaggedBatchModel(BatchModel, Protocol):
    """A model that can also run windows of different lengths in one masked call."""

    masks_padding: bool

    def infer_ragged(self, rows: list[np.ndarray], batch_rows: int = 0) -> list[np.ndarray]: ...


# (batch size, model seconds, per-window seconds from enqueue to result), worker thread.
BatchObserver = Callable[[int, float, list[float]], None]


class Engine(Protocol):
    """What sessions and the server use: this module's in-process engine, or a client of
    a model in another process (:mod:`streaming.remote_engine`: the shared inference
    process, Triton); built by :func:`streaming.engines.build_engine`.

    ``submit`` never blocks: the future fails with :class:`EngineClosed` once the engine
    stops and with :class:`InferenceError` when the model fails, and cancelling it drops
    the window if the engine has not started on it.
    """

    @property
    def load(self) -> float:
        """Fraction of the recent past the model was busy (admission refuses above a limit)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Windows waiting for the model."""
        ...

    @property
    def stats(self) -> EngineStats: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def submit(self, samples: np.ndarray, key: FeatureKey | None = None) -> Future[np.ndarray]:
        """(frames, vocab) float32 log-probabilities for one window of samples, later.

        ``key`` places the window in its stream, for an engine that reuses the features of
        audio it has already seen (others ignore it)."""
        ...


@dataclass(frozen=True)
class Served:
    """One window's result and the batch that produced it."""

    logprobs: np.ndarray
    batch: int  # windows in the model call
    model_s: float  # duration of that call
    wait_s: float  # enqueue → result


class EngineClosed(RuntimeError):
    """The engine is stopping or stopped; no more work is accepted."""


class InferenceError(RuntimeError):
    """The model raised while running a batch that held this request."""


@dataclass
class EngineStats:
    """Counters read by logs, benchmarks and the metrics endpoint."""

    requests: int = 0
    batches: float = 0  # a float: a worker of the shared engine counts its share of each

    failed_requests: int = 0
    audio_samples: int = 0
    busy_seconds: float = 0.0
    gathers: int = 0  # batching rounds: one model call per distinct window length, or one
    batch_sizes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # Windows served per length in samples: on a GPU each distinct length in a round is a
    # model call of its own (unless padded), so this says which lengths cost calls.
    window_lengths: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    last_batch_ms: float = 0.0

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


@dataclass
class _Job:
    samples: np.ndarray
    future: Future[Any]  # of a Served (timed) or of its log-probabilities
    timed: bool
    enqueued: float
    key: FeatureKey | None = None
    admitted: bool = False  # holds one of the max_queue places


class InferenceEngine:
    """Bounded queue + one worker thread; see the module docstring."""

    def __init__(
        self,
        model: BatchModel,
        config: EngineConfig | None = None,
        *,
        is_oom: Callable[[BaseException], bool] | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self.model = model
        self.config = config or EngineConfig()
        self._stats = EngineStats()
        self._is_oom = is_oom or _is_cuda_oom
        self._observer = observer
        # The worker's queue holds at most max_queue live windows (plus cancelled ones not
        # yet skipped, and the stop sentinel); _waiting holds the rest in order.
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._waiting: deque[_Job] = deque()
        self._admitted = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._recent: deque[tuple[float, float]] = deque()  # (end, seconds) of model calls
        self._recent_lock = threading.Lock()
        device = str(getattr(model, "device", "cpu"))
        self._pad = pads_batches(self.config, device)
        masks = bool(getattr(model, "masks_padding", False))
        self._ragged = pads_lengths(self.config, device, masks)
        framewise = bool(getattr(model, "framewise_features", False))
        self._reuse = reuses_features(self.config, device, framewise)
        self.features = FeatureCache()  # the worker thread's alone

    @property
    def load(self) -> float:
        """Fraction of the last ``LOAD_WINDOW_S`` seconds the model was running.

        Near 1 the engine cannot take more streams without every stream falling behind;
        the server refuses new sessions above ``max_engine_load``.
        """
        now = time.perf_counter()
        since = now - LOAD_WINDOW_S
        with self._recent_lock:
            while self._recent and self._recent[0][0] < since:
                self._recent.popleft()
            busy = sum(min(seconds, end - since) for end, seconds in self._recent)
        return min(1.0, busy / LOAD_WINDOW_S)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def stats(self) -> EngineStats:
        return self._stats

    async def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._worker, name="inference", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Refuse new windows, finish what is queued, and return once the worker is done."""
        with self._lock:
            self._closed = True
            thread = self._thread
            waiting = list(self._waiting)  # their turn will not come
            self._waiting.clear()
            if thread is not None:
                self._queue.put(None)
        for job in waiting:  # outside the lock: settling runs the futures' callbacks
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(EngineClosed("inference engine is stopping"))
        if thread is not None:
            await _joined(thread)

    async def __aenter__(self) -> InferenceEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def reuses_features(self) -> bool:
        return self._reuse

    def submit(self, samples: np.ndarray, key: FeatureKey | None = None) -> Future[np.ndarray]:
        """(frames, vocab) log-probabilities for one window, when the worker has run it."""
        future: Future[np.ndarray] = self._enqueue(samples, key, timed=False)
        return future

    def submit_timed(self, samples: np.ndarray, key: FeatureKey | None = None) -> Future[Served]:
        """:meth:`submit` plus the size and duration of the batch that served the window."""
        future: Future[Served] = self._enqueue(samples, key, timed=True)
        return future

    def _enqueue(self, samples: np.ndarray, key: FeatureKey | None, *, timed: bool) -> Future[Any]:
        future: Future[Any] = Future()
        job = _Job(samples, future, timed, time.perf_counter(), key if self._reuse else None)
        with self._lock:
            if self._closed or self._thread is None:
                state = "stopping" if self._closed else "not running"
                future.set_exception(EngineClosed(f"inference engine is {state}"))
                return future
            if self._admitted < self.config.max_queue:
                self._admit(job)
            else:
                self._waiting.append(job)  # its turn comes when a queued window is done
        future.add_done_callback(lambda _: self._release(job))
        return future

    def _admit(self, job: _Job) -> None:
        """Queue ``job`` for the worker (holding ``_lock``)."""
        job.admitted = True
        self._admitted += 1
        self._queue.put_nowait(job)

    def _release(self, job: _Job) -> None:
        """``job`` is done (or cancelled): its place goes to the next live waiting window."""
        with self._lock:
            if not job.admitted:
                return  # cancelled while waiting: skipped when its turn comes
            job.admitted = False
            self._admitted -= 1
            while self._waiting:
                waiting = self._waiting.popleft()
                if not waiting.future.cancelled():
                    self._admit(waiting)
                    return

    # -- worker thread --------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = self._gather(jobs)
            self._run(jobs)
            if stop:
                return

    def _gather(self, jobs: list[_Job]) -> bool:
        """Add queued jobs until the batch is full or the deadline passes; True on stop."""
        deadline = time.perf_counter() + self.config.batch_deadline_ms / 1000
        while len(jobs) < self.config.max_batch:
            timeout = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            jobs.append(job)
        return False

    def _run(self, jobs: list[_Job]) -> None:
        # Claims each future: from here on it cannot be cancelled, and a cancelled one is
        # dropped without running.
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        self._stats.gathers += 1
        keyed = [j for j in live if j.key is not None]
        if keyed:
            self._run_group(keyed, how="reuse")
            live = [j for j in live if j.key is None]
            if not live:
                return
        if self._ragged and len({j.samples.size for j in live}) > 1:
            self._run_group(live, how="ragged")
            return
        groups: dict[int, list[_Job]] = defaultdict(list)
        for job in live:
            groups[job.samples.size].append(job)
        for group in groups.values():
            self._run_group(group)

    def _run_group(self, group: list[_Job], how: str = "exact") -> None:
        """One model call for ``group``: ``exact`` (one window length), ``ragged`` (padded
        and masked) or ``reuse`` (front-end features from the cache, any lengths)."""
        began = time.perf_counter()
        rows = padded_batch(len(group)) if self._pad else len(group)
        try:
            if how == "reuse":
                reusing = cast(ReusingBatchModel, self.model)
                keys = [cast(FeatureKey, j.key) for j in group]
                outputs = reusing.infer_reusing([j.samples for j in group], keys, self.features)
            elif how == "ragged":
                model = cast(RaggedBatchModel, self.model)
                outputs = model.infer_ragged([j.samples for j in group], rows)
            else:
                outputs = list(self.model.infer(self._stack(group, rows)))
        except Exception as exc:
            if self._is_oom(exc) and len(group) > 1:
                log.warning("out of memory on a batch of %d; retrying in halves", len(group))
                _empty_cuda_cache()
                half = len(group) // 2
                self._run_group(group[:half], how)
                self._run_group(group[half:], how)
                return
            log.exception("inference failed for a batch of %d windows", len(group))
            self._stats.failed_requests += len(group)
            for job in group:
                _resolve(job, None, InferenceError(f"{type(exc).__name__}: {exc}"))
            return
        elapsed = time.perf_counter() - began
        self._stats.batches += 1
        self._stats.requests += len(group)
        self._stats.batch_sizes[len(group)] += 1
        self._stats.audio_samples += sum(j.samples.size for j in group)
        for job in group:
            self._stats.window_lengths[job.samples.size] += 1
        self._stats.busy_seconds += elapsed
        self._stats.last_batch_ms = elapsed * 1000
        with self._recent_lock:
            self._recent.append((began + elapsed, elapsed))
            while self._recent[0][0] < began - LOAD_WINDOW_S:
                self._recent.popleft()
        done = time.perf_counter()
        for job, output in zip(group, outputs):
            _resolve(job, Served(output, len(group), elapsed, done - job.enqueued), None)
        if self._observer is not None:
            self._observer(len(group), elapsed, [done - j.enqueued for j in group])

    @staticmethod
    def _stack(group: list[_Job], rows: int) -> np.ndarray:
        """One window per row, plus silent rows up to ``rows`` (batch padding)."""
        batch = np.stack([j.samples for j in group])
        if rows > len(group):
            silent = np.zeros((rows - len(group), batch.shape[1]), batch.dtype)
            batch = np.concatenate([batch, silent])
        return batch


def _resolve(job: _Job, value: Served | None, error: BaseException | None) -> None:
    if error is not None:
        job.future.set_exception(error)
    else:
        assert value is not None
        job.future.set_result(value if job.timed else value.logprobs)


@types.coroutine
def _joined(thread: threading.Thread) -> Generator[None, None, None]:
    """Await a thread's end without asyncio (this layer's rule): each bare ``yield`` gives
    the event loop one turn, between joins of at most a millisecond."""
    while thread.is_alive():
        thread.join(0.001)
        yield


def _is_cuda_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
