"""Vosk, WhisperLive and Deepgram pure parts: frame parsing, message wording, helpers."""

from __future__ import annotations

import io
import json
import struct
import wave
from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.audio import AudioFormat
from streaming.codecs import deepgram_format as dg
from streaming.codecs import vosk_format as vosk
from streaming.codecs import whisperlive_format as wl
from streaming.codecs.deepgram_params import (
    ListenParams,
    ParamError,
    deepgram_token,
    handshake_refusal,
    parse_params,
)
from streaming.codecs.pcm import SampleAligner
from streaming.codecs.wav import WavError, WavStream
from streaming.events import Final, Partial, WordTiming

HELLO = WordTiming("hello", 500, 900, 0.9, True)
WORLD = WordTiming("world", 950, 1400, 0.7, True)
FINAL = Final(0, "hello world", 400, 1400, 1900, (HELLO, WORLD), "vad")
PARTIAL = Partial(1, "hello", "wor", 2000, 2900, (HELLO,))


# -- Vosk ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ('{"eof" : 1}', vosk.Eof()),
        ('{"eof":1}', vosk.Eof()),
        ('{"reset" : 1}', vosk.Reset()),
        ('{ "config" : { "sample_rate" : 8000 } }', vosk.Configure({"sample_rate": 8000})),
    ],
)
def test_vosk_text_frames(text: str, command: vosk.Command) -> None:
    assert vosk.parse_text(text) == command


@pytest.mark.parametrize("text", ["eof", "[1]", '{"config": 3}', '{"eof": 0}', '{"other": 1}'])
def test_vosk_bad_text_frames(text: str) -> None:
    with pytest.raises(vosk.VoskProtocolError):
        vosk.parse_text(text)


def test_vosk_config_defaults_and_values() -> None:
    options = vosk.VoskOptions()
    assert (options.sample_rate, options.words, options.max_alternatives) == (8000, True, 0)
    changed = vosk.apply_config(
        options, {"sample_rate": 16000.0, "words": 0, "max_alternatives": "2", "phrase_list": []}
    )
    assert changed == vosk.VoskOptions(16000, False, 2)
    for bad in ({"sample_rate": 96000}, {"sample_rate": 16000.5}, {"max_alternatives": -1}):
        with pytest.raises(vosk.VoskProtocolError):
            vosk.apply_config(options, bad)


def test_vosk_results() -> None:
    options = vosk.VoskOptions()
    assert vosk.result([FINAL], options) == {
        "result": [
            {"conf": 0.9, "end": 0.9, "start": 0.5, "word": "hello"},
            {"conf": 0.7, "end": 1.4, "start": 0.95, "word": "world"},
        ],
        "text": "hello world",
    }
    assert vosk.result([], options) == {"text": ""}
    assert vosk.result([FINAL], vosk.VoskOptions(words=False)) == {"text": "hello world"}
    merged = vosk.result([FINAL, FINAL], vosk.VoskOptions(max_alternatives=1))
    assert merged["alternatives"][0]["text"] == "hello world hello world"
    assert merged["alternatives"][0]["confidence"] == 0.8
    assert vosk.partial("hel") == {"partial": "hel"}


# -- WhisperLive --------------------------------------------------------------------


def test_whisperlive_options() -> None:
    assert wl.parse_options('{"uid": "a"}') == wl.Options("a")
    full = wl.parse_options(
        '{"uid": "b", "task": "translate", "send_last_n_segments": 3, "use_vad": false}'
    )
    assert (full.send_last_n_segments, full.translate) == (3, True)
    for frame, uid in (("{}", None), ('{"uid": ""}', ""), ("[]", None), (b"\xff", None)):
        with pytest.raises(wl.OptionsError) as error:
            wl.parse_options(frame)
        assert error.value.uid == uid


def test_whisperlive_segments_have_string_times() -> None:
    done = wl.completed_segment(FINAL, not_before_ms=0)
    assert done == {"start": "0.400", "end": "1.400", "text": " hello world", "completed": True}
    assert wl.completed_segment(FINAL, not_before_ms=600)["start"] == "0.600"
    live = wl.live_segment(PARTIAL, not_before_ms=1400)
    assert live == {"start": "2.000", "end": "2.900", "text": " hello wor", "completed": False}
    assert wl.segments("u", [done, live]) == {"uid": "u", "segments": [done, live]}


# -- Deepgram -----------------------------------------------------------------------


def test_deepgram_params() -> None:
    assert parse_params("") == ListenParams()
    params = parse_params(
        "model=nova-3&encoding=linear32&sample_rate=48000&interim_results=true&endpointing=false"
        "&utterance_end_ms=1000&vad_events=true&smart_format=true&keyterm=a&keyterm=b"
    )
    assert params.format == AudioFormat(48000, "pcm_f32le")
    assert params.interim_results and params.vad_events and params.punctuated_words
    assert not params.endpointing and params.utterance_end_ms == 1000
    assert params.ignored == ("model",)  # keyterm is honoured: hotwords
    assert [h.phrase for h in params.hotwords] == ["a", "b"]
    assert parse_params("encoding=linear16&sample_rate=8000&endpointing=300").endpointing


@pytest.mark.parametrize(
    "query",
    [
        "encoding=mulaw&sample_rate=8000",
        "encoding=linear16",
        "encoding=linear16&sample_rate=96000",
        "encoding=linear16&sample_rate=abc",
        "channels=2",
        "interim_results=yes",
        "utterance_end_ms=0",
        "endpointing=soon",
    ],
)
def test_deepgram_bad_params_get_http_400(query: str) -> None:
    with pytest.raises(ParamError):
        parse_params(query)
    refusal = handshake_refusal(f"/v1/listen?{query}")
    assert refusal is not None and refusal.status == HTTPStatus.BAD_REQUEST
    assert json.loads(refusal.body)["err_msg"] == refusal.headers["dg-error"]


def test_deepgram_token() -> None:
    assert deepgram_token({"Authorization": "Token abc123"}) == "abc123"
    assert deepgram_token({"Authorization": "token  abc123 "}) == "abc123"
    assert deepgram_token({"Authorization": "Bearer abc123"}) is None
    assert deepgram_token({"Authorization": "Token"}) is None
    assert deepgram_token({}) is None


def test_deepgram_results_and_controls() -> None:
    info = dg.StreamInfo("req", "tiny-en", "2026-01-01T00:00:00.000Z")
    final = dg.results(FINAL, info, speech_final=True)
    assert (final["start"], final["duration"], final["is_final"]) == (0.4, 1.5, True)
    assert final["channel"]["alternatives"][0]["confidence"] == 0.8
    interim = dg.results(PARTIAL, info, speech_final=True)
    assert interim["is_final"] is False and interim["speech_final"] is False
    assert "from_finalize" not in interim
    assert dg.parse_control('{"type": "KeepAlive"}') == dg.Control("KeepAlive")
    assert dg.parse_control('{"type":"Configure","keyterms":["x"]}').keyterms
    with pytest.raises(dg.ControlError):
        dg.parse_control('{"type": "Close"}')
    meta = dg.metadata(info, 2500, "abc")
    assert meta["duration"] == 2.5 and meta["models"] == [info.model_uuid]


# -- helpers ------------------------------------------------------------------------


@given(st.binary(max_size=200), st.lists(st.integers(0, 50), max_size=10))
def test_aligner_keeps_every_whole_sample_in_order(data: bytes, cuts: list[int]) -> None:
    aligner = SampleAligner(4)
    out, position = b"", 0
    for size in [*cuts, len(data)]:
        chunk = aligner(data[position : position + size])
        assert len(chunk) % 4 == 0
        out += chunk
        position += size
    assert out == data[: len(data) - len(data) % 4]


def wav_file(pcm: bytes, *, rate: int = 16000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


@given(st.integers(1, 100))
def test_wav_header_split_anywhere_yields_the_pcm(step: int) -> None:
    pcm = bytes(range(256)) * 4
    data = wav_file(pcm, rate=8000) + b"LIST\x04\x00\x00\x00junk"  # a trailing chunk
    stream, out = WavStream(), b""
    for i in range(0, len(data), step):
        out += stream.feed(data[i : i + step])
    assert stream.format == AudioFormat(8000, "pcm_s16le")
    assert out == pcm


def test_wav_refusals() -> None:
    with pytest.raises(WavError, match="not WAV"):
        WavStream().feed(b"\x00" * 64)
    with pytest.raises(WavError, match="channels"):
        WavStream().feed(wav_file(b"\0" * 8, channels=2))
    with pytest.raises(WavError, match="96000"):
        WavStream().feed(wav_file(b"\0" * 8, rate=96000))
    float_fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    header = b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", 16) + float_fmt + b"data\0\0\0\0"
    stream = WavStream()
    assert stream.feed(header + b"\0" * 8) == b"\0" * 8
    assert stream.format == AudioFormat(16000, "pcm_f32le")
