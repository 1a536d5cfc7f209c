"""Compatibility front ends: third-party streaming protocols served by the same engine.

Each protocol is one ``Endpoint`` class, registered by URL path in ``streaming.server``:
``/vosk`` (Vosk server), ``/whisperlive`` (WhisperLive), ``/v1/listen`` (Deepgram live).
Stock Vosk and WhisperLive clients connect to ``/``, so ``--protocol`` can make ``/``
speak one of them. See docs/compat.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from websockets.asyncio.server import ServerConnection

from ..connection import ConnectionContext, Endpoint
from .deepgram import DeepgramConnection
from .deepgram_params import Refusal, deepgram_token, handshake_refusal
from .vosk import VoskConnection
from .whisperlive import WhisperLiveConnection, send_wait

EndpointFactory = Callable[[ConnectionContext], Endpoint]

# WhisperLive reports minutes until its oldest session times out; sessions here have no
# wall-clock limit, so this is only a retry hint.
WAIT_HINT_MINUTES = 1.0
# What ``--protocol`` puts on "/" (stock Vosk and WhisperLive clients connect there).
ROOT: Mapping[str, EndpointFactory] = MappingProxyType(
    {"vosk": VoskConnection, "whisperlive": WhisperLiveConnection}
)


def endpoints() -> dict[str, EndpointFactory]:
    """URL path → compatibility front end."""
    return {
        "/vosk": VoskConnection,
        "/whisperlive": WhisperLiveConnection,
        "/v1/listen": DeepgramConnection,
    }


def answers_when_full(factory: EndpointFactory) -> bool:
    """WhisperLive clients expect a ``WAIT`` message, not an HTTP 503, when the server is
    full: such a handshake is accepted and answered by ``answer_full``."""
    return factory is WhisperLiveConnection


async def answer_full(ws: ServerConnection, timeout: float) -> None:
    await send_wait(ws, wait_minutes=WAIT_HINT_MINUTES, timeout=timeout)


def request_refusal(path: str) -> Refusal | None:
    """A protocol's own refusal of a handshake, before the websocket opens (or None)."""
    if path.partition("?")[0] == "/v1/listen":
        return handshake_refusal(path)
    return None


__all__ = [
    "ROOT",
    "DeepgramConnection",
    "Refusal",
    "VoskConnection",
    "WhisperLiveConnection",
    "answer_full",
    "answers_when_full",
    "deepgram_token",
    "endpoints",
    "request_refusal",
    "send_wait",
]
