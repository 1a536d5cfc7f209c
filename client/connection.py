"""One websocket session of the native protocol (docs/protocol.md).

Sending and receiving run as sibling tasks, so results are shown while audio is still going
out. The sender logs when each stream position was sent (for latency); the receiver stamps
every message with its arrival time the moment it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from client.latency import DEFAULT_TOLERANCE_MS, LatencyTracker, SendLog

DEFAULT_URL = "ws://127.0.0.1:8765/"
#: Close codes after which connecting again later may work (1013 = server full).
RETRYABLE_CLOSE_CODES = (1013,)
MAX_RETRY_DELAY_S = 10.0

Message = dict[str, Any]


class ClientError(Exception):
    """A failure to tell the user about in one line (exit code 1)."""


class ConnectError(ClientError):
    """No session could be opened, retries included."""


class Listener(Protocol):
    """Where a session reports to (the terminal captions, or nothing for the library API)."""

    def status(self, text: str) -> None:
        """Progress for a person: connecting, retrying, dropped audio…"""

    def message(self, msg: Message, t: float) -> None:
        """Every server message, as it arrives (`t`: monotonic seconds)."""


class NullListener:
    def status(self, text: str) -> None:
        pass

    def message(self, msg: Message, t: float) -> None:
        pass


@dataclass
class StreamResult:
    """Everything one session produced: finals, errors, latency records and timing."""

    source: str
    url: str
    sample_rate: int
    send_log: SendLog = field(default_factory=SendLog)
    tracker: LatencyTracker = field(init=False)
    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    session_id: str | None = None
    model: str | None = None
    finals: list[Message] = field(default_factory=list)
    errors: list[Message] = field(default_factory=list)
    partials: int = 0
    connected_at: float | None = None
    streaming_since: float | None = None  # the sender started reading the source
    end_sent_at: float | None = None
    closed_at: float | None = None
    close_code: int | None = None
    failure: str | None = None
    interrupted: bool = False
    dropped_blocks: int = 0
    dropped_ms: float = 0.0
    input_overflows: int = 0

    def __post_init__(self) -> None:
        self.tracker = LatencyTracker(self.send_log, self.tolerance_ms)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def transcript(self) -> str:
        return " ".join(t for f in self.finals if (t := str(f.get("text", ""))))

    @property
    def audio_s(self) -> float:
        return self.send_log.sent_ms / 1000.0

    @property
    def wall_s(self) -> float:
        """From the start of streaming (a paced source's clock starts then) to the close."""
        start = self.streaming_since
        end = self.closed_at
        if start is None or end is None:
            return 0.0
        return max(0.0, end - start)

    @property
    def tail_s(self) -> float | None:
        """From sending `end` to the close: how long the last results took to come back."""
        if self.end_sent_at is None or self.closed_at is None:
            return None
        return self.closed_at - self.end_sent_at

    def summary(self) -> dict[str, Any]:
        wall = self.wall_s
        return {
            "source": self.source,
            "ok": self.ok,
            "failure": self.failure,
            "interrupted": self.interrupted,
            "session_id": self.session_id,
            "model": self.model,
            "sample_rate": self.sample_rate,
            "utterances": len(self.finals),
            "partials": self.partials,
            "errors": len(self.errors),
            "audio_s": round(self.audio_s, 3),
            "wall_s": round(wall, 3),
            # > 1: faster than real time (files with --speed); ~1 for a live stream
            "speed_x_realtime": round(self.audio_s / wall, 3) if wall > 0 else None,
            "tail_s": None if self.tail_s is None else round(self.tail_s, 3),
            "dropped_blocks": self.dropped_blocks,
            "dropped_ms": round(self.dropped_ms, 1),
            "input_overflows": self.input_overflows,
            "latency_ms": self.tracker.summary(),
        }

    @property
    def _t0(self) -> float:
        if self.streaming_since is not None:
            return self.streaming_since
        return self.send_log.first_time or 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "transcript": self.transcript,
            "finals": self.finals,
            "errors": self.errors,
            # times in these records: seconds since streaming started
            "words": [w.to_json(self._t0) for w in self.tracker.words],
            "utterances": [u.to_json(self._t0) for u in self.tracker.utterances],
        }


def describe_connect_failure(exc: BaseException) -> str:
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}; see --cafile)"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        hint = {
            401: ": missing or invalid token (see --token)",
            403: ": forbidden (origin or token not allowed)",
            404: ": no websocket endpoint at this path",
        }.get(status, "")
        return f"server rejected the connection with HTTP {status}{hint}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, _RetryableClose):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _RetryableClose(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in (502, 503, 504)
    if isinstance(exc, ssl.SSLError):  # an OSError, but waiting will not fix it
        return False
    return isinstance(exc, (OSError, asyncio.TimeoutError, _RetryableClose))


def _connect_kwargs(url: str, token: str | None, cafile: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if token:
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    if cafile and url.startswith("wss://"):
        try:
            kwargs["ssl"] = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot use --cafile {cafile}: {exc}") from exc
    return kwargs


async def _recv_json(ws: Any, timeout: float) -> Message:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    if isinstance(raw, bytes):
        raise ClientError("protocol error: server sent binary data where JSON was expected")
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ClientError(f"protocol error: server sent invalid JSON: {raw[:80]!r}") from exc
    if not isinstance(msg, dict):
        raise ClientError(f"protocol error: server message is not an object: {raw[:80]!r}")
    return msg


async def open_session(
    url: str,
    *,
    retries: int = 3,
    retry_delay: float = 0.5,
    open_timeout: float = 10.0,
    token: str | None = None,
    cafile: str | None = None,
    listener: Listener | None = None,
) -> tuple[Any, Message, float]:
    """Connect and wait for `ready`, retrying with exponential backoff when the server is
    not there yet (refused, timeout, HTTP 502-504) or full (close 1013).

    Returns the connection, the `ready` message and its arrival time.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    listener = listener or NullListener()
    kwargs = _connect_kwargs(url, token, cafile)
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        listener.status(f"connecting to {url} …")
        ws: Any = None
        try:
            ws = await connect(url, open_timeout=open_timeout, max_size=2**22, **kwargs)
            try:
                msg = await _recv_json(ws, open_timeout)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code in RETRYABLE_CLOSE_CODES:
                    raise _RetryableClose(f"server is full (close {code} {reason})") from exc
                raise ClientError(
                    f"server closed the connection before it was ready (code {code} {reason})"
                ) from exc
            t = time.monotonic()
            if msg.get("type") == "error":
                raise ClientError(_error_line(msg))
            if msg.get("type") != "ready":
                raise ClientError(f"protocol error: expected 'ready', got {msg.get('type')!r}")
            return ws, msg, t
        except BaseException as exc:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            if isinstance(exc, ClientError) or not isinstance(exc, Exception):
                raise
            if not _retryable(exc):
                raise ConnectError(
                    f"cannot connect to {url}: {describe_connect_failure(exc)}"
                ) from exc
            if attempt == attempts:
                raise ConnectError(
                    f"cannot connect to {url}: {describe_connect_failure(exc)}"
                    f" (gave up after {attempts} attempt{'s' if attempts > 1 else ''})"
                ) from exc
            delay = min(MAX_RETRY_DELAY_S, retry_delay * 2 ** (attempt - 1))
            listener.status(
                f"{describe_connect_failure(exc)}; retrying in {delay:.1f} s"
                f" (retry {attempt} of {retries})"
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _error_line(msg: Message) -> str:
    fatal = " (fatal)" if msg.get("fatal") else ""
    return f"server error {msg.get('code', '?')}{fatal}: {msg.get('message', '')}"


class SessionOptions(TypedDict, total=False):
    """The keyword options of `stream_audio` that `stream_file`, `stream_files` and
    `stream_microphone` take as well and pass on unchanged (defaults: `stream_audio`'s)."""

    listener: Listener | None
    retries: int
    retry_delay: float
    open_timeout: float
    finish_timeout: float
    tolerance_ms: float
    token: str | None
    cafile: str | None
    stop: asyncio.Event | None


async def stream_audio(
    source: AsyncIterable[npt.NDArray[np.int16]],
    *,
    url: str = DEFAULT_URL,
    sample_rate: int = 16000,
    name: str = "stream",
    listener: Listener | None = None,
    retries: int = 3,
    retry_delay: float = 0.5,
    open_timeout: float = 10.0,
    finish_timeout: float = 30.0,
    tolerance_ms: float = DEFAULT_TOLERANCE_MS,
    token: str | None = None,
    cafile: str | None = None,
    stop: asyncio.Event | None = None,
    result: StreamResult | None = None,
) -> StreamResult:
    """Stream s16 mono blocks from `source` as one session and collect everything.

    Session-level failures (a fatal server error, an abnormal close, a server that goes
    quiet for `finish_timeout` s after `end`) are recorded in `result.failure`; failing to
    connect at all raises `ConnectError`. `stop` marks the result as interrupted (the
    source itself is expected to end when it is set).
    """
    listener = listener or NullListener()
    res = result or StreamResult(
        source=name, url=url, sample_rate=sample_rate, tolerance_ms=tolerance_ms
    )
    ws, ready, t_ready = await open_session(
        url,
        retries=retries,
        retry_delay=retry_delay,
        open_timeout=open_timeout,
        token=token,
        cafile=cafile,
        listener=listener,
    )
    res.connected_at = t_ready
    res.session_id = ready.get("session_id")
    res.model = ready.get("model")
    listener.message(ready, t_ready)
    try:
        await _run(ws, source, res, listener, open_timeout, finish_timeout)
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
        if res.closed_at is None:
            res.closed_at = time.monotonic()
        if stop is not None and stop.is_set():
            res.interrupted = True
    return res


async def _run(
    ws: Any,
    source: AsyncIterable[npt.NDArray[np.int16]],
    res: StreamResult,
    listener: Listener,
    open_timeout: float,
    finish_timeout: float,
) -> None:
    from websockets.exceptions import ConnectionClosed

    start = {
        "type": "start",
        "sample_rate": res.sample_rate,
        "encoding": "pcm_s16le",
        "channels": 1,
    }
    await ws.send(json.dumps(start))
    # Wait for `started` so a rejected rate is reported instead of streaming garbage.
    try:
        msg = await _recv_json(ws, open_timeout)
    except ConnectionClosed as exc:
        res.failure = _closed_text(exc, "before accepting the stream")
        return
    except asyncio.TimeoutError:
        res.failure = f"server did not answer 'start' within {open_timeout:g} s"
        return
    t = time.monotonic()
    listener.message(msg, t)
    if msg.get("type") == "error":
        res.errors.append(msg)
        res.failure = _error_line(msg)
        return
    if msg.get("type") != "started":
        res.failure = f"protocol error: expected 'started', got {msg.get('type')!r}"
        return

    last_msg = [time.monotonic()]
    sender = asyncio.create_task(_send(ws, source, res))
    receiver = asyncio.create_task(_receive(ws, res, listener, last_msg))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            sender.result()  # a failing source (e.g. the sound card) propagates
            # `end` is sent: wait for the remaining finals while the server keeps talking.
            while not receiver.done():
                last_msg[0] = max(last_msg[0], res.end_sent_at or 0.0)
                remaining = last_msg[0] + finish_timeout - time.monotonic()
                if remaining <= 0:
                    res.failure = (
                        f"server sent nothing for {finish_timeout:g} s after the end of the"
                        " stream; giving up"
                    )
                    break
                await asyncio.wait({receiver}, timeout=remaining)
            if receiver.done():
                receiver.result()
        else:
            receiver.result()
            if res.failure is None and res.end_sent_at is None:
                res.failure = "server closed the connection before the stream ended"
    finally:
        for task in (sender, receiver):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _send(ws: Any, source: AsyncIterable[npt.NDArray[np.int16]], res: StreamResult) -> None:
    from websockets.exceptions import ConnectionClosed

    samples = 0
    res.streaming_since = time.monotonic()
    try:
        async for block in source:
            if len(block) == 0:
                continue
            await ws.send(np.ascontiguousarray(block, dtype="<i2").tobytes())
            samples += len(block)
            res.send_log.record(time.monotonic(), samples * 1000.0 / res.sample_rate)
        await ws.send(json.dumps({"type": "end"}))
        res.end_sent_at = time.monotonic()
    except ConnectionClosed:
        # The receiver sees the same close and says why; nothing more to send.
        return
    finally:
        # Close an async generator source now (e.g. release the sound card), not at GC.
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _receive(ws: Any, res: StreamResult, listener: Listener, last: list[float]) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for raw in ws:
            t = time.monotonic()
            last[0] = t
            if isinstance(raw, bytes):
                listener.status("ignoring unexpected binary frame from the server")
                continue
            try:
                msg = json.loads(raw)
            except json.JSONDecodeError:
                listener.status(f"ignoring invalid JSON from the server: {raw[:80]!r}")
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "partial":
                res.partials += 1
            elif kind == "final":
                res.finals.append(msg)
            elif kind == "error":
                res.errors.append(msg)
                if msg.get("fatal") and res.failure is None:
                    res.failure = _error_line(msg)
            res.tracker.on_message(msg, t)
            listener.message(msg, t)
    except ConnectionClosed as exc:
        res.closed_at = time.monotonic()
        res.close_code = exc.rcvd.code if exc.rcvd is not None else None
        if res.failure is None:
            res.failure = _closed_text(exc, "unexpectedly")
        return
    res.closed_at = time.monotonic()
    res.close_code, reason = _close_info(ws)
    if res.failure is None and res.close_code == 1001:
        res.failure = "server shut down during the stream (code 1001)"
    elif res.failure is None and res.close_code not in (1000, None):
        res.failure = f"server closed the session (code {res.close_code}" + (
            f" {reason})" if reason else ")"
        )


def _close_info(ws: Any) -> tuple[int | None, str | None]:
    """Close code and reason the server sent (`close_code` exists from websockets 14 on;
    13 has them on the sans-I/O protocol object)."""
    code = getattr(ws, "close_code", None)
    if code is not None:
        return code, getattr(ws, "close_reason", None)
    rcvd = getattr(getattr(ws, "protocol", None), "close_rcvd", None)
    if rcvd is not None:
        return rcvd.code, rcvd.reason
    return None, None


def _closed_text(exc: Any, when: str) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is None:
        return f"connection lost {when} (no close frame)"
    reason = f" {rcvd.reason}" if rcvd.reason else ""
    return f"server closed the connection {when} (code {rcvd.code}{reason})"
