"""A codec under test without a socket: messages in, queued messages and driver calls out.

``Harness`` stands in for the endpoint (the codec's ``Stream``): it records what the codec
queues, sends at once, answers as an error, and how it would close. The session and its
driver are real (webrtcvad replaced by the loud-is-speech fake); the driver is not started,
so no engine runs and events reach the codec only when a test hands them over.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Hashable
from typing import Any

from fakes import GEOMETRY, VOCAB, loud_detector

from streaming.codecs.base import Codec, Message
from streaming.config import ServerConfig
from streaming.driver import SessionDriver
from streaming.engine import Engine
from streaming.session import Session


class NoEngine:
    """The driver is never started in these tests: nothing may reach an engine."""

    def submit(self, samples: Any, key: Any = None) -> Any:
        raise AssertionError("no inference in codec unit tests")


class Harness:
    def __init__(
        self,
        codec_type: type[Codec],
        *,
        path: str = "/",
        frames: list[str | bytes] | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.session = Session(
            VOCAB, GEOMETRY, self.config.vad, self.config.window, detector_factory=loud_detector
        )
        self.session_id = "0123456789ab"
        self.model_name = "test-model"
        self.request_path = path
        self.log = logging.LoggerAdapter(logging.getLogger("tests.codec"), {})
        self.frames: deque[str | bytes] = deque(frames or [])
        self.queued: list[tuple[Message, Hashable | None]] = []
        self.sent_now: list[Message] = []
        self.errors: list[tuple[str, str, bool]] = []
        self.close: tuple[int, str] = (1000, "")
        self.refused: tuple[int, str] | None = None
        self.codec = codec_type(self)
        engine: Engine = NoEngine()  # type: ignore[assignment]
        self._driver = SessionDriver(self.session, engine, self.config, self.codec.on_events)

    @property
    def driver(self) -> SessionDriver:
        return self._driver

    @property
    def messages(self) -> list[Message]:
        return [message for message, _ in self.queued]

    def take(self) -> list[Message]:
        """The queued messages, emptying the queue."""
        out = self.messages
        self.queued.clear()
        return out

    # -- the Stream protocol ----------------------------------------------------------------

    def put(self, message: Message, key: Hashable | None = None) -> None:
        self.queued.append((message, key))

    def send_error(self, code: str, message: str, *, fatal: bool) -> None:
        self.errors.append((code, message, fatal))
        reply = self.codec.error(code, message, fatal=fatal)
        if reply is not None:
            self.queued.append((reply, None))

    def close_with(self, code: int, reason: str) -> None:
        self.close = (code, reason)

    async def send_now(self, message: Message) -> None:
        self.sent_now.append(message)

    async def receive(self, timeout: float) -> str | bytes:
        if not self.frames:
            raise asyncio.TimeoutError
        return self.frames.popleft()

    async def refuse(self, code: int, reason: str) -> None:
        self.refused = (code, reason[:120])


class RecordingSocket:
    """A socket for a codec's full-server answer: frames in, what it sent and the close."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self.frames = deque(frames)
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes:
        if not self.frames:
            await asyncio.sleep(3600)
        return self.frames.popleft()

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
