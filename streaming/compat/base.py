"""What every compatibility front end shares: the connection lifecycle around one driver.

A subclass only reads its protocol's frames (``on_message``), words the session's events
(``on_events``) and says what to send last (``on_finished``). The lifecycle is the native
one: a reader, the driver's inference loop and a sender run side by side; when the stream
has ended and every final is out, the last messages are sent and the socket is closed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..connection import ConnectionContext
from ..driver import SessionDriver
from ..events import Event
from .outbox import KeyedOutbox

log = logging.getLogger("streaming.compat")


class CompatConnection(abc.ABC):
    """One websocket speaking a third-party protocol over the shared engine."""

    protocol = "compat"

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx
        self.ws = ctx.ws
        self.session = ctx.session
        self.config = ctx.config
        self.log = logging.LoggerAdapter(log, {"session": ctx.session_id})
        self.outbox = KeyedOutbox()
        self.driver = SessionDriver(
            ctx.session, ctx.engine, ctx.config, self.on_events, ctx.metrics, rescorer=ctx.rescorer
        )
        self.close_code = 1000
        self.close_reason = ""
        self._finished = asyncio.Event()

    # -- protocol hooks -------------------------------------------------------------

    async def on_open(self) -> bool:
        """Protocol handshake after the websocket one; False = refused (socket closed)."""
        return True

    @abc.abstractmethod
    async def on_message(self, message: str | bytes) -> None:
        """One client frame."""

    @abc.abstractmethod
    def on_events(self, events: list[Event]) -> None:
        """Partials, finals and errors from the session (called synchronously)."""

    def on_limit(self, code: str, message: str) -> None:
        """A server limit ended the stream (idle, too long); default: policy close."""
        self.close_code, self.close_reason = 1008, code

    def on_shutdown(self) -> None:
        """The server is stopping; the stream ends with reason ``shutdown``."""
        return None

    def on_finished(self) -> None:
        """Every final is out; queue whatever the protocol sends before closing."""
        return None

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        reader = finished = sender = None
        try:
            if not await self.on_open():
                return
            self.driver.start()
            reader = asyncio.create_task(self._reader(), name=f"read-{self.ctx.session_id}")
            finished = asyncio.create_task(self.driver.finished(), name="fin")
            sender = asyncio.create_task(self._sender(), name=f"send-{self.ctx.session_id}")
            await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
            if finished.done() or reader.result():
                await finished
                self.on_finished()
                self.outbox.close()
                await sender
                await self.ws.close(self.close_code, self.close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._finished.set()
            tasks = [t for t in (reader, finished, sender) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.driver.aclose()
            self.log.info(
                "%s session closed: %d ms of audio, %d finals",
                self.protocol,
                self.session.audio_ms,
                self.session.finals_sent,
            )

    async def shutdown(self, grace: float) -> None:
        """Server is stopping: finalize open utterances, send finals, close with 1001."""
        self.close_code, self.close_reason = 1001, "server shutting down"
        self.on_shutdown()
        self.driver.end("shutdown")
        try:
            await asyncio.wait_for(self._finished.wait(), grace)
        except asyncio.TimeoutError:
            self.log.warning("shutdown grace period over; closing with work pending")
            await self.ws.close(1001, "server shutting down")

    # -- helpers for subclasses -----------------------------------------------------

    async def refuse(self, code: int, reason: str) -> None:
        """Close at once, sending nothing more (a protocol-level refusal)."""
        self.log.info("%s refused: %s", self.protocol, reason)
        await self.ws.close(code, reason[:120])

    async def send_now(self, message: dict[str, Any]) -> None:
        """Send outside the outbox (handshake replies, before the sender runs)."""
        await self.ws.send(encode(message))

    # -- tasks ----------------------------------------------------------------------

    async def _reader(self) -> bool:
        """Read until the stream ends, then drain; False if the client disconnected first.

        After the end, frames are still read (and dropped) so the client's close frame is
        not stuck behind unread audio while the last finals are computed.
        """
        while not self.session.ended:
            await self.driver.readable()
            try:
                message = await asyncio.wait_for(self.ws.recv(), self.config.idle_timeout_s)
            except asyncio.TimeoutError:
                self._limit(
                    "idle_timeout", f"nothing received for {self.config.idle_timeout_s:g} s"
                )
                break
            except ConnectionClosed:
                return False
            await self.on_message(message)
            if not self.session.ended and self.session.audio_ms > self.config.max_session_s * 1000:
                self._limit(
                    "session_too_long", f"stream longer than {self.config.max_session_s:g} s"
                )
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.recv()
        return True

    def _limit(self, code: str, message: str) -> None:
        self.log.info("%s: %s", code, message)
        self.on_limit(code, message)
        self.driver.end("end")

    async def _sender(self) -> None:
        while (message := await self.outbox.get()) is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(encode(message))


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
