"""WhisperLive protocol, pure: read the options frame and word the server messages.

Reference: collabora/WhisperLive ``whisper_live/server.py``, ``backend/base.py`` and
``client.py``. See docs/compat.md for what is implemented and what is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..events import Final, Partial
from ..hotwords import Hotword, HotwordError, from_json

END_OF_AUDIO = b"END_OF_AUDIO"
# The stock client builds its transcript and writes its .srt only when the server says it
# runs "faster_whisper"; any other name leaves an unmodified client with no captions.
BACKEND = "faster_whisper"
DEFAULT_LAST_N_SEGMENTS = 10


class OptionsError(Exception):
    """The first frame is not usable; ``uid`` is echoed back if the frame had one."""

    def __init__(self, message: str, uid: Any = None) -> None:
        super().__init__(message)
        self.uid = uid


@dataclass(frozen=True)
class Options:
    uid: Any
    send_last_n_segments: int = DEFAULT_LAST_N_SEGMENTS
    translate: bool = False
    language: str | None = None
    hotwords: tuple[Hotword, ...] = ()


def parse_options(frame: str | bytes) -> Options:
    """The client's first frame: JSON with ``uid``; every other field is optional."""
    try:
        data = json.loads(frame)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise OptionsError("the first frame must be a JSON object of options") from None
    if not isinstance(data, dict):
        raise OptionsError("the first frame must be a JSON object of options")
    uid = data.get("uid")
    if not isinstance(uid, str | int) or isinstance(uid, bool) or uid == "":
        raise OptionsError('options need a "uid" (string)', uid)
    last_n = data.get("send_last_n_segments", DEFAULT_LAST_N_SEGMENTS)
    if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
        last_n = DEFAULT_LAST_N_SEGMENTS
    language = data.get("language")
    return Options(
        uid=uid,
        send_last_n_segments=last_n,
        translate=data.get("task") == "translate" or bool(data.get("enable_translation")),
        language=language if isinstance(language, str) else None,
        hotwords=_hotwords(data.get("hotwords"), uid),
    )


def _hotwords(value: object, uid: Any) -> tuple[Hotword, ...]:
    """``hotwords``: not sent by the stock client (its options have no such field), but
    faster-whisper's ``hotwords`` option is a string, so a comma-separated string of
    phrases is read, as is a list like the native protocol's."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [phrase for phrase in value.split(",") if phrase.strip()]
    try:
        return from_json(value)
    except HotwordError as exc:
        raise OptionsError(f"hotwords: {exc}", uid) from None


# -- server → client ----------------------------------------------------------------


def server_ready(uid: Any) -> dict[str, Any]:
    return {"uid": uid, "message": "SERVER_READY", "backend": BACKEND}


def status(uid: Any, kind: str, message: Any) -> dict[str, Any]:
    """``WAIT`` (message = minutes), ``ERROR`` or ``WARNING`` (message = text)."""
    return {"uid": uid, "status": kind, "message": message}


def disconnect(uid: Any) -> dict[str, Any]:
    return {"uid": uid, "message": "DISCONNECT"}


def segments(uid: Any, segment_list: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"uid": uid, "segments": list(segment_list)}


def segment(start_ms: int, end_ms: int, text: str, *, completed: bool) -> dict[str, Any]:
    """Times are strings with three decimals, as WhisperLive formats them.

    Text starts with a space like Whisper's segment text: the stock client joins segments
    with ``""`` for display.
    """
    return {
        "start": f"{start_ms / 1000:.3f}",
        "end": f"{max(end_ms, start_ms) / 1000:.3f}",
        "text": f" {text}" if text else "",
        "completed": completed,
    }


def completed_segment(final: Final, not_before_ms: int) -> dict[str, Any]:
    """A finished utterance; its start never precedes the previous segment's end, since
    the stock client drops a completed segment that starts before the last one ended."""
    start = max(final.start_ms, not_before_ms)
    end = max(final.end_ms, max((w.end_ms for w in final.words), default=0))
    return segment(start, end, final.text, completed=True)


def live_segment(partial: Partial, not_before_ms: int) -> dict[str, Any]:
    return segment(
        max(partial.start_ms, not_before_ms), partial.audio_ms, partial.text, completed=False
    )
