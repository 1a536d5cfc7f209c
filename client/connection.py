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
from collections import deque
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
#: Audio kept for a resume, at most (seconds): longer than the server's longest utterance
#: (30 s) plus what it replays before one; past it a dropped stream resumes with a gap.
DEFAULT_MAX_UNACKED_S = 60.0
#: Connection attempts when resuming (a replica that just died needs a health check or
#: two before the balancer stops choosing it).
RESUME_RETRIES = 6

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
    resumes: list[Message] = field(default_factory=list)  # one per reconnection

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
            "resumes": len(self.resumes),
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
            "resumes": self.resumes,
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
    resume: bool
    max_unacked_s: float


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
    resume: bool = True,
    max_unacked_s: float = DEFAULT_MAX_UNACKED_S,
) -> StreamResult:
    """Stream s16 mono blocks from `source` as one session and collect everything.

    Session-level failures (a fatal server error, an abnormal close, a server that goes
    quiet for `finish_timeout` s after `end`) are recorded in `result.failure`; failing to
    connect at all raises `ConnectError`. `stop` marks the result as interrupted (the
    source itself is expected to end when it is set).

    With `resume` (docs/protocol.md, "Resume") the client keeps the audio the server has
    not acknowledged (at most `max_unacked_s` seconds of it) and, when the connection drops
    or the server says `moved`, connects to `url` again (through the load balancer: any
    replica) and resumes the stream: no final is shown twice and none is lost.
    """
    listener = listener or NullListener()
    res = result or StreamResult(
        source=name, url=url, sample_rate=sample_rate, tolerance_ms=tolerance_ms
    )
    connect_options: dict[str, Any] = {
        "retry_delay": retry_delay, "open_timeout": open_timeout, "token": token,
        "cafile": cafile, "listener": listener,
    }  # fmt: skip
    ws, ready, t_ready = await open_session(url, retries=retries, **connect_options)
    res.connected_at = t_ready
    res.session_id = ready.get("session_id")
    res.model = ready.get("model")
    listener.message(ready, t_ready)
    feed = _Feed(source, sample_rate, int(max_unacked_s * sample_rate) if resume else 0)
    pump = asyncio.create_task(feed.pump(listener))
    res.streaming_since = time.monotonic()
    view = _View(res)
    first: Message = {**_start_message(res.sample_rate), **({"resume": True} if resume else {})}
    cursor = 0
    try:
        while True:
            dropped = await _run(
                ws, feed, view, first, cursor, listener, open_timeout, finish_timeout
            )
            if dropped is None:
                break
            with contextlib.suppress(Exception):
                await ws.close()
            reconnected = await _reconnect(url, feed, view, dropped, retries, connect_options)
            if reconnected is None:
                break
            ws, first, cursor = reconnected
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        await feed.aclose()
        with contextlib.suppress(Exception):
            await ws.close()
        if res.closed_at is None:
            res.closed_at = time.monotonic()
        if stop is not None and stop.is_set():
            res.interrupted = True
    return res


def _start_message(rate: int) -> Message:
    return {"type": "start", "sample_rate": rate, "encoding": "pcm_s16le", "channels": 1}


class _Feed:
    """The source's audio, read by one task for the whole stream (connections come and go),
    kept from the last acknowledged offset on so a new connection can replay it.

    Reading stays at most `LEAD_S` ahead of what was sent; what is kept for resuming is
    bounded by `keep` samples (0: nothing is kept once sent, no resume).
    """

    LEAD_S = 2.0

    def __init__(self, source: AsyncIterable[npt.NDArray[np.int16]], rate: int, keep: int) -> None:
        self.source = source
        self.rate = rate
        self.keep = keep
        self.blocks: deque[tuple[int, npt.NDArray[np.int16]]] = deque()  # (offset, block)
        self.total = 0  # samples read from the source
        self.sent = 0  # furthest offset sent on any connection
        self.acked = 0
        self.token: str | None = None
        self.done = False
        self.error: BaseException | None = None
        self.overflowed = False
        self.pin = 0  # the bound never drops audio from here on (a connection's cursor)
        self._changed = asyncio.Event()

    @property
    def kept_from(self) -> int:
        return self.blocks[0][0] if self.blocks else self.total

    async def pump(self, listener: Listener) -> None:
        try:
            async for block in self.source:
                if len(block) == 0:
                    continue
                while self.total - self.sent > self.LEAD_S * self.rate:
                    await self._wait()
                self.blocks.append((self.total, np.ascontiguousarray(block, dtype="<i2")))
                self.total += len(block)
                self._trim(listener)
                self._changed.set()
        except Exception as exc:  # a failing source (e.g. the sound card) ends the stream
            self.error = exc
        finally:
            self.done = True
            self._changed.set()

    async def aclose(self) -> None:
        """Close an async generator source now (e.g. release the sound card), not at GC."""
        aclose = getattr(self.source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def piece(self, cursor: int) -> npt.NDArray[np.int16] | None:
        """The kept audio from offset `cursor` to the end of its block, None if not read yet."""
        for offset, block in reversed(self.blocks):
            if offset <= cursor:
                return block[cursor - offset :] if cursor < offset + len(block) else None
        return None

    async def next_piece(self, cursor: int) -> npt.NDArray[np.int16] | None:
        """Wait for audio at `cursor`; None once the source has ended there."""
        while True:
            piece = self.piece(cursor)
            if piece is not None or (self.done and cursor >= self.total):
                return piece
            if cursor < self.kept_from:
                raise ClientError("audio to replay is no longer kept")
            await self._wait()

    def mark_sent(self, cursor: int, listener: Listener) -> None:
        self.pin = cursor
        if cursor > self.sent:
            self.sent = cursor
            self._trim(listener)
            self._changed.set()

    def acknowledge(self, offset: int, token: str | None, listener: Listener) -> None:
        self.acked = max(self.acked, offset)
        if token is not None:
            self.token = token
        self._trim(listener)

    def _trim(self, listener: Listener) -> None:
        """Drop what no resume needs; past `keep` samples, drop the oldest anyway."""
        needed = min(self.acked, self.sent) if self.keep else self.sent
        while self.blocks and self.blocks[0][0] + len(self.blocks[0][1]) <= needed:
            self.blocks.popleft()
        while (
            self.keep
            and self.blocks
            and self.total - self.blocks[0][0] > self.keep
            and self.blocks[0][0] + len(self.blocks[0][1]) <= min(self.sent, self.pin)
        ):
            self.blocks.popleft()
            if not self.overflowed:
                self.overflowed = True
                listener.status(
                    f"resume: the server has not acknowledged the last "
                    f"{self.keep / self.rate:g} s of audio (the most this client keeps): "
                    "a dropped connection can no longer be resumed without a gap"
                )


class _View:
    """What one stream showed across its connections: finals once each, in order, with
    the times and utterance ids of the stream as the client sent it."""

    def __init__(self, res: StreamResult) -> None:
        self.res = res
        self.last_final = -1
        self.shift_ms = 0  # a new stream after a refused resume: its times start later
        self.shift_ids = 0
        self.resumable = False  # the server acknowledges (it sent an ack or resumed)

    def adjust(self, msg: Message) -> Message | None:
        """`msg` in the stream's own terms; None for a result already shown in full."""
        if self.shift_ms or self.shift_ids:
            msg = _shifted(msg, self.shift_ms, self.shift_ids)
        uid = msg.get("utterance_id")
        if msg.get("type") in ("partial", "final") and isinstance(uid, int):
            if uid <= self.last_final:
                return None  # re-sent after a resume: the client already has its final
            if msg["type"] == "final":
                self.last_final = uid
        return msg


def _shifted(msg: Message, ms: int, ids: int) -> Message:
    out = dict(msg)
    for key in ("start_ms", "end_ms", "audio_ms"):
        if isinstance(out.get(key), (int, float)):
            out[key] += ms
    if isinstance(out.get("utterance_id"), int):
        out["utterance_id"] += ids
    if isinstance(out.get("words"), list):
        out["words"] = [
            {**w, "start_ms": w["start_ms"] + ms, "end_ms": w["end_ms"] + ms}
            for w in out["words"]
            if isinstance(w, dict)
        ]
    return out


@dataclass
class _Dropped:
    """A connection that ended before the stream did, in a way a resume can mend."""

    why: str  # for the person: "connection lost …" / "moved: …"
    failure: str  # what `failure` says when it cannot be resumed
    new_stream: bool = False  # the resume was refused: go on as a new stream


async def _reconnect(
    url: str,
    feed: _Feed,
    view: _View,
    dropped: _Dropped,
    retries: int,
    options: dict[str, Any],
) -> tuple[Any, Message, int] | None:
    """Connect again and say how to go on: the first message and the offset to send from
    (a resume, or a new stream from the oldest audio kept); None when the stream cannot go
    on (the failure is recorded)."""
    res, listener = view.res, options["listener"]
    feed.pin = feed.kept_from  # what is kept now stays until a connection sends it again
    if not dropped.new_stream and (feed.token is None or not view.resumable):
        res.failure = dropped.failure
        return None
    listener.status(f"{dropped.why}; reconnecting to go on with the stream …")
    try:
        ws, ready, t = await open_session(url, retries=max(retries, RESUME_RETRIES), **options)
    except ConnectError as exc:
        res.failure = f"{dropped.failure}; could not reconnect: {exc}"
        return None
    listener.message(ready, t)
    record: Message = {"reason": dropped.why, "at": t, "session_id": ready.get("session_id")}
    res.resumes.append(record)
    if dropped.new_stream or feed.token is None or feed.acked < feed.kept_from:
        # A new stream from the oldest audio kept; its times and ids continue this one's.
        base = feed.kept_from
        view.shift_ms = base * 1000 // feed.rate
        view.shift_ids = view.last_final + 1
        record["new_stream_at"] = base
        listener.status(f"starting a new stream at {base / feed.rate:.1f} s of the audio")
        return ws, {**_start_message(feed.rate), "resume": True}, base
    record["offset"] = feed.acked
    return ws, {"type": "resume", "token": feed.token}, feed.acked


async def _run(
    ws: Any,
    feed: _Feed,
    view: _View,
    first: Message,
    cursor: int,
    listener: Listener,
    open_timeout: float,
    finish_timeout: float,
) -> _Dropped | None:
    """One connection: handshake, then send and receive until the stream ends (None) or
    the connection drops in a way a resume may mend (`_Dropped`)."""
    from websockets.exceptions import ConnectionClosed

    res = view.res
    # Wait for `started` so a rejected rate is reported instead of streaming garbage.
    try:
        msg = await _handshake(ws, first, open_timeout)
        if _refuses_resume(msg, first):  # a server from before resume: plain streams
            listener.status("this server does not resume streams")
            msg = await _handshake(
                ws, {k: v for k, v in first.items() if k != "resume"}, open_timeout
            )
    except ConnectionClosed as exc:
        res.failure = _closed_text(exc, "before accepting the stream")
        return None
    except asyncio.TimeoutError:
        res.failure = f"server did not answer {first['type']!r} within {open_timeout:g} s"
        return None
    t = time.monotonic()
    listener.message(msg, t)
    if msg.get("type") == "error" and msg.get("code") == "resume_rejected":
        res.resumes[-1]["refused"] = msg.get("reason")
        feed.token = None
        why = f"resume refused ({msg.get('reason')})"
        return _Dropped(why, _error_line(msg), new_stream=True)
    if msg.get("type") == "error":
        res.errors.append(msg)
        res.failure = _error_line(msg)
        return None
    if msg.get("type") == "resumed":
        cursor = int(msg.get("offset", feed.acked))
        view.resumable = True
    elif msg.get("type") != "started":
        res.failure = f"protocol error: expected 'started', got {msg.get('type')!r}"
        return None

    last_msg = [time.monotonic()]
    sender = asyncio.create_task(_send(ws, feed, res, cursor, listener))
    receiver = asyncio.create_task(_receive(ws, feed, view, listener, last_msg))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and sender.exception() is None and not receiver.done():
            # `end` is sent: wait for the remaining finals while the server keeps talking.
            while not receiver.done():
                last_msg[0] = max(last_msg[0], res.end_sent_at or 0.0)
                remaining = last_msg[0] + finish_timeout - time.monotonic()
                if remaining <= 0:
                    res.failure = (
                        f"server sent nothing for {finish_timeout:g} s after the end of the"
                        " stream; giving up"
                    )
                    return None
                await asyncio.wait({receiver}, timeout=remaining)
        if sender.done() and sender.exception() is not None:
            sender.result()  # a failing source (e.g. the sound card) propagates
        if not receiver.done():
            await receiver
        dropped = receiver.result()
        if dropped is None and res.failure is None and res.end_sent_at is None:
            res.failure = "server closed the connection before the stream ended"
        return dropped
    finally:
        for task in (sender, receiver):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _handshake(ws: Any, first: Message, timeout: float) -> Message:
    await ws.send(json.dumps(first))
    return await _recv_json(ws, timeout)


def _refuses_resume(reply: Message, first: Message) -> bool:
    """The reply of a server that predates resume to `start` with `"resume": true`."""
    return (
        first.get("type") == "start"
        and bool(first.get("resume"))
        and reply.get("type") == "error"
        and reply.get("code") == "invalid_field"
        and "resume" in str(reply.get("message", ""))
    )


async def _send(ws: Any, feed: _Feed, res: StreamResult, cursor: int, listener: Listener) -> None:
    """Send the audio from `cursor` (a replay after a resume), then `end` once the source
    is done. Replayed audio is not logged again: latency is measured from the first send."""
    from websockets.exceptions import ConnectionClosed

    if feed.error is None and cursor < feed.kept_from:
        raise ClientError("the audio to replay is no longer kept")
    try:
        while (piece := await feed.next_piece(cursor)) is not None:
            await ws.send(piece.tobytes())
            cursor += len(piece)
            feed.mark_sent(cursor, listener)
            position_ms = cursor * 1000.0 / res.sample_rate
            if position_ms > res.send_log.sent_ms:
                res.send_log.record(time.monotonic(), position_ms)
        if feed.error is not None:
            raise feed.error
        await ws.send(json.dumps({"type": "end"}))
        if res.end_sent_at is None:
            res.end_sent_at = time.monotonic()
    except ConnectionClosed:
        # The receiver sees the same close and says why; nothing more to send.
        return


# Close codes after which resuming elsewhere may work: going away, abnormal (no close
# frame), internal error, service restart ("moved"), try again later.
RESUMABLE_CLOSE_CODES = (1001, 1006, 1011, 1012, 1013, None)


async def _receive(
    ws: Any, feed: _Feed, view: _View, listener: Listener, last: list[float]
) -> _Dropped | None:
    from websockets.exceptions import ConnectionClosed

    res = view.res
    moved: Message | None = None
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
            if kind in ("ack", "moved"):
                view.resumable = True
                token = msg.get("token")
                offset = msg.get("offset")
                if isinstance(offset, int) and isinstance(token, str):
                    feed.acknowledge(offset, token, listener)
                if kind == "moved":
                    moved = msg
                listener.message(msg, t)
                continue
            adjusted = view.adjust(msg)
            if adjusted is None:
                continue
            msg = adjusted
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
        failure = _closed_text(exc, "unexpectedly")
        if moved is not None and res.failure is None:  # close 1012 raises here
            return _Dropped(f"moved: {moved.get('message', '')}", "server moved the stream")
        if res.failure is None and res.close_code in RESUMABLE_CLOSE_CODES:
            return _Dropped("connection lost", failure)
        if res.failure is None:
            res.failure = failure
        return None
    res.closed_at = time.monotonic()
    res.close_code, reason = _close_info(ws)
    if moved is not None and res.failure is None:
        return _Dropped(f"moved: {moved.get('message', '')}", "server moved the stream")
    if res.failure is None and res.close_code == 1001:
        failure = "server shut down during the stream (code 1001)"
        return _Dropped("server shut down", failure)
    if res.failure is None and res.close_code not in (1000, None):
        res.failure = f"server closed the session (code {res.close_code}" + (
            f" {reason})" if reason else ")"
        )
    return None


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
