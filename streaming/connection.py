"""One websocket connection speaking the native protocol (docs/protocol.md).

Three sibling tasks per connection: the reader (frames → session), the driver's inference
loop (windows → shared engine → events) and the sender (outbox → socket). Reading pauses
while the session owes the engine more than ``backlog_high_s`` of audio, which pushes back
on the client through TCP instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from . import protocol
from .config import ServerConfig
from .driver import SessionDriver
from .engine import Engine
from .errors import StreamError
from .events import Event
from .metrics import Metrics
from .outbox import Outbox
from .rescoring import FinalRescorer
from .session import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionContext:
    """What every protocol front end gets for one accepted websocket."""

    ws: ServerConnection
    session: Session
    engine: Engine
    config: ServerConfig
    session_id: str
    model_name: str
    metrics: Metrics
    rescorer: FinalRescorer | None = None


class Endpoint(Protocol):
    """A protocol front end serving one connection."""

    driver: SessionDriver

    async def run(self) -> None: ...

    async def shutdown(self, grace: float) -> None: ...


class StreamConnection:
    """Runs until the client ends the stream, disconnects, or the server shuts down."""

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ws = ctx.ws
        self.session = ctx.session
        self.config = ctx.config
        self.session_id = ctx.session_id
        self.model_name = ctx.model_name
        self.log = logging.LoggerAdapter(log, {"session": ctx.session_id})
        self.outbox = Outbox()
        self.metrics = ctx.metrics
        self.driver = SessionDriver(
            ctx.session, ctx.engine, ctx.config, self._emit, ctx.metrics, rescorer=ctx.rescorer
        )
        self._close_code = 1000
        self._close_reason = ""
        self._finished = asyncio.Event()
        self.errors_sent = 0

    async def run(self) -> None:
        self.outbox.put(protocol.ready(self.session_id, self.model_name))
        self.driver.start()
        reader = asyncio.create_task(self._reader(), name=f"read-{self.session_id}")
        finished = asyncio.create_task(self.driver.finished(), name=f"fin-{self.session_id}")
        sender = asyncio.create_task(self._sender(), name=f"send-{self.session_id}")
        try:
            await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
            # The reader keeps answering (after_end errors) until the last final is out.
            if finished.done() or reader.result():
                await finished
                self.outbox.close()
                await sender
                await self.ws.close(self._close_code, self._close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._finished.set()
            for task in (reader, finished, sender):
                task.cancel()
            await asyncio.gather(reader, finished, sender, return_exceptions=True)
            await self.driver.aclose()
            self.log.info(
                "session closed: %d ms of audio, %d windows, %d finals",
                self.session.audio_ms,
                self.session.windows_requested,
                self.session.finals_sent,
            )

    async def shutdown(self, grace: float) -> None:
        """Server is stopping: finalize open utterances, send finals, close with 1001."""
        self._close_code, self._close_reason = 1001, "server shutting down"
        self.driver.end("shutdown")
        try:
            await asyncio.wait_for(self._finished.wait(), grace)
        except asyncio.TimeoutError:
            self.log.warning("shutdown grace period over; closing with work pending")
            await self.ws.close(1001, "server shutting down")

    # -- reader ---------------------------------------------------------------------

    async def _reader(self) -> bool:
        """Read frames until the connection closes (False) or goes idle (True)."""
        while True:
            await self.driver.readable()
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
            try:
                if isinstance(message, bytes):
                    self._handle_audio(message)
                else:
                    self._handle_text(message)
            except StreamError as exc:
                self._send_error(exc.code, exc.message, fatal=exc.fatal)

    def _handle_audio(self, data: bytes) -> None:
        if len(data) > self.config.max_frame_bytes:
            raise StreamError(
                "frame_too_large",
                f"binary frame of {len(data)} bytes exceeds the limit of "
                f"{self.config.max_frame_bytes} bytes; frame dropped",
            )
        self.driver.feed(data)
        if self.session.audio_ms > self.config.max_session_s * 1000:
            self._fatal(
                "session_too_long",
                f"stream longer than the limit of {self.config.max_session_s:g} s",
            )

    def _handle_text(self, text: str) -> None:
        if self.session.ended:
            raise StreamError("after_end", "message received after end")
        message = protocol.parse_client_text(text)
        if isinstance(message, protocol.Start):
            self.driver.begin(message.format)
            self.outbox.put(protocol.started(message.format))
        elif isinstance(message, protocol.Flush):
            self.driver.flush()
        else:
            self.driver.end("end")

    def _fatal(self, code: str, message: str) -> None:
        self._send_error(code, message, fatal=True)
        self.driver.end("end")
        self._close_code, self._close_reason = 1008, code

    def _send_error(self, code: str, message: str, *, fatal: bool) -> None:
        self.errors_sent += 1
        self.metrics.errors.labels(code).inc()
        self.log.info("client error %s: %s", code, message)
        self.outbox.put(protocol.error(code, message, fatal=fatal))

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
