"""Deepgram live transcription: the official deepgram-sdk client, and the raw wire format."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

import numpy as np
import pytest
from audio_fixtures import RATE, Segment, to_s16
from codec_harness import Harness
from compat_support import Recognizer, recognizer, running_server, speech, spoken, wav_bytes
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streaming.audio import AudioFormat
from streaming.codecs import DeepgramCodec
from streaming.events import Final, Partial, WordTiming

__all__ = ["recognizer", "speech", "spoken"]  # pytest fixtures used by name

Message = dict[str, Any]
KEY = "dg-test-key"


def sdk_client(port: int, api_key: str) -> Any:
    """The SDK pointed at this server through its ``environment`` (no code changes)."""
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    environment = DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)
    return AsyncDeepgramClient(
        api_key=api_key, environment=environment, redact_credentials_in_logs=False
    )


async def test_deepgram_sdk_streams_audio_and_receives_interim_and_final_results(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    from deepgram.core.events import EventType
    from deepgram.listen.v1.types import (
        ListenV1Metadata,
        ListenV1Results,
        ListenV1SpeechStarted,
        ListenV1UtteranceEnd,
    )

    audio, said = speech
    pcm = to_s16(audio)
    received: list[Any] = []
    async with running_server(recognizer, auth_tokens=(KEY,)) as server:
        client = sdk_client(server.port, KEY)
        async with client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=RATE,
            channels=1,
            interim_results="true",
            endpointing=300,
            utterance_end_ms=700,  # under the 1.2 s pauses between the sentences
            vad_events="true",
            punctuate="true",
        ) as socket:
            socket.on(EventType.MESSAGE, received.append)
            listening = asyncio.ensure_future(socket.start_listening())
            for i in range(0, len(pcm), 3200):  # 100 ms of audio per message
                await socket.send_media(pcm[i : i + 3200])
                await asyncio.sleep(0.002)
            await socket.send_keep_alive()
            await socket.send_close_stream()
            await asyncio.wait_for(listening, 30)

    results = [m for m in received if isinstance(m, ListenV1Results)]
    interims = [r for r in results if not r.is_final]
    finals = [r for r in results if r.is_final]
    assert interims, "interim results stream while audio arrives"
    assert len(finals) == 2 and all(r.speech_final for r in finals)
    for result in results:
        alternative = result.channel.alternatives[0]
        assert result.channel_index == [0, 1] and 0 <= alternative.confidence <= 1
        assert result.start >= 0 and result.duration > 0
        for word in alternative.words:
            assert result.start <= word.start <= word.end <= audio.size / RATE + 0.5
            assert word.punctuated_word == word.word
    assert len([m for m in received if isinstance(m, ListenV1SpeechStarted)]) == 2
    assert len([m for m in received if isinstance(m, ListenV1UtteranceEnd)]) == 2
    assert isinstance(received[-1], ListenV1Metadata)
    assert abs(received[-1].duration - audio.size / RATE) < 0.01
    transcript = " ".join(r.channel.alternatives[0].transcript for r in finals)
    recognizer.check(transcript, said)


async def test_sdk_with_a_wrong_key_is_refused_with_401(recognizer: Recognizer) -> None:
    from deepgram.core.api_error import ApiError

    async with running_server(recognizer, auth_tokens=(KEY,)) as server:
        client = sdk_client(server.port, "wrong-key")
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(model="nova-3"):
                pass
    assert refused.value.status_code == 401


async def collect(ws: ClientConnection) -> list[Message]:
    out: list[Message] = []

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):  # error closes end the stream too
            while True:
                out.append(json.loads(await ws.recv()))

    await asyncio.wait_for(read(), 30)
    return out


async def test_raw_wire_format_finalize_keepalive_and_close_stream(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    first = to_s16(audio[: int(RATE * 2.5)])  # mid-way through the first sentence
    query = "encoding=linear16&sample_rate=16000&interim_results=false&endpointing=false"
    headers = {"Authorization": "Token anything"}
    async with running_server(recognizer) as server:
        url = f"{server.url}v1/listen?{query}"
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(first)
            await ws.send('{"type": "KeepAlive"}')
            await ws.send('{"type": "Finalize"}')
            finalized = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await ws.send('{"type": "Rewind"}')
            error = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await ws.send('{"type": "CloseStream"}')
            rest = await collect(ws)
    assert finalized["type"] == "Results" and finalized["is_final"] is True
    assert finalized["from_finalize"] is True and finalized["speech_final"] is False
    assert set(finalized) == {
        "type", "channel_index", "duration", "start", "is_final", "speech_final",
        "channel", "metadata", "from_finalize",
    }  # fmt: skip
    assert set(finalized["metadata"]) == {"request_id", "model_info", "model_uuid"}
    words = finalized["channel"]["alternatives"][0]["words"]
    assert all(set(w) == {"word", "start", "end", "confidence"} for w in words)
    assert error["type"] == "Error" and error["variant"] == "SchemaError"
    assert [m["type"] for m in rest] == ["Metadata"], "no interims, nothing after Finalize"
    metadata = rest[0]
    assert metadata["request_id"] == finalized["metadata"]["request_id"]
    assert metadata["sha256"] == hashlib.sha256(first).hexdigest()
    assert metadata["duration"] == 2.5 and metadata["channels"] == 1
    assert ws.close_code == 1000


async def test_wav_container_without_encoding_is_decoded_from_its_header(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, said = speech
    wav = wav_bytes(audio)
    server_ctx = running_server(recognizer)
    async with server_ctx as server, connect(f"{server.url}v1/listen?model=nova-3") as ws:
        for i in range(0, len(wav), 1001):  # the header arrives in pieces
            await ws.send(wav[i : i + 1001])
        await ws.send('{"type": "CloseStream"}')
        messages = await collect(ws)
    finals = [m for m in messages if m["type"] == "Results"]
    assert len(finals) == 2 and all(m["is_final"] for m in finals)
    assert messages[-1]["type"] == "Metadata"
    assert abs(messages[-1]["duration"] - audio.size / RATE) < 0.01
    recognizer.check(" ".join(m["channel"]["alternatives"][0]["transcript"] for m in finals), said)


@pytest.mark.parametrize(
    "query",
    [
        "encoding=opus&sample_rate=48000",
        "encoding=linear16&sample_rate=96000",
        "encoding=linear16",
        "encoding=linear16&sample_rate=16000&channels=2",
        "interim_results=maybe",
    ],
)
async def test_unsupported_parameters_are_refused(recognizer: Recognizer, query: str) -> None:
    async with running_server(recognizer) as server:
        try:
            async with connect(f"{server.url}v1/listen?{query}") as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
            # Without the server's handshake hook the endpoint refuses right after it.
            assert ws.close_code == 1008
            assert ws.close_reason.startswith("INVALID_QUERY_PARAMETER")
        except InvalidStatus as refused:  # with the hook: HTTP 400, as Deepgram answers
            assert refused.response.status_code == 400


async def test_silence_past_the_idle_timeout_closes_with_net_0001(recognizer: Recognizer) -> None:
    async with running_server(recognizer, idle_timeout_s=0.5) as server:
        url = f"{server.url}v1/listen?encoding=linear16&sample_rate=8000"
        async with connect(url) as ws:
            await ws.send(b"\0" * 1600)
            messages = await collect(ws)
    assert [m["type"] for m in messages] == ["Metadata"]
    assert ws.close_code == 1011 and ws.close_reason.startswith("NET-0001")


async def test_speech_started_and_utterance_end_follow_the_audio_not_the_messages(
    recognizer: Recognizer, spoken: tuple[np.ndarray, list[Segment]]
) -> None:
    audio, segments = spoken
    query = "encoding=linear16&sample_rate=16000&vad_events=true&utterance_end_ms=3000"
    server_ctx = running_server(recognizer)
    async with server_ctx as server, connect(f"{server.url}v1/listen?{query}") as ws:
        await ws.send(to_s16(audio))  # all of it in one message
        await ws.send('{"type": "CloseStream"}')
        messages = await collect(ws)
    kinds = [m["type"] for m in messages]
    started = [m["timestamp"] for m in messages if m["type"] == "SpeechStarted"]
    assert len(started) == len(segments)
    for timestamp, segment in zip(started, segments):
        assert abs(timestamp - segment.start_s) < 0.15
    # The 1.2 s pause is shorter than 3 s: only the end of the stream closes the gap.
    [end] = [m for m in messages if m["type"] == "UtteranceEnd"]
    assert kinds.index("UtteranceEnd") > max(i for i, k in enumerate(kinds) if k == "Results")
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    assert end["last_word_end"] == finals[-1]["channel"]["alternatives"][0]["words"][-1]["end"]


async def test_nan_audio_closes_with_data_0000_after_the_finals(recognizer: Recognizer) -> None:
    bad = np.array([0.1, np.nan], dtype="<f4").tobytes()
    async with running_server(recognizer) as server:
        url = f"{server.url}v1/listen?encoding=linear32&sample_rate=16000"
        async with connect(url) as ws:
            await ws.send(np.zeros(1600, dtype="<f4").tobytes())
            await ws.send(bad)
            messages = await collect(ws)
    assert [m["type"] for m in messages] == ["Metadata"]
    assert ws.close_code == 1008 and ws.close_reason.startswith("DATA-0000")


async def test_server_shutdown_sends_finals_and_metadata_then_1001(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    cut = to_s16(audio[: int(RATE * 2.5)])  # mid-sentence
    async with running_server(recognizer) as server:
        url = f"{server.url}v1/listen?encoding=linear16&sample_rate=16000"
        async with connect(url) as ws:
            await ws.send(cut)
            await asyncio.sleep(0.3)
            shutdown = asyncio.ensure_future(server.shutdown())
            messages = await collect(ws)
            await shutdown
    assert [m["type"] for m in messages] == ["Results", "Metadata"]
    assert messages[0]["is_final"] and messages[0]["speech_final"]
    assert ws.close_code == 1001


# -- the codec, fed without a socket ---------------------------------------------------


async def test_deepgram_codec_reads_its_parameters_and_control_messages() -> None:
    h = Harness(DeepgramCodec, path="/v1/listen?encoding=linear16&sample_rate=8000&model=x")
    assert await h.codec.open()
    assert h.session.format == AudioFormat(8000, "pcm_s16le")
    await h.codec.on_message(b"\0" * 1601)  # half a sample waits for the next frame
    assert h.session.audio_ms == 100
    await h.codec.on_message('{"type": "KeepAlive"}')
    await h.codec.on_message('{"type": "Configure", "processors": {}}')
    await h.codec.on_message('{"type": "Dance"}')
    configured, error = h.take()
    assert configured["type"] == "ConfigureSuccess"
    assert error == {
        "type": "Error",
        "variant": "SchemaError",
        "description": "expected a message of type KeepAlive, Finalize, CloseStream, Configure",
        "message": '{"type": "Dance"}',
    }
    await h.codec.on_message('{"type": "CloseStream"}')
    assert h.session.ended
    h.codec.on_finished()
    (metadata,) = h.take()
    assert metadata["type"] == "Metadata" and metadata["duration"] == 0.1
    assert metadata["sha256"] == hashlib.sha256(b"\0" * 1601).hexdigest()


async def test_deepgram_codec_refuses_bad_parameters_before_and_after_the_handshake() -> None:
    refusal = DeepgramCodec.handshake_refusal("/v1/listen?encoding=opus&sample_rate=8000")
    assert refusal is not None and refusal.status == 400
    assert json.loads(refusal.body)["err_code"] == "INVALID_QUERY_PARAMETER"
    assert refusal.headers["dg-error"] == json.loads(refusal.body)["err_msg"]
    assert DeepgramCodec.handshake_refusal("/v1/listen?encoding=linear16&sample_rate=8000") is None
    h = Harness(DeepgramCodec, path="/v1/listen?channels=2")
    assert not await h.codec.open()
    assert h.refused is not None and h.refused[0] == 1008
    assert h.refused[1].startswith("INVALID_QUERY_PARAMETER: only mono")


async def test_deepgram_codec_undecodable_audio_ends_the_stream_with_data_0000() -> None:
    h = Harness(DeepgramCodec, path="/v1/listen")
    assert await h.codec.open()
    await h.codec.on_message(b"this is not a wav file at all")
    assert h.session.ended
    assert h.close[0] == 1008 and h.close[1].startswith("DATA-0000: audio is not WAV")


async def test_deepgram_codec_interim_results_are_keyed_finals_are_not() -> None:
    query = "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"
    h = Harness(DeepgramCodec, path=query)
    await h.codec.open()
    word = WordTiming("hi", 0, 100, 0.9, True)
    h.codec.on_events([Partial(2, "hi", "", 0, 100, (word,))])
    h.codec.on_events([Final(2, "hi", 0, 100, 200, (word,), "flush")])
    (interim, interim_key), (final, final_key) = h.queued
    assert interim_key == ("interim", 2) and not interim["is_final"]
    assert final_key is None and final["is_final"] and final["from_finalize"]


def test_deepgram_codec_limits_close_with_deepgrams_codes() -> None:
    h = Harness(DeepgramCodec)
    h.codec.on_limit("idle_timeout", 10.0)
    assert h.close == (1011, "NET-0001: nothing received for 10 s")
    h.codec.on_limit("session_too_long", 60.0)
    assert h.close == (1008, "session_too_long: stream longer than 60 s")
    assert DeepgramCodec.paths == ("/v1/listen",) and not DeepgramCodec.root
