"""Native protocol wire format, pure: parse client text frames, encode server messages (no I/O).

See docs/protocol.md for the message reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import PROTOCOL_VERSION
from ..audio import AudioFormat
from ..config import MODEL_SAMPLE_RATE
from ..errors import StreamError
from ..events import ErrorEvent, Event, Final, Lag, Partial, WordTiming
from ..hotwords import Hotword, HotwordError, from_json


@dataclass(frozen=True)
class Start:
    format: AudioFormat
    hotwords: tuple[Hotword, ...] = ()
    resume: bool = False  # the client wants acks and resume tokens (docs/protocol.md)


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Resume:
    token: str


ClientMessage = Start | Flush | End | Resume

_START_FIELDS = {"type", "sample_rate", "encoding", "channels", "hotwords", "resume"}


def parse_client_text(text: str) -> ClientMessage:
    """One text frame → a message, or a StreamError naming exactly what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
        raise StreamError("invalid_json", f"text frame is not valid JSON: {detail}") from None
    if not isinstance(data, dict):
        raise StreamError("invalid_message", f"expected a JSON object, got {_json_type(data)}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise StreamError("invalid_message", 'message needs a string "type" field')
    if kind == "start":
        return _parse_start(data)
    if kind == "resume":
        return _parse_resume(data)
    if kind in ("flush", "end"):
        extra = sorted(set(data) - {"type"})
        if extra:
            raise StreamError("invalid_field", f"{kind} takes no fields, got {extra}")
        return Flush() if kind == "flush" else End()
    raise StreamError(
        "unknown_type", f"unknown message type {kind[:40]!r}; expected start, flush or end"
    )


def _parse_start(data: dict[str, Any]) -> Start:
    unknown = sorted(set(data) - _START_FIELDS)
    if unknown:
        raise StreamError("invalid_field", f"start has unknown fields {unknown[:5]}")
    rate = data.get("sample_rate", MODEL_SAMPLE_RATE)
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise StreamError(
            "invalid_field", f"sample_rate must be an integer, got {_json_type(rate)}"
        )
    encoding = data.get("encoding", "pcm_s16le")
    if not isinstance(encoding, str):
        raise StreamError("invalid_field", f"encoding must be a string, got {_json_type(encoding)}")
    channels = data.get("channels", 1)
    if channels != 1 or isinstance(channels, bool):
        raise StreamError(
            "unsupported_channels", f"only mono audio is supported, got channels={channels!r}"
        )
    try:
        hotwords = from_json(data.get("hotwords", []))
    except HotwordError as exc:
        raise StreamError("invalid_hotwords", str(exc)) from None
    resume = data.get("resume", False)
    if not isinstance(resume, bool):
        raise StreamError("invalid_field", f"resume must be a boolean, got {_json_type(resume)}")
    return Start(AudioFormat(rate, encoding), hotwords, resume)


def _parse_resume(data: dict[str, Any]) -> Resume:
    unknown = sorted(set(data) - {"type", "token"})
    if unknown:
        raise StreamError("invalid_field", f"resume has unknown fields {unknown[:5]}")
    token = data.get("token")
    if not isinstance(token, str):
        raise StreamError("invalid_field", f"resume needs a string token, got {_json_type(token)}")
    return Resume(token)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "number"


# -- server → client ----------------------------------------------------------------


def ready(session_id: str, model: str) -> dict[str, Any]:
    return {
        "type": "ready",
        "session_id": session_id,
        "model": model,
        "sample_rate": MODEL_SAMPLE_RATE,
        "protocol_version": PROTOCOL_VERSION,
        "input": {"sample_rate": MODEL_SAMPLE_RATE, "encoding": "pcm_s16le"},
    }


def started(fmt: AudioFormat, hotwords: int = 0) -> dict[str, Any]:
    """``hotwords``: how many phrases the finals favour (the field only when some are)."""
    message: dict[str, Any] = {
        "type": "started", "sample_rate": fmt.sample_rate, "encoding": fmt.encoding
    }  # fmt: skip
    if hotwords:
        message["hotwords"] = hotwords
    return message


def error(code: str, message: str, *, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


# -- resume (docs/protocol.md, "Resume") ---------------------------------------------


def ack(offset: int, token: str) -> dict[str, Any]:
    """Audio before input sample ``offset`` is no longer needed to resume with ``token``."""
    return {"type": "ack", "offset": offset, "token": token}


def resumed(stream_id: str, offset: int, fmt: AudioFormat, utterance_id: int) -> dict[str, Any]:
    return {
        "type": "resumed",
        "stream_id": stream_id,
        "offset": offset,
        "sample_rate": fmt.sample_rate,
        "encoding": fmt.encoding,
        "utterance_id": utterance_id,
    }


def moved(offset: int, token: str, message: str) -> dict[str, Any]:
    return {"type": "moved", "offset": offset, "token": token, "message": message}


def event_message(event: Event) -> dict[str, Any]:
    if isinstance(event, Partial):
        return {
            "type": "partial",
            "utterance_id": event.utterance_id,
            "committed": event.committed,
            "tentative": event.tentative,
            "text": event.text,
            "start_ms": event.start_ms,
            "audio_ms": event.audio_ms,
            "words": [_word(w, with_state=True) for w in event.words],
        }
    if isinstance(event, Final):
        return {
            "type": "final",
            "utterance_id": event.utterance_id,
            "text": event.text,
            "start_ms": event.start_ms,
            "end_ms": event.end_ms,
            "audio_ms": event.audio_ms,
            "words": [_word(w, with_state=False) for w in event.words],
            "reason": event.reason,
        }
    if isinstance(event, ErrorEvent):
        return error(event.code, event.message, fatal=event.fatal)
    if isinstance(event, Lag):
        return {
            "type": "lag",
            "state": "behind" if event.behind else "caught_up",
            "lag_ms": event.lag_ms,
            "audio_ms": event.audio_ms,
            "message": event.message,
        }
    raise TypeError(f"not an event: {event!r}")


def _word(word: WordTiming, *, with_state: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "word": word.word,
        "start_ms": word.start_ms,
        "end_ms": word.end_ms,
        "conf": word.conf,
    }
    if with_state:
        out["committed"] = word.committed
    return out
