"""``--shared-engine``: one inference process batches the windows of every worker.

Under ``--workers N`` each worker otherwise loads its own model and batches only its own
streams. On an H200 with 8 workers that gave batches of 1.3-2.6 windows: every call paid
the launch cost and 8 CUDA contexts time-sliced the GPU. With a shared engine the
supervisor starts one more process, which loads the model once and serves the ordinary
batching :class:`~streaming.engine.InferenceEngine` (:class:`EngineHost`); the workers keep
the websockets, VAD, windowing and stabilizer, and send each window over a Unix socket
(:class:`SharedEngineClient`, an :class:`~streaming.engine.Engine` like the in-process
one). :mod:`streaming.engines` builds both sides.

Wire format, little-endian, spoken only between processes of one server:

* on connect the engine sends ``<I`` length + the pickled :class:`~streaming.model.ModelInfo`
  (pickle is safe here: the socket lives in a private 0700 folder of the supervisor);
* request: ``<QI`` request id, sample count, then float32 samples; a count of
  ``CANCEL`` instead withdraws that request (its session is gone): the engine drops the
  window if it has not run it yet, and sends no reply;
* reply: ``<QBHIHfffI`` request id, status, batch size, frame count (or error-message bytes),
  vocabulary size, model seconds of the batch, seconds queued + run, engine load, queue
  depth; then float32 log-probabilities (or the UTF-8 error message).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from .config import MODEL_SAMPLE_RATE, EngineConfig
from .engine import EngineClosed, InferenceEngine, InferenceError
from .model import ModelInfo
from .remote_engine import RemoteEngine, WindowObserver

log = logging.getLogger(__name__)

REQUEST = struct.Struct("<QI")
REPLY = struct.Struct("<QBHIHfffI")
HELLO = struct.Struct("<I")
OK, FAILED, CLOSED = 0, 1, 2
MAX_WINDOW_SAMPLES = 120 * MODEL_SAMPLE_RATE  # far above any window; guards a broken peer
CANCEL = 0xFFFF_FFFF  # the sample count of a request that withdraws an earlier one
CONNECT_TIMEOUT_S = 30.0  # a worker waits this long for a restarting engine
REPORT_S = 10.0  # how often the inference process logs its throughput


def describe_lengths(windows_by_length: dict[int, int], most: int = 6) -> str:
    """ "N lengths, ms x windows: 2320x900 2560x40 ..." for the engine's periodic log."""
    seen = sorted(((c, n) for n, c in windows_by_length.items() if c > 0), reverse=True)
    top = " ".join(f"{n * 1000 // MODEL_SAMPLE_RATE}x{c}" for c, n in seen[:most])
    return f"{len(seen)} lengths, ms x windows: {top}" + (" ..." if len(seen) > most else "")


class EngineHost:
    """The inference process's server: one started batching engine on one Unix socket.

    It owns ``engine`` from then on: :meth:`stop` stops it after the socket.
    """

    def __init__(self, engine: InferenceEngine, info: ModelInfo, address: str) -> None:
        self.engine = engine
        self.info = info
        self.address = address
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        payload = pickle.dumps(info)
        self._hello = HELLO.pack(len(payload)) + payload
        self._reporter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)  # left by an engine process that died
        self._server = await asyncio.start_unix_server(self._serve, self.address)
        self._reporter = asyncio.create_task(self._report())
        log.info("shared inference engine serving on %s", self.address)

    async def _report(self) -> None:
        """Log throughput and batching while windows flow: how full the calls are, and how
        many calls each batching round needed (one per distinct window length)."""
        stats = self.engine.stats
        last = (stats.requests, stats.batches, stats.gathers, stats.busy_seconds)
        lengths = dict(stats.window_lengths)
        while True:
            await asyncio.sleep(REPORT_S)
            now = (stats.requests, stats.batches, stats.gathers, stats.busy_seconds)
            windows, calls, gathers, busy = (b - a for a, b in zip(last, now))
            last = now
            seen = {n: c - lengths.get(n, 0) for n, c in stats.window_lengths.items()}
            lengths = dict(stats.window_lengths)
            if windows:
                log.info(
                    "%.0f windows/s in %.0f calls/s: %.1f windows per call, %.1f calls per "
                    "round, model busy %.0f%%, queue %d; %s",
                    windows / REPORT_S,
                    calls / REPORT_S,
                    windows / max(calls, 1),
                    calls / max(gathers, 1),
                    100 * busy / REPORT_S,
                    self.engine.queue_depth,
                    describe_lengths(seen),
                )

    async def stop(self) -> None:
        """Stop accepting, drop the workers' connections, finish queued windows."""
        if self._reporter is not None:
            self._reporter.cancel()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self.engine.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        log.info("shared inference engine stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        answers: dict[int, asyncio.Task[None]] = {}
        try:
            writer.write(self._hello)
            while True:
                request_id, count = REQUEST.unpack(await reader.readexactly(REQUEST.size))
                if count == CANCEL:
                    withdrawn = answers.get(request_id)
                    if withdrawn is not None:
                        withdrawn.cancel()
                    continue
                if count > MAX_WINDOW_SAMPLES:
                    log.error("a worker sent a %d-sample window; dropping its connection", count)
                    return
                samples = np.frombuffer(await reader.readexactly(4 * count), dtype=np.float32)
                task = asyncio.create_task(self._answer(request_id, samples, writer))
                answers[request_id] = task
                task.add_done_callback(functools.partial(_forget, answers, request_id))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker stopped or died; its windows are nobody's any more
        finally:
            for task in list(answers.values()):
                task.cancel()
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, request_id: int, samples: np.ndarray, writer: asyncio.StreamWriter
    ) -> None:
        engine = self.engine
        try:
            served = await asyncio.wrap_future(engine.submit_timed(samples))
        except (InferenceError, EngineClosed) as exc:
            status = CLOSED if isinstance(exc, EngineClosed) else FAILED
            message = str(exc).encode()
            header = REPLY.pack(request_id, status, 0, len(message), 0, 0.0, 0.0, 0.0, 0)
            writer.write(header + message)
        else:
            out = np.ascontiguousarray(served.logprobs, dtype=np.float32)
            frames, cols = out.shape
            header = REPLY.pack(
                request_id,
                OK,
                served.batch,
                frames,
                cols,
                served.model_s,
                served.wait_s,
                engine.load,
                engine.queue_depth,
            )
            writer.write(header + out.tobytes())
        with contextlib.suppress(ConnectionError):
            await writer.drain()


class SharedEngineClient(RemoteEngine):
    """A worker's side: the :class:`~streaming.engine.Engine` interface over the socket.

    At most ``config.max_queue`` windows of this worker are in flight; more wait their
    turn. If the engine process goes away, windows in flight fail with
    :class:`InferenceError` (their sessions get an error, not silence) and the next window
    reconnects, waiting up to ``connect_timeout_s`` for the supervisor to restart it.
    """

    def __init__(
        self,
        address: str,
        config: EngineConfig | None = None,
        *,
        observer: WindowObserver | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__(config, observer=observer)
        self.address = address
        self._connect_timeout_s = connect_timeout_s
        self._queue_depth = 0
        self._ids = itertools.count()
        # request id → (the answer, the window's sample count)
        self._pending: dict[int, tuple[asyncio.Future[np.ndarray], int]] = {}
        self._connecting = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """The engine's queue, as of its last reply."""
        return self._queue_depth

    async def start(self) -> None:
        """Connect (waiting for an engine that is still starting) and learn the model
        (:attr:`info`)."""
        self._bind()
        await self._connect()

    async def stop(self) -> None:
        """Refuse new windows, fail those in flight with EngineClosed, disconnect."""
        self._closed = True
        self._disconnect(EngineClosed("inference engine is stopping"))
        await self._cancel_in_flight()

    async def _infer(self, samples: np.ndarray) -> np.ndarray:
        if self._writer is None:
            await self._connect()
        writer = self._writer
        assert writer is not None
        request_id = next(self._ids)
        answer: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        data = np.ascontiguousarray(samples, dtype=np.float32)
        self._pending[request_id] = (answer, data.size)
        try:
            writer.write(REQUEST.pack(request_id, data.size) + data.tobytes())
            await writer.drain()
            return await answer
        except ConnectionError as exc:
            self._disconnect(_lost(exc))
            raise _lost(exc) from exc
        except asyncio.CancelledError:
            if not writer.is_closing():  # withdraw it: the engine need not run it
                writer.write(REQUEST.pack(request_id, CANCEL))
            raise
        finally:
            self._pending.pop(request_id, None)

    async def _connect(self) -> None:
        async with self._connecting:
            if self._writer is not None:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._connect_timeout_s
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.address)
                    (size,) = HELLO.unpack(await reader.readexactly(HELLO.size))
                    info = pickle.loads(await reader.readexactly(size))
                    break
                except (OSError, asyncio.IncompleteReadError) as exc:
                    if self._closed or loop.time() >= deadline:
                        raise InferenceError(
                            f"the shared inference process at {self.address} is unavailable: {exc}"
                        ) from exc
                    await asyncio.sleep(0.1)
            if not isinstance(info, ModelInfo):
                writer.close()
                raise InferenceError("the shared inference process sent no model description")
            if self.info is None:
                log.info("connected to the shared inference engine (%s)", info.device)
            else:
                log.warning("reconnected to the shared inference engine")
            self.info = info
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(REPLY.size)
                request_id, status, batch, count, cols, model_s, wait_s, load, depth = REPLY.unpack(
                    header
                )
                body = await reader.readexactly(count * cols * 4 if status == OK else count)
                future, samples = self._pending.get(request_id, (None, 0))
                if status == OK:
                    self._load, self._queue_depth = load, depth
                    if future is not None and not future.done():  # not withdrawn meanwhile
                        self._account(batch, model_s, wait_s, samples)
                        logprobs = np.frombuffer(body, dtype=np.float32).reshape(count, cols)
                        future.set_result(logprobs)
                elif future is not None and not future.done():
                    self._stats.failed_requests += 1
                    message = body.decode(errors="replace")
                    future.set_exception(
                        EngineClosed(message) if status == CLOSED else InferenceError(message)
                    )
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if writer is self._writer:
                self._disconnect(_lost(exc))

    def _disconnect(self, error: Exception) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
        self._reader_task = None
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()


def _forget(answers: dict[int, asyncio.Task[None]], request_id: int, _: object) -> None:
    answers.pop(request_id, None)


def _lost(exc: BaseException) -> InferenceError:
    return InferenceError(
        f"lost the shared inference process ({type(exc).__name__}); the next window reconnects"
    )


def engine_address(folder: str | Path) -> str:
    """The socket path inside the supervisor's private folder."""
    return str(Path(folder) / "engine.sock")
