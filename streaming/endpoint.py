"""One websocket connection, whatever its protocol: the lifecycle around one session driver.

Three sibling tasks per connection: the reader (frames → codec → driver), the driver's
inference loop (windows → shared engine → events → codec → outbox) and the sender (outbox
→ socket). Reading pauses while the session owes the engine more than ``backlog_high_s`` of
audio, which pushes back on the client through TCP instead of buffering without bound.
When the stream has ended and every final is out, the codec's last messages are sent and
the socket is closed. The codec (``streaming.codecs``) only translates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .codecs.base import Codec, Message, encode
from .config import ServerConfig
from .driver import SessionDriver
from .engine import Engine
from .errors import StreamError
from .metrics import Metrics
from .outbox import Outbox
from .rescoring import FinalRescorer
from .resume import TokenSigner
from .session import Session

log = logging.getLogger(__name__)

SHUTDOWN = (1001, "server shutting down")


@dataclass(frozen=True)
class StreamContext:
    """What the server hands every accepted websocket."""

    ws: ServerConnection
    session: Session
    engine: Engine
    config: ServerConfig
    session_id: str
    model_name: str
    metrics: Metrics
    rescorer: FinalRescorer | None = None
    signer: TokenSigner | None = None  # signs resume tokens (codecs that support resume)


class Endpoint:
    """Serves one connection with ``codec_type`` until the client ends the stream,
    disconnects, a limit is reached, or the server shuts down. It is the codec's ``Stream``."""

    def __init__(self, ctx: StreamContext, codec_type: type[Codec]) -> None:
        self.ws = ctx.ws
        self.session = ctx.session
        self.config = ctx.config
        self.session_id = ctx.session_id
        self.model_name = ctx.model_name
        self.metrics = ctx.metrics
        self.signer = ctx.signer
        assert ctx.ws.request is not None
        self.request_path = ctx.ws.request.path
        self.log = logging.LoggerAdapter(log, {"session": ctx.session_id})
        self.outbox = Outbox()
        self.close_code, self.close_reason = 1000, ""
        self._finished = asyncio.Event()
        self.codec = codec_type(self)
        self._driver = SessionDriver(
            ctx.session, ctx.engine, ctx.config, self.codec.on_events, ctx.metrics,
            rescorer=ctx.rescorer,
        )  # fmt: skip

    @property
    def driver(self) -> SessionDriver:
        return self._driver

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self.codec.open():
                return
            self.driver.start()
            reader = asyncio.create_task(self._reader(), name=f"read-{self.session_id}")
            finished = asyncio.create_task(self.driver.finished(), name=f"fin-{self.session_id}")
            sender = asyncio.create_task(self._sender(), name=f"send-{self.session_id}")
            tasks = [reader, finished, sender]
            await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
            # A client that disconnected first gets nothing more.
            if finished.done() or reader.result():
                await finished
                self.codec.on_finished()
                self.outbox.close()
                await sender
                await self.ws.close(self.close_code, self.close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._finished.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.driver.aclose()
            self.log.info(
                "%s session closed: %d ms of audio, %d windows, %d finals",
                self.codec.name,
                self.session.audio_ms,
                self.session.windows_requested,
                self.session.finals_sent,
            )

    async def shutdown(self, grace: float) -> None:
        """Server is stopping: finalize open utterances, send finals, close with 1001."""
        self.close_code, self.close_reason = SHUTDOWN
        self.codec.on_shutdown()
        self.driver.end("shutdown")
        try:
            await asyncio.wait_for(self._finished.wait(), grace)
        except asyncio.TimeoutError:
            self.log.warning("shutdown grace period over; closing with work pending")
            await self.ws.close(*SHUTDOWN)

    # -- what a codec may do (the Stream protocol) ----------------------------------------

    def put(self, message: Message, key: Hashable | None = None) -> None:
        self.outbox.put(message, key)

    def send_error(self, code: str, message: str, *, fatal: bool) -> None:
        self.metrics.errors.labels(code).inc()
        self.log.info("client error %s: %s", code, message)
        reply = self.codec.error(code, message, fatal=fatal)
        if reply is not None:
            self.outbox.put(reply)

    def close_with(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason

    async def send_now(self, message: Message) -> None:
        await self.ws.send(encode(message))

    async def receive(self, timeout: float) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def refuse(self, code: int, reason: str) -> None:
        self.log.info("%s refused: %s", self.codec.name, reason)
        await self.ws.close(code, reason[:120])

    # -- tasks ----------------------------------------------------------------------------

    async def _reader(self) -> bool:
        """Read until the stream ends, then drain; False if the client disconnected first.

        Codecs that answer frames after the end keep getting them; for the others, frames
        are read and dropped so the client's close frame is not stuck behind unread audio
        while the last finals are computed.
        """
        config = self.config
        while self.codec.answers_after_end or not self.session.ended:
            await self.driver.readable()
            try:
                message = await asyncio.wait_for(self.ws.recv(), config.idle_timeout_s)
            except asyncio.TimeoutError:
                self._limit("idle_timeout", config.idle_timeout_s)
                break
            except ConnectionClosed:
                return False
            try:
                await self.codec.on_message(message)
            except StreamError as exc:
                self.send_error(exc.code, exc.message, fatal=exc.fatal)
            if not self.session.ended and self.session.audio_ms > config.max_session_s * 1000:
                self._limit("session_too_long", config.max_session_s)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.recv()
        return True

    def _limit(self, code: str, limit_s: float) -> None:
        self.log.info("limit reached: %s (%g s)", code, limit_s)
        self.codec.on_limit(code, limit_s)
        self.driver.end("end")

    async def _sender(self) -> None:
        while (message := await self.outbox.get()) is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(encode(message))
