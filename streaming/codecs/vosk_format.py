"""Vosk server protocol, pure: parse client text frames and word the replies (no I/O).

Reference: alphacep/vosk-server ``websocket/asr_server.py`` and its test clients. See
docs/compat.md for what is implemented and what is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..audio import AudioFormat
from ..errors import StreamError
from ..events import Final, WordTiming
from ..hotwords import Hotword, HotwordError, from_json

# vosk-server reads VOSK_SAMPLE_RATE with a default of 8000 (telephony models); a client
# that sends no config frame is streaming at that rate.
DEFAULT_SAMPLE_RATE = 8000
IGNORED_CONFIG = ("model", "spk")  # per-stream model choice, speaker model
UNKNOWN_WORD = "[unk]"  # a Vosk grammar's "anything else" entry: no hotword


class VoskProtocolError(Exception):
    """A text frame this protocol cannot accept; the connection is refused with it."""


@dataclass(frozen=True)
class VoskOptions:
    sample_rate: int = DEFAULT_SAMPLE_RATE
    words: bool = True  # vosk-server's VOSK_SHOW_WORDS default
    max_alternatives: int = 0
    hotwords: tuple[Hotword, ...] = ()  # from phrase_list


@dataclass(frozen=True)
class Configure:
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Eof:
    pass


@dataclass(frozen=True)
class Reset:
    pass


Command = Configure | Eof | Reset


def parse_text(text: str) -> Command:
    """``{"config": {...}}``, ``{"eof": 1}`` or ``{"reset": 1}``, with any spacing.

    vosk-server compares ``{"eof" : 1}`` as an exact string; clients that format it
    differently would hang there, so the frame is read as JSON instead.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise VoskProtocolError("text frame is not JSON; expected config, eof or reset") from None
    if not isinstance(data, dict):
        raise VoskProtocolError("text frame must be a JSON object")
    if "config" in data:
        config = data["config"]
        if not isinstance(config, dict):
            raise VoskProtocolError('"config" must be an object')
        return Configure(config)
    if data.get("eof"):
        return Eof()
    if data.get("reset"):
        return Reset()
    raise VoskProtocolError("unknown text frame; expected config, eof or reset")


def apply_config(options: VoskOptions, config: Mapping[str, Any]) -> VoskOptions:
    """The options after one config frame; unsupported values raise VoskProtocolError."""
    changes: dict[str, Any] = {}
    if "sample_rate" in config:
        changes["sample_rate"] = _sample_rate(config["sample_rate"])
    if "words" in config:
        changes["words"] = bool(config["words"])
    if "max_alternatives" in config:
        value = config["max_alternatives"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise VoskProtocolError("max_alternatives must be an integer")
        try:
            count = int(value)
        except ValueError:
            raise VoskProtocolError("max_alternatives must be an integer") from None
        if count < 0:
            raise VoskProtocolError("max_alternatives must be >= 0")
        changes["max_alternatives"] = count
    if "phrase_list" in config:
        changes["hotwords"] = _phrase_list(config["phrase_list"])
    return replace(options, **changes)


def _phrase_list(value: object) -> tuple[Hotword, ...]:
    """vosk-server's ``phrase_list`` (a Kaldi grammar: only these phrases may be said) is
    read as hotwords: the phrases are favoured, other words stay possible. ``[unk]`` is
    skipped; an entry may also be ``{"phrase", "weight"}`` as in the native protocol."""
    if isinstance(value, list):
        value = [entry for entry in value if entry != UNKNOWN_WORD]
    try:
        return from_json(value)
    except HotwordError as exc:
        raise VoskProtocolError(f"phrase_list: {exc}") from None


def _sample_rate(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise VoskProtocolError("sample_rate must be a number")
    try:
        rate = float(value)
    except ValueError:
        raise VoskProtocolError("sample_rate must be a number") from None
    if not rate.is_integer():
        raise VoskProtocolError(f"sample_rate {rate:g} is not a whole number of Hz")
    try:
        return AudioFormat(int(rate)).sample_rate
    except StreamError as exc:
        raise VoskProtocolError(exc.message) from None


# -- server → client ----------------------------------------------------------------


def partial(text: str) -> dict[str, Any]:
    return {"partial": text}


def result(finals: Sequence[Final], options: VoskOptions) -> dict[str, Any]:
    """One Vosk result for ``finals`` (several merge into one, e.g. at eof).

    Times are seconds from the start of the stream, as Vosk reports them; ``result`` is
    present only when there are words, so silence gives ``{"text": ""}``.
    """
    words = [w for final in finals for w in final.words]
    text = " ".join(final.text for final in finals if final.text)
    if options.max_alternatives > 0:
        alternative: dict[str, Any] = {"confidence": _mean_conf(words)}
        if options.words and words:
            alternative["result"] = [_timed(w) for w in words]
        alternative["text"] = text
        return {"alternatives": [alternative]}
    if options.words and words:
        return {"result": [{"conf": w.conf, **_timed(w)} for w in words], "text": text}
    return {"text": text}


def _timed(word: WordTiming) -> dict[str, Any]:
    return {"end": word.end_ms / 1000, "start": word.start_ms / 1000, "word": word.word}


def _mean_conf(words: Sequence[WordTiming]) -> float:
    return round(sum(w.conf for w in words) / len(words), 3) if words else 0.0
