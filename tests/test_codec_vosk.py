"""The Vosk server protocol, spoken as vosk-server's own test clients speak it."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from typing import Any

import numpy as np
import pytest
import soxr
from audio_fixtures import RATE, to_s16
from codec_harness import Harness
from compat_support import Recognizer, recognizer, running_server, speech, wav_bytes
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from streaming.audio import AudioFormat
from streaming.codecs import VoskCodec, vosk_format
from streaming.events import Final, Partial, WordTiming

__all__ = ["recognizer", "speech"]  # pytest fixtures used by name

Reply = dict[str, Any]


async def reply(ws: ClientConnection) -> Reply:
    message = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(message, str), "Vosk replies are text frames"
    data: Reply = json.loads(message)
    return data


async def stock_client(
    url: str, wav: bytes, *, config: bool = True, eof: str = '{"eof" : 1}', frame_s: float = 0.2
) -> tuple[list[Reply], Reply]:
    """websocket/test.py: optional config, 0.2 s frames each followed by one recv, eof."""
    async with connect(url) as ws:
        with wave.open(io.BytesIO(wav), "rb") as wf:
            if config:
                rate = wf.getframerate()
                await ws.send('{ "config" : { "sample_rate" : %d } }' % rate)  # noqa: UP031
            buffer_size = int(wf.getframerate() * frame_s)
            replies = []
            while data := wf.readframes(buffer_size):
                await ws.send(data)
                replies.append(await reply(ws))
        await ws.send(eof)
        last = await reply(ws)
        with pytest.raises(ConnectionClosedOK):  # nothing more than one reply, then a close
            await asyncio.wait_for(ws.recv(), 30)
    return replies, last


def results(replies: list[Reply]) -> list[Reply]:
    for r in replies:
        assert ("partial" in r) != ("text" in r or "alternatives" in r), r
    return [r for r in replies if "partial" not in r]


def transcript(replies: list[Reply]) -> str:
    return " ".join(r["text"] for r in results(replies) if r["text"])


def words(replies: list[Reply]) -> list[Reply]:
    return [w for r in results(replies) for w in r.get("result", [])]


async def test_stock_client_gets_one_reply_per_frame_and_the_text(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, said = speech
    async with running_server(recognizer) as server:
        replies, last = await stock_client(server.url + "vosk", wav_bytes(audio))
    assert len(replies) == int(np.ceil(audio.size / (RATE * 0.2)))
    assert "text" in last and "partial" not in last
    assert results(replies), "a sentence followed by a pause is final before eof"
    assert any(r.get("partial") for r in replies), "partials grow while audio arrives"
    everything = [*replies, last]
    timed = words(everything)
    assert timed, "words carry times by default, as vosk-server's VOSK_SHOW_WORDS"
    for w in timed:
        assert list(w) == ["conf", "end", "start", "word"]
        assert 0 <= w["start"] <= w["end"] <= audio.size / RATE + 0.5 and 0 <= w["conf"] <= 1
    assert [w["start"] for w in timed] == sorted(w["start"] for w in timed)
    assert transcript(everything) == " ".join(w["word"] for w in timed)
    recognizer.check(transcript(everything), said)


async def test_without_config_the_rate_is_vosk_servers_default_8000(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech  # narrowband: times are checked, not words
    narrow = np.asarray(soxr.resample(audio, RATE, 8000), dtype=np.float32)
    async with running_server(recognizer) as server:
        replies, last = await stock_client(
            server.url + "vosk", wav_bytes(narrow, 8000), config=False
        )
    duration = narrow.size / 8000
    ends = [w["end"] for w in words([*replies, last])]
    # Read as 16 kHz the stream would last half as long and every time would halve.
    assert duration / 2 + 0.5 < max(ends) <= duration + 0.5
    assert vosk_format.DEFAULT_SAMPLE_RATE == 8000


@pytest.mark.parametrize("eof", ['{"eof":1}', '{ "eof" : 1 }', '{\n  "eof": 1\n}'])
async def test_eof_in_any_spacing_and_frames_cut_mid_sample(
    recognizer: Recognizer, speech: tuple[np.ndarray, str], eof: str
) -> None:
    audio, _ = speech
    pcm = to_s16(audio[: RATE * 3])
    async with running_server(recognizer) as server, connect(server.url + "vosk") as ws:
        await ws.send('{"config": {"sample_rate": 16000}}')
        for i in range(0, len(pcm), 3201):  # odd sizes: samples straddle frames
            await ws.send(pcm[i : i + 3201])
            assert "partial" in (r := await reply(ws)) or "text" in r
        await ws.send(eof)
        assert "text" in await reply(ws)
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_reset_returns_a_final_result_and_the_session_goes_on(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, said = speech
    first, second = audio[: audio.size // 2], audio[audio.size // 2 :]
    async with running_server(recognizer) as server, connect(server.url + "vosk") as ws:
        await ws.send('{"config": {"sample_rate": 16000}}')
        replies = []
        for part in (first, second):
            for chunk in np.array_split(np.frombuffer(to_s16(part), "<i2"), 10):
                await ws.send(chunk.tobytes())
                replies.append(await reply(ws))
            await ws.send('{"reset" : 1}')
            reset = await reply(ws)
            assert "text" in reset and "partial" not in reset
            replies.append(reset)
        await ws.send('{"eof" : 1}')
        assert await reply(ws) == {"text": ""}, "reset already delivered every final"
    timed = words(replies)
    assert timed and max(w["end"] for w in timed) > audio.size / 2 / RATE
    recognizer.check(transcript(replies), said)


async def test_words_off_and_alternatives_follow_the_config(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    pcm = to_s16(audio)
    async with running_server(recognizer) as server:
        for config, key in (({"words": 0}, "text"), ({"max_alternatives": 3}, "alternatives")):
            async with connect(server.url + "vosk") as ws:
                await ws.send(json.dumps({"config": {"sample_rate": RATE, **config}}))
                await ws.send(pcm)
                await reply(ws)
                await ws.send('{"eof" : 1}')
                final = await reply(ws)
            assert key in final and "result" not in final, final
            if key == "alternatives":
                [alternative] = final["alternatives"]
                assert set(alternative) == {"confidence", "result", "text"}
                assert all(set(w) == {"start", "end", "word"} for w in alternative["result"])


@pytest.mark.parametrize(
    "frame", ['{"config": {"sample_rate": 96000}}', '{"config": {"sample_rate": "x"}}', "hello"]
)
async def test_unsupported_config_is_refused_with_a_close_saying_why(
    recognizer: Recognizer, frame: str
) -> None:
    async with running_server(recognizer) as server, connect(server.url + "vosk") as ws:
        await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert closed.value.rcvd.reason
    if "96000" in frame:
        assert "96000" in closed.value.rcvd.reason


async def test_protocol_flag_makes_root_speak_vosk(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    async with running_server(recognizer, protocol="vosk") as server:
        replies, last = await stock_client(server.url, wav_bytes(audio[: RATE * 2]), frame_s=0.5)
    assert len(replies) == 4 and "text" in last


async def test_server_shutdown_sends_the_last_result_then_1001(
    recognizer: Recognizer, speech: tuple[np.ndarray, str]
) -> None:
    audio, _ = speech
    async with running_server(recognizer) as server, connect(server.url + "vosk") as ws:
        await ws.send('{"config": {"sample_rate": 16000}}')
        await ws.send(to_s16(audio[: int(RATE * 2.5)]))  # mid-sentence
        assert "partial" in await reply(ws)
        shutdown = asyncio.ensure_future(server.shutdown())
        last = await reply(ws)
        await shutdown
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert last["text"] and last["result"]
    assert ws.close_code == 1001


# -- the codec, fed without a socket ---------------------------------------------------


async def test_vosk_codec_answers_each_audio_frame_with_one_reply() -> None:
    h = Harness(VoskCodec, path="/vosk")
    await h.codec.on_message('{"config": {"sample_rate": 16000}}')
    assert h.take() == []  # config frames get no reply
    await h.codec.on_message(b"\0" * 3201)  # half a sample waits for the next frame
    assert h.take() == [{"partial": ""}]
    assert h.session.format == AudioFormat(16000, "pcm_s16le") and h.session.audio_ms == 100
    word = WordTiming("hi", 0, 100, 0.9, True)
    h.codec.on_events([Partial(0, "hi", "", 0, 100, (word,))])
    await h.codec.on_message(b"\0")
    assert h.take() == [{"partial": "hi"}]
    h.codec.on_events([Final(0, "hi", 0, 100, 200, (word,), "vad")])
    await h.codec.on_message(b"\0" * 2)
    (reply,) = h.take()
    assert reply["text"] == "hi" and reply["result"][0]["word"] == "hi"


async def test_vosk_codec_eof_ends_and_the_last_reply_merges_every_final() -> None:
    h = Harness(VoskCodec)
    await h.codec.on_message(b"\0" * 1600)
    h.take()
    await h.codec.on_message('{"eof" : 1}')
    assert h.session.ended
    h.codec.on_events(
        [Final(0, "one", 0, 10, 20, (), "end"), Final(1, "two", 30, 40, 50, (), "end")]
    )
    h.codec.on_finished()
    assert h.take()[-1]["text"] == "one two"


async def test_vosk_codec_refuses_a_bad_text_frame_with_1003() -> None:
    h = Harness(VoskCodec)
    await h.codec.on_message("hello")
    assert h.refused == (1003, "text frame is not JSON; expected config, eof or reset")
    h.codec.on_finished()
    assert h.take() == []  # a refused stream gets no last result


def test_vosk_codec_declarations() -> None:
    assert VoskCodec.paths == ("/vosk",) and VoskCodec.root
    assert not VoskCodec.answers_after_end
    assert not VoskCodec.supports_resume and VoskCodec.supports_hotwords  # phrase_list
    full = VoskCodec.full_reply("full")
    assert full is not None and full.status == 503
