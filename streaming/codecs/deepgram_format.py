"""Deepgram live transcription messages, pure: client control frames and server messages.

Times are seconds of stream audio (floats), as Deepgram reports them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..events import Final, Partial, WordTiming

CHANNEL = [0, 1]  # [channel index, number of channels]


@dataclass(frozen=True)
class StreamInfo:
    """What every Results and the closing Metadata say about the request and model."""

    request_id: str
    model_name: str
    created: str

    @property
    def model_uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wav2vec2-streaming:{self.model_name}"))

    @property
    def model_info(self) -> dict[str, str]:
        return {"name": self.model_name, "version": __version__, "arch": "wav2vec2-ctc"}


# -- client → server ----------------------------------------------------------------


class ControlError(Exception):
    """A text frame that is not a control message; answered with an ``Error`` message."""


@dataclass(frozen=True)
class Control:
    kind: str  # KeepAlive | Finalize | CloseStream | Configure
    keyterms: bool = False


CONTROL_TYPES = ("KeepAlive", "Finalize", "CloseStream", "Configure")


def parse_control(text: str) -> Control:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ControlError("text frame is not valid JSON") from None
    if not isinstance(data, dict) or data.get("type") not in CONTROL_TYPES:
        raise ControlError("expected a message of type " + ", ".join(CONTROL_TYPES))
    return Control(data["type"], keyterms=data.get("keyterms") is not None)


# -- server → client ----------------------------------------------------------------


def results(
    event: Partial | Final,
    info: StreamInfo,
    *,
    speech_final: bool = False,
    from_finalize: bool = False,
    punctuated_words: bool = False,
) -> dict[str, Any]:
    is_final = isinstance(event, Final)
    end_ms = event.audio_ms
    words = [_word(w, punctuated_words) for w in event.words]
    message: dict[str, Any] = {
        "type": "Results",
        "channel_index": CHANNEL,
        "duration": _s(max(end_ms - event.start_ms, 0)),
        "start": _s(event.start_ms),
        "is_final": is_final,
        "speech_final": speech_final and is_final,
        "channel": {
            "alternatives": [
                {"transcript": event.text, "confidence": _confidence(event.words), "words": words}
            ]
        },
        "metadata": {
            "request_id": info.request_id,
            "model_info": info.model_info,
            "model_uuid": info.model_uuid,
        },
    }
    if is_final:
        message["from_finalize"] = from_finalize
    return message


def speech_started(start_ms: int) -> dict[str, Any]:
    return {"type": "SpeechStarted", "channel": CHANNEL, "timestamp": _s(start_ms)}


def utterance_end(last_word_end_ms: int) -> dict[str, Any]:
    return {"type": "UtteranceEnd", "channel": CHANNEL, "last_word_end": _s(last_word_end_ms)}


def metadata(info: StreamInfo, audio_ms: int, sha256: str) -> dict[str, Any]:
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": info.request_id,
        "sha256": sha256,
        "created": info.created,
        "duration": _s(audio_ms),
        "channels": 1,
        "models": [info.model_uuid],
        "model_info": {info.model_uuid: info.model_info},
    }


def error(variant: str, description: str, message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Error", "variant": variant, "description": description}
    if message is not None:
        out["message"] = message
    return out


def configure_reply(info: StreamInfo, control: Control) -> dict[str, Any]:
    """Keyterms cannot bias a CTC greedy decoder; formatting features are ignored, as
    the matching query parameters are."""
    if control.keyterms:
        return {
            "type": "ConfigureFailure",
            "request_id": info.request_id,
            "code": "CONFIGURE_KEYTERMS_NOT_SUPPORTED",
            "description": "this server's model does not support keyterms",
        }
    return {"type": "ConfigureSuccess", "request_id": info.request_id}


def _word(word: WordTiming, punctuated: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "word": word.word,
        "start": _s(word.start_ms),
        "end": _s(word.end_ms),
        "confidence": word.conf,
    }
    if punctuated:
        out["punctuated_word"] = word.word
    return out


def _confidence(words: Sequence[WordTiming]) -> float:
    return round(sum(w.conf for w in words) / len(words), 3) if words else 0.0


def _s(ms: int) -> float:
    return round(ms / 1000, 3)
