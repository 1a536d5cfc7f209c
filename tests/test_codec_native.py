"""The native codec: every malformed frame gets a precise error code; messages in, wire
messages out (no socket); the codec registry."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from codec_harness import Harness
from hypothesis import given
from hypothesis import strategies as st

from streaming.audio import AudioFormat
from streaming.codecs import (
    CODECS,
    DeepgramCodec,
    NativeCodec,
    VoskCodec,
    WhisperLiveCodec,
    root_protocols,
    stream_paths,
)
from streaming.codecs import native_format as protocol
from streaming.codecs.base import encode
from streaming.config import ROOT_PROTOCOLS, ServerConfig
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


# -- the codec, fed without a socket ---------------------------------------------------


async def test_native_codec_opens_with_ready_and_answers_start() -> None:
    h = Harness(NativeCodec)
    assert await h.codec.open()
    await h.codec.on_message('{"type": "start", "sample_rate": 8000, "encoding": "pcm_f32le"}')
    ready, started = h.take()
    assert ready["type"] == "ready" and ready["session_id"] == h.session_id
    assert ready["model"] == "test-model"
    assert started == {"type": "started", "sample_rate": 8000, "encoding": "pcm_f32le"}
    assert h.session.format == AudioFormat(8000, "pcm_f32le")


async def test_native_codec_raises_stream_errors_for_the_endpoint_to_answer() -> None:
    h = Harness(NativeCodec, config=ServerConfig(max_frame_bytes=100))
    with pytest.raises(StreamError) as bad_json:
        await h.codec.on_message("{nope")
    assert bad_json.value.code == "invalid_json"
    with pytest.raises(StreamError) as too_large:
        await h.codec.on_message(b"\0" * 102)
    assert too_large.value.code == "frame_too_large" and "102 bytes" in too_large.value.message
    assert h.codec.error("invalid_json", "why", fatal=False) == {
        "type": "error", "code": "invalid_json", "message": "why", "fatal": False,
    }  # fmt: skip


async def test_native_codec_feeds_audio_and_ends_then_refuses_text_after_end() -> None:
    h = Harness(NativeCodec)
    await h.codec.on_message(b"\0" * 3200)
    assert h.session.audio_ms == 100
    await h.codec.on_message('{"type": "flush"}')
    await h.codec.on_message('{"type": "end"}')
    assert h.session.ended
    with pytest.raises(StreamError) as after:
        await h.codec.on_message('{"type": "flush"}')
    assert after.value.code == "after_end"
    with pytest.raises(StreamError) as audio_after:
        await h.codec.on_message(b"\0" * 320)
    assert audio_after.value.code == "after_end"


def test_native_codec_keys_partials_by_utterance_so_a_newer_one_replaces_it() -> None:
    h = Harness(NativeCodec)
    word = WordTiming("hi", 0, 100, 0.9, False)
    h.codec.on_events(
        [Partial(4, "", "hi", 0, 100, (word,)), Final(4, "hi", 0, 100, 200, (word,), "vad")]
    )
    (partial, partial_key), (final, final_key) = h.queued
    assert partial["type"] == "partial" and partial_key == ("partial", 4)
    assert final["type"] == "final" and final_key is None


def test_native_codec_limit_is_a_fatal_error_and_a_policy_close() -> None:
    h = Harness(NativeCodec)
    h.codec.on_limit("idle_timeout", 60.0)
    assert h.errors == [("idle_timeout", "no message for 60 s; ending the stream", True)]
    assert h.messages[0]["fatal"] is True and h.close == (1008, "idle_timeout")
    h.codec.on_limit("session_too_long", 3.5)
    assert h.errors[-1][1] == "stream longer than the limit of 3.5 s"


def test_native_codec_declarations() -> None:
    assert NativeCodec.paths == ("/v1/stream",) and NativeCodec.root
    assert NativeCodec.answers_after_end
    assert NativeCodec.supports_resume and NativeCodec.supports_hotwords
    assert NativeCodec.handshake_refusal("/v1/stream?x=1") is None
    full = NativeCodec.full_reply("server full: 2 sessions in use")
    assert full is not None and full.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert json.loads(full.body) == {"error": "server full: 2 sessions in use"}


def test_registry_maps_every_path_and_root_protocol() -> None:
    assert root_protocols() == ROOT_PROTOCOLS
    assert stream_paths() == {
        "/": NativeCodec,
        "/v1/stream": NativeCodec,
        "/vosk": VoskCodec,
        "/whisperlive": WhisperLiveCodec,
        "/v1/listen": DeepgramCodec,
    }
    assert stream_paths("vosk")["/"] is VoskCodec
    assert [codec.name for codec in CODECS] == ["native", "vosk", "whisperlive", "deepgram"]
    with pytest.raises(ValueError):
        stream_paths("deepgram")
