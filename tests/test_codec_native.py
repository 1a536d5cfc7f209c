"""Native protocol parsing: every malformed frame gets a precise error code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.codecs import native_format as protocol
from streaming.codecs.base import encode
from streaming.errors import StreamError
from streaming.events import Final, Partial, WordTiming


def code_of(text: str) -> str:
    with pytest.raises(StreamError) as info:
        protocol.parse_client_text(text)
    return info.value.code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"start"', "invalid_message"),
        ('{"sample_rate": 16000}', "invalid_message"),
        ('{"type": 5}', "invalid_message"),
        ('{"type": "begin"}', "unknown_type"),
        ('{"type": "start", "sample_rate": "16000"}', "invalid_field"),
        ('{"type": "start", "sample_rate": true}', "invalid_field"),
        ('{"type": "start", "sample_rate": 96000}', "unsupported_sample_rate"),
        ('{"type": "start", "encoding": "mp3"}', "unsupported_encoding"),
        ('{"type": "start", "encoding": 1}', "invalid_field"),
        ('{"type": "start", "channels": 2}', "unsupported_channels"),
        ('{"type": "start", "bogus": 1}', "invalid_field"),
        ('{"type": "flush", "now": true}', "invalid_field"),
        ("[" * 100000, "invalid_json"),
    ],
)
def test_bad_client_text_gets_a_precise_error_code(text: str, code: str) -> None:
    assert code_of(text) == code


def test_start_accepts_every_supported_rate_and_encoding() -> None:
    for rate in (8000, 16000, 32000, 44100, 48000):
        for encoding in ("pcm_s16le", "pcm_f32le"):
            message = protocol.parse_client_text(
                json.dumps({"type": "start", "sample_rate": rate, "encoding": encoding})
            )
            assert isinstance(message, protocol.Start)
            assert (message.format.sample_rate, message.format.encoding) == (rate, encoding)


def test_flush_and_end_parse() -> None:
    assert isinstance(protocol.parse_client_text('{"type":"flush"}'), protocol.Flush)
    assert isinstance(protocol.parse_client_text('{"type": "end"}'), protocol.End)


@given(st.text(max_size=200))
def test_any_text_either_parses_or_raises_stream_error(text: str) -> None:
    try:
        protocol.parse_client_text(text)
    except StreamError as exc:
        assert exc.code and exc.message


def test_events_encode_to_documented_shapes() -> None:
    word = WordTiming("hi", 100, 300, 0.9, True)
    partial = protocol.event_message(Partial(3, "hi", "there", 80, 900, (word,)))
    assert partial["type"] == "partial" and partial["text"] == "hi there"
    assert partial["words"][0] == {
        "word": "hi", "start_ms": 100, "end_ms": 300, "conf": 0.9, "committed": True,
    }  # fmt: skip
    final = protocol.event_message(Final(3, "hi", 80, 400, 900, (word,), "vad"))
    assert set(final) == {
        "type", "utterance_id", "text", "start_ms", "end_ms", "audio_ms", "words", "reason",
    }  # fmt: skip
    assert "committed" not in final["words"][0]
    json.loads(encode(final))
