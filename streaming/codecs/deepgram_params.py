"""Deepgram live transcription (``/v1/listen``): query parameters and credentials, pure.

Reference: Deepgram's streaming API documentation and the ``deepgram-sdk`` listen v1
client. Parameters this engine cannot honour (model, language, diarize, ...) are accepted
and ignored; parameters that would make the audio undecodable are refused, and so are
``keywords``/``keyterm`` lists the decoder could not use (too many, too long, bad boosts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from ..audio import AudioFormat
from ..errors import StreamError
from ..hotwords import DEFAULT_WEIGHT, MAX_WEIGHT, Hotword, HotwordError, hotword, hotword_list
from .base import HttpReply

ENCODINGS = {"linear16": "pcm_s16le", "linear32": "pcm_f32le"}
HONOURED = (
    "encoding",
    "sample_rate",
    "channels",
    "multichannel",
    "interim_results",
    "endpointing",
    "utterance_end_ms",
    "vad_events",
    "punctuate",
    "smart_format",
    "keywords",
    "keyterm",
)


class ParamError(Exception):
    """A query parameter Deepgram would reject with HTTP 400 (the message says which)."""


@dataclass(frozen=True)
class ListenParams:
    format: AudioFormat | None = None  # None: a container (WAV) whose header says it
    interim_results: bool = False
    endpointing: bool = True  # false: speech_final is never set
    utterance_end_ms: int | None = None
    vad_events: bool = False
    punctuated_words: bool = False
    hotwords: tuple[Hotword, ...] = ()  # keywords and keyterm
    ignored: tuple[str, ...] = field(default=())


def parse_params(query: str) -> ListenParams:
    repeated = parse_qs(query, keep_blank_values=True)
    values = {k: v[-1] for k, v in repeated.items()}
    encoding = values.get("encoding")
    fmt = None
    if encoding is not None:
        if encoding not in ENCODINGS:
            raise ParamError(
                f"encoding {encoding[:40]!r} is not supported by this server; use linear16 or "
                "linear32 for raw audio, or omit encoding and send WAV"
            )
        if "sample_rate" not in values:
            raise ParamError("sample_rate is required when encoding is given")
        rate = _integer("sample_rate", values["sample_rate"], 1)
        try:
            fmt = AudioFormat(rate, ENCODINGS[encoding])
        except StreamError as exc:
            raise ParamError(exc.message) from None
    if "channels" in values and _integer("channels", values["channels"], 1) != 1:
        raise ParamError("only mono audio is supported (channels=1)")
    endpointing = values.get("endpointing", "10").lower()
    if endpointing not in ("true", "false"):
        _integer("endpointing", endpointing, 0)
    utterance_end = None
    if "utterance_end_ms" in values:
        utterance_end = _integer("utterance_end_ms", values["utterance_end_ms"], 1)
    punctuate = _boolean(values, "punctuate") or _boolean(values, "smart_format")
    _boolean(values, "multichannel")
    return ListenParams(
        format=fmt,
        interim_results=_boolean(values, "interim_results"),
        endpointing=endpointing != "false",
        utterance_end_ms=utterance_end,
        vad_events=_boolean(values, "vad_events"),
        punctuated_words=punctuate,
        hotwords=_hotwords(repeated.get("keywords", []), repeated.get("keyterm", [])),
        ignored=tuple(sorted(set(values) - set(HONOURED) - {"token"})),
    )


def _hotwords(keywords: list[str], keyterms: list[str]) -> tuple[Hotword, ...]:
    """``keywords=WORD:INTENSIFIER`` (repeatable; the intensifier defaults to 1, negative
    suppresses) and ``keyterm=PHRASE`` (repeatable, weight of intensifier 1). Deepgram's
    intensifier is a boost factor; here it scales the default hotword weight (10 per
    unit), capped at the largest weight (50)."""
    items = []
    try:
        for keyword in keywords:
            word, sep, boost = keyword.rpartition(":")
            if not sep:
                word, boost = keyword, "1"
            try:
                factor = float(boost)
            except ValueError:
                raise ParamError(
                    f"keywords: the intensifier of {word[:30]!r} must be a number, got "
                    f"{boost[:20]!r} (keywords=WORD:INTENSIFIER)"
                ) from None
            if factor != factor or abs(factor) == float("inf"):
                raise ParamError(f"keywords: the intensifier of {word[:30]!r} must be finite")
            weight = max(-MAX_WEIGHT, min(MAX_WEIGHT, DEFAULT_WEIGHT * factor))
            items.append(hotword(word, weight))
        items.extend(hotword(term) for term in keyterms)
        return hotword_list(items)
    except HotwordError as exc:
        raise ParamError(f"{'keyterm' if keyterms else 'keywords'}: {exc}") from None


def _boolean(values: Mapping[str, str], name: str) -> bool:
    value = values.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ParamError(f"{name} must be true or false, got {value[:20]!r}")
    return value == "true"


def _integer(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ParamError(f"{name} must be an integer, got {value[:20]!r}") from None
    if number < minimum:
        raise ParamError(f"{name} must be at least {minimum}")
    return number


def handshake_refusal(path: str) -> HttpReply | None:
    """What Deepgram answers a bad ``/v1/listen`` handshake with: HTTP 400 and why.

    Meant for the server's request hook, so the SDK raises at connect time as it does
    against Deepgram; the endpoint closes with 1008 itself when the hook is not wired.
    """
    try:
        parse_params(urlsplit(path).query)
    except ParamError as exc:
        message = str(exc)
        body = {"err_code": "INVALID_QUERY_PARAMETER", "err_msg": message}
        return HttpReply.json(HTTPStatus.BAD_REQUEST, body, {"dg-error": message})
    return None


def deepgram_token(headers: Mapping[str, str]) -> str | None:
    """The key in ``Authorization: Token <key>``, how Deepgram clients authenticate."""
    header = headers.get("Authorization")
    if header is None:
        return None
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "token" and key else None
