"""One websocket connection speaking the native protocol, driving one Session.

Three sibling tasks per connection: the reader (this handler: frames → session), the
inference loop (session windows → shared engine → events) and the sender (outbox →
socket). Reading pauses while the session owes the engine more than ``backlog_high_s`` of
audio, which pushes back on the client through TCP instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from . import protocol
from .config import MODEL_SAMPLE_RATE, ServerConfig
from .engine import EngineClosed, InferenceEngine, InferenceError
from .errors import StreamError
from .events import Event
from .outbox import Outbox
from .session import Session

log = logging.getLogger(__name__)


class StreamConnection:
    """Runs until the client ends the stream, disconnects, or the server shuts down."""

    def __init__(
        self,
        ws: ServerConnection,
        session: Session,
        engine: InferenceEngine,
        config: ServerConfig,
        session_id: str,
        model_name: str,
    ) -> None:
        self.ws = ws
        self.session = session
        self.engine = engine
        self.config = config
        self.session_id = session_id
        self.model_name = model_name
        self.log = logging.LoggerAdapter(log, {"session": session_id})
        self.outbox = Outbox()
        self._work = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._high = int(config.backlog_high_s * MODEL_SAMPLE_RATE)
        self._low = int(config.backlog_low_s * MODEL_SAMPLE_RATE)
        self._close_code = 1000
        self._close_reason = ""
        self._finished = asyncio.Event()
        self.errors_sent = 0

    async def run(self) -> None:
        self.outbox.put(protocol.ready(self.session_id, self.model_name))
        reader = asyncio.create_task(self._reader(), name=f"read-{self.session_id}")
        inference = asyncio.create_task(self._inference(), name=f"infer-{self.session_id}")
        sender = asyncio.create_task(self._sender(), name=f"send-{self.session_id}")
        try:
            await asyncio.wait([reader, inference], return_when=asyncio.FIRST_COMPLETED)
            # The reader keeps answering (after_end errors) until the last final is out.
            if inference.done() or reader.result():
                await inference
                self.outbox.close()
                await sender
                await self.ws.close(self._close_code, self._close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._finished.set()
            for task in (reader, inference, sender):
                task.cancel()
            await asyncio.gather(reader, inference, sender, return_exceptions=True)
            self.session.cancel_inflight()
            self.log.info(
                "session closed: %d ms of audio, %d windows, %d finals",
                self.session.audio_ms,
                self.session.windows_requested,
                self.session.finals_sent,
            )

    async def shutdown(self, grace: float) -> None:
        """Server is stopping: finalize open utterances, send finals, close with 1001."""
        self._close_code, self._close_reason = 1001, "server shutting down"
        self._emit(self.session.end("shutdown"))
        self._work.set()
        self._drained.set()
        try:
            await asyncio.wait_for(self._finished.wait(), grace)
        except asyncio.TimeoutError:
            self.log.warning("shutdown grace period over; closing with work pending")
            await self.ws.close(1001, "server shutting down")

    # -- reader ---------------------------------------------------------------------

    async def _reader(self) -> bool:
        """Read frames until the connection closes (False) or goes idle (True)."""
        while True:
            await self._drained.wait()
            try:
                message = await asyncio.wait_for(self.ws.recv(), self.config.idle_timeout_s)
            except asyncio.TimeoutError:
                self._fatal(
                    "idle_timeout",
                    f"no message for {self.config.idle_timeout_s:g} s; ending the stream",
                )
                return True
            except ConnectionClosed:
                return False
            self._handle(message)

    def _handle(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                self._handle_audio(message)
            else:
                self._handle_text(message)
        except StreamError as exc:
            self._send_error(exc.code, exc.message, fatal=exc.fatal)
            if exc.fatal:
                self._emit(self.session.end("end"))
        self._work.set()

    def _handle_audio(self, data: bytes) -> None:
        if len(data) > self.config.max_frame_bytes:
            raise StreamError(
                "frame_too_large",
                f"binary frame of {len(data)} bytes exceeds the limit of "
                f"{self.config.max_frame_bytes} bytes; frame dropped",
            )
        self._emit(self.session.feed(data))
        if self.session.audio_ms > self.config.max_session_s * 1000:
            self._fatal(
                "session_too_long",
                f"stream longer than the limit of {self.config.max_session_s:g} s",
            )
        self._check_backlog()

    def _handle_text(self, text: str) -> None:
        if self.session.ended:
            raise StreamError("after_end", "message received after end")
        message = protocol.parse_client_text(text)
        if isinstance(message, protocol.Start):
            self.session.start(message.format)
            self.outbox.put(protocol.started(message.format))
        elif isinstance(message, protocol.Flush):
            self._emit(self.session.flush())
        else:
            self._emit(self.session.end("end"))

    def _fatal(self, code: str, message: str) -> None:
        self._send_error(code, message, fatal=True)
        self._emit(self.session.end("end"))
        self._close_code, self._close_reason = 1008, code

    def _send_error(self, code: str, message: str, *, fatal: bool) -> None:
        self.errors_sent += 1
        self.log.info("client error %s: %s", code, message)
        self.outbox.put(protocol.error(code, message, fatal=fatal))

    def _check_backlog(self) -> None:
        backlog = self.session.backlog_samples
        if backlog > self._high:
            self._drained.clear()
        elif backlog <= self._low:
            self._drained.set()

    # -- inference ------------------------------------------------------------------

    async def _inference(self) -> None:
        while True:
            request = self.session.next_request()
            if request is None:
                if self.session.ended and self.session.idle:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            try:
                logprobs = await self.engine.infer(request.samples)
            except (InferenceError, EngineClosed) as exc:
                events = self.session.fail(request, str(exc))
            else:
                events = self.session.complete(request, logprobs)
            self._emit(events)
            self._check_backlog()

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self.outbox.put(protocol.event_message(event))

    # -- sender ---------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                return
            await self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(protocol.encode(message))
