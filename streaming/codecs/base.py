"""What a protocol codec is, and what it may ask of the connection it serves.

A codec turns one protocol's wire messages into driver calls and the driver's events into
that protocol's wire messages. Everything else about a connection (the receive loop, idle
and length limits, the outbox and its back-pressure, encoding, closing and draining) is the
endpoint's (``streaming.endpoint``), the same for every protocol. A codec also declares, as
class attributes and class methods, what the HTTP layer needs before a socket opens: its
URL paths, its refusal of a bad handshake, and its answer when the server is full.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar, Protocol

from ..config import ServerConfig
from ..driver import SessionDriver
from ..events import Event
from ..session import Session

Message = dict[str, Any]


def encode(message: Message) -> str:
    """Every protocol's messages are compact JSON text frames."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class HttpReply:
    """A plain HTTP answer instead of a websocket (a refusal, /health, a page)."""

    status: HTTPStatus
    body: str | bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: HTTPStatus, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> HttpReply:
        return cls(status, json.dumps(body) + "\n", "application/json", dict(headers or {}))


class Socket(Protocol):
    """The part of a websocket a codec's full-server answer uses (before any session)."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Stream(Protocol):
    """What the endpoint offers the codec of one connection."""

    session: Session
    config: ServerConfig
    session_id: str
    model_name: str
    request_path: str  # with the query string
    log: logging.LoggerAdapter[logging.Logger]

    @property
    def driver(self) -> SessionDriver: ...

    def put(self, message: Message, key: Hashable | None = None) -> None:
        """Queue a message; one with a ``key`` replaces an unsent one with the same key."""

    def send_error(self, code: str, message: str, *, fatal: bool) -> None:
        """Count, log and queue a client error, spelled by the codec's ``error``."""

    def close_with(self, code: int, reason: str) -> None:
        """The close code and reason once the stream is over."""

    async def send_now(self, message: Message) -> None:
        """Send at once, outside the outbox (handshake replies, before the sender runs)."""

    async def receive(self, timeout: float) -> str | bytes:
        """The next client frame (raises TimeoutError, or ConnectionClosed)."""

    async def refuse(self, code: int, reason: str) -> None:
        """Close at once, sending nothing more (a protocol-level refusal)."""


class Codec(abc.ABC):
    """One protocol's wire format over one connection; subclasses override the hooks.

    Class-level declarations (read by the HTTP layer and the registry):
    ``name`` (``--protocol`` and logs), ``paths`` (URL paths it serves), ``root`` (may be
    put on "/" with ``--protocol``), ``answers_after_end`` (frames after the end of the
    stream are still handed to ``on_message``, to be answered; else they are read and
    dropped), ``supports_resume`` and ``supports_hotwords``.
    """

    name: ClassVar[str] = "codec"
    paths: ClassVar[tuple[str, ...]] = ()
    root: ClassVar[bool] = False
    answers_after_end: ClassVar[bool] = False
    supports_resume: ClassVar[bool] = False
    supports_hotwords: ClassVar[bool] = False

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.session = stream.session
        self.config = stream.config
        self.log = stream.log

    @property
    def driver(self) -> SessionDriver:
        return self.stream.driver

    # -- before the websocket opens -------------------------------------------------------

    @classmethod
    def handshake_refusal(cls, path: str) -> HttpReply | None:
        """This protocol's HTTP refusal of a handshake (``path`` has the query), or None."""
        return None

    @classmethod
    def full_reply(cls, message: str) -> HttpReply | None:
        """The answer when the server is full: an HTTP reply, or None to accept the
        handshake and answer in the protocol with ``answer_full``."""
        return HttpReply.json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})

    @classmethod
    async def answer_full(cls, socket: Socket, timeout: float) -> None:
        """In-protocol "server full" answer on an accepted socket (see ``full_reply``)."""
        await socket.close(1013, "server full")

    # -- one connection -------------------------------------------------------------------

    async def open(self) -> bool:
        """Protocol handshake after the websocket one; False = refused (socket closed)."""
        return True

    @abc.abstractmethod
    async def on_message(self, message: str | bytes) -> None:
        """One client frame; a StreamError raised here is answered with ``error``."""

    @abc.abstractmethod
    def on_events(self, events: list[Event]) -> None:
        """Partials, finals, errors and lag notices from the session (synchronous)."""

    def error(self, code: str, message: str, *, fatal: bool) -> Message | None:
        """How this protocol spells a client error; None: it has no error message."""
        return None

    def on_limit(self, code: str, limit_s: float) -> None:
        """A server limit (``idle_timeout``, ``session_too_long``) ends the stream;
        default: a policy close naming the limit."""
        self.stream.close_with(1008, code)

    def on_shutdown(self) -> None:
        """The server is stopping; the stream ends with reason ``shutdown``."""
        return None

    def on_finished(self) -> None:
        """Every final is out; queue whatever the protocol sends before closing."""
        return None


def limit_text(code: str, limit_s: float) -> str:
    """The plain wording of a limit, for protocols that put it in a close reason."""
    if code == "idle_timeout":
        return f"nothing received for {limit_s:g} s"
    return f"stream longer than {limit_s:g} s"
