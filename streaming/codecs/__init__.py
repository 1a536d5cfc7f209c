"""Protocol codecs: one module per wire protocol, all served by the same endpoint and engine.

``native`` (docs/protocol.md) on ``/v1/stream``; the compatible ones (docs/compat.md):
``vosk`` on ``/vosk``, ``whisperlive`` on ``/whisperlive``, ``deepgram`` on ``/v1/listen``.
"/" speaks the protocol chosen with ``--protocol`` (stock Vosk and WhisperLive clients
connect there). A new protocol is one module with a ``Codec`` subclass, listed in ``CODECS``.
"""

from __future__ import annotations

from .base import Codec
from .deepgram import DeepgramCodec
from .native import NativeCodec
from .vosk import VoskCodec
from .whisperlive import WhisperLiveCodec

# The registry: every protocol the server speaks.
CODECS: tuple[type[Codec], ...] = (NativeCodec, VoskCodec, WhisperLiveCodec, DeepgramCodec)


def by_name(name: str) -> type[Codec]:
    for codec in CODECS:
        if codec.name == name:
            return codec
    raise KeyError(f"no protocol named {name!r}")


def root_protocols() -> tuple[str, ...]:
    """The protocols ``--protocol`` may put on "/"."""
    return tuple(codec.name for codec in CODECS if codec.root)


def stream_paths(root: str = "native") -> dict[str, type[Codec]]:
    """URL path → codec; ``root`` names the protocol "/" speaks."""
    codec = by_name(root)
    if not codec.root:
        raise ValueError(f"{root} cannot be served on /")
    return {"/": codec, **{path: c for c in CODECS for path in c.paths}}


__all__ = [
    "CODECS",
    "Codec",
    "DeepgramCodec",
    "NativeCodec",
    "VoskCodec",
    "WhisperLiveCodec",
    "by_name",
    "root_protocols",
    "stream_paths",
]
