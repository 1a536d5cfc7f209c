"""The real server on 127.0.0.1:0, a real websockets client, real webrtcvad and a real model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_fixtures import RATE, speech_with_pauses, synthesize, to_s16, white_noise
from conftest import server_config
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from wsclient import collect_until_close, of_type, recv_json, stream_pcm

from streaming.engine import InferenceEngine
from streaming.feature_cache import FeatureKey
from streaming.model import LoadedModel
from streaming.server import Server

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things",
    "we also need a small plastic snake",
    "she can scoop these things into three red bags",
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
]


async def refused(url: str) -> Response:
    """The HTTP response of a websocket handshake the server refuses."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    return info.value.response


async def get_json(ws_url: str, path: str) -> Any:
    """GET an HTTP endpoint of the server behind ``ws_url``."""
    url = ws_url.replace("ws://", "http://") + path
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    return json.loads(body)


@pytest.fixture(scope="module")
def thirty_seconds() -> tuple[np.ndarray, list[object]]:
    audio, segments = speech_with_pauses(SENTENCES, pause_s=2.0)
    return audio, segments  # type: ignore[return-value]


async def test_ready_message_describes_the_session(server: Server) -> None:
    async with connect(server.url) as ws:
        ready = await recv_json(ws)
    assert ready["type"] == "ready"
    assert ready["sample_rate"] == 16000 and ready["protocol_version"] == 1
    assert len(ready["session_id"]) >= 8


async def test_speech_with_pauses_gets_one_final_per_utterance_and_monotone_commits(
    server: Server, thirty_seconds: tuple[np.ndarray, list[object]]
) -> None:
    audio, segments = thirty_seconds
    assert audio.size / RATE > 25
    messages, code = await stream_pcm(server.url, to_s16(audio))
    assert code == 1000
    finals = of_type(messages, "final")
    assert len(finals) == len(segments)
    assert [f["utterance_id"] for f in finals] == list(range(len(segments)))
    for final, segment in zip(finals, segments):
        assert final["start_ms"] <= segment.start_s * 1000 + 100  # type: ignore[attr-defined]
        assert final["end_ms"] >= segment.end_s * 1000 - 300  # type: ignore[attr-defined]
        assert final["reason"] in ("vad", "end")
    committed: dict[int, str] = {}
    for m in messages:
        if m["type"] == "partial":
            before = committed.get(m["utterance_id"], "")
            assert m["committed"].startswith(before)
            committed[m["utterance_id"]] = m["committed"]
            assert m["audio_ms"] >= m["start_ms"]
    for final in finals:
        assert final["text"].startswith(committed.get(final["utterance_id"], ""))
    assert of_type(messages, "partial"), "live partials were sent"


async def test_silence_and_noise_produce_no_text_and_no_model_calls(server: Server) -> None:
    assert server.engine is not None
    before = server.engine.stats.requests
    audio = np.concatenate([np.zeros(RATE * 3, dtype=np.float32), white_noise(5.0, 0.02)])
    messages, code = await stream_pcm(server.url, to_s16(audio))
    assert code == 1000
    assert of_type(messages, "final") == [] and of_type(messages, "partial") == []
    assert server.engine.stats.requests == before


async def test_flush_finalizes_the_current_utterance_immediately(server: Server) -> None:
    speech = synthesize("testing one two three")
    async with connect(server.url) as ws:
        await recv_json(ws)
        await ws.send(to_s16(np.concatenate([np.zeros(4000, dtype=np.float32), speech])))
        await ws.send(json.dumps({"type": "flush"}))
        while (message := await recv_json(ws))["type"] != "final":
            assert message["type"] == "partial"
        assert message["reason"] == "flush"
        await ws.send(json.dumps({"type": "end"}))
        assert of_type(await collect_until_close(ws), "final") == []


@pytest.mark.parametrize("rate", [8000, 32000, 44100, 48000])
async def test_other_sample_rates_are_resampled(server: Server, rate: int) -> None:
    import soxr

    speech = synthesize("good morning everybody")
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), speech, np.zeros(RATE)])
    resampled = np.asarray(soxr.resample(audio, RATE, rate), dtype=np.float32)
    messages, _ = await stream_pcm(
        server.url, to_s16(resampled), start={"sample_rate": rate}, chunk_bytes=2 * rate // 10
    )
    assert of_type(messages, "started")[0]["sample_rate"] == rate
    [final] = of_type(messages, "final")
    assert abs(final["end_ms"] - (0.5 + speech.size / RATE) * 1000) < 400


async def test_f32le_audio_is_accepted(server: Server) -> None:
    speech = synthesize("floating point audio")
    audio = np.concatenate([np.zeros(RATE // 2), speech, np.zeros(RATE)]).astype("<f4")
    messages, _ = await stream_pcm(
        server.url, audio.tobytes(), start={"encoding": "pcm_f32le"}, chunk_bytes=6400
    )
    assert len(of_type(messages, "final")) == 1


BAD_INPUTS: list[tuple[str | bytes, str]] = [
    ("{oops", "invalid_json"),
    ('["start"]', "invalid_message"),
    ('{"type": "rewind"}', "unknown_type"),
    ('{"type": "start", "sample_rate": 96000}', "unsupported_sample_rate"),
    ('{"type": "start", "encoding": "ulaw"}', "unsupported_encoding"),
    ('{"type": "start", "channels": 2}', "unsupported_channels"),
    ('{"type": "start", "sample_rate": "fast"}', "invalid_field"),
    (b"\x01\x02\x03", "misaligned_audio"),
]


async def test_every_bad_input_gets_a_precise_error_and_the_session_goes_on(
    server: Server,
) -> None:
    speech = synthesize("still working")
    async with connect(server.url) as ws:
        await recv_json(ws)
        for frame, code in BAD_INPUTS:
            await ws.send(frame)
            error = await recv_json(ws)
            assert (error["type"], error["code"], error["fatal"]) == ("error", code, False)
            assert error["message"]
        await ws.send(to_s16(np.concatenate([np.zeros(4000, dtype=np.float32), speech])))
        await ws.send('{"type": "start"}')
        assert (await recv_json(ws))["code"] == "start_after_audio"
        await ws.send(json.dumps({"type": "end"}))
        await ws.send(b"\0\0")
        rest = await collect_until_close(ws)
        assert len(of_type(rest, "final")) == 1
        assert [e["code"] for e in of_type(rest, "error")] == ["after_end"]
        assert ws.close_code == 1000


async def test_oversized_frame_is_dropped_with_an_error(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    config = server_config(tiny_model_dir, max_frame_bytes=1000)
    async with Server(config, model=tiny_model) as srv, connect(srv.url) as ws:
        await recv_json(ws)
        await ws.send(b"\0" * 2000)
        error = await recv_json(ws)
        assert error["code"] == "frame_too_large" and "1000" in error["message"]
        await ws.send(b"\0" * 1000)
        await ws.send('{"type":"end"}')
        await collect_until_close(ws)
        assert ws.close_code == 1000


async def test_a_broken_session_does_not_disturb_another(server: Server) -> None:
    audio, _ = speech_with_pauses(SENTENCES[:2], pause_s=1.0)

    async def vandal() -> None:
        async with connect(server.url) as ws:
            await recv_json(ws)
            for _ in range(20):
                await ws.send("{bad")
                await ws.send(b"\x01")
                await asyncio.sleep(0.01)
            # and vanish mid-utterance
            await ws.send(to_s16(audio[: RATE * 2]))

    good, _ = await asyncio.gather(stream_pcm(server.url, to_s16(audio), pace=0.001), vandal())
    messages, code = good
    assert code == 1000
    assert of_type(messages, "error") == []
    assert len(of_type(messages, "final")) == 2


async def test_disconnect_mid_utterance_cleans_up_the_session(server: Server) -> None:
    audio, _ = speech_with_pauses(SENTENCES[:1], pause_s=0.0)
    async with connect(server.url) as ws:
        await recv_json(ws)
        await ws.send(to_s16(audio))
    for _ in range(100):
        if server.active_sessions == 0:
            break
        await asyncio.sleep(0.05)
    assert server.active_sessions == 0


async def test_health_endpoint_reports_status(server: Server) -> None:
    health = await get_json(server.url, "health")
    assert health["status"] == "ready" and health["sessions"] == 0


async def test_full_server_refuses_new_sessions_with_503(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    config = server_config(tiny_model_dir, max_sessions=1)
    async with Server(config, model=tiny_model) as srv, connect(srv.url) as first:
        await recv_json(first)
        response = await refused(srv.url)
        assert response.status_code == 503
        assert b"server full" in response.body


async def test_shutdown_finalizes_open_utterances_and_closes_with_1001(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    speech = synthesize("this sentence is cut short by a server restart")
    srv = Server(server_config(tiny_model_dir), model=tiny_model)
    await srv.start()
    async with connect(srv.url) as ws:
        await recv_json(ws)
        await ws.send(to_s16(np.concatenate([np.zeros(4000, dtype=np.float32), speech])))
        await asyncio.sleep(0.3)
        shutdown = asyncio.ensure_future(srv.shutdown())
        messages = await collect_until_close(ws)
        await shutdown
    finals = of_type(messages, "final")
    assert len(finals) == 1 and finals[0]["reason"] == "shutdown"
    assert ws.close_code == 1001


async def http_status(ws_url: str, path: str) -> tuple[int, Any]:
    """Status and JSON body of a GET, 4xx/5xx included."""
    try:
        return 200, await get_json(ws_url, path)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_health_says_full_with_503_while_the_session_limit_is_reached(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    config = server_config(tiny_model_dir, max_sessions=1)
    async with Server(config, model=tiny_model) as srv:
        async with connect(srv.url) as first:
            await recv_json(first)
            status, health = await http_status(srv.url, "health")
            assert status == 503 and health["status"] == "full"
            assert "server full" in health["reason"]
        for _ in range(100):
            if srv.active_sessions == 0:
                break
            await asyncio.sleep(0.05)
        status, health = await http_status(srv.url, "health")
        assert status == 200 and health["status"] == "ready" and health["reason"] is None


async def test_a_draining_server_says_so_refuses_new_streams_and_finishes_open_utterances(
    tiny_model_dir: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    speech = synthesize("this sentence is finished while the server drains")
    srv = Server(server_config(tiny_model_dir), model=tiny_model)
    await srv.start()
    assert srv.engine is not None
    gate = threading.Event()
    submit = srv.engine.submit

    def held(samples: np.ndarray, key: FeatureKey | None = None) -> Future[np.ndarray]:
        """The model's answers wait for ``gate``: the drain cannot finish before it."""
        future: Future[np.ndarray] = Future()

        def run() -> None:
            gate.wait(30)
            answer = submit(samples, key)
            answer.add_done_callback(lambda done: future.set_result(done.result()))

        threading.Thread(target=run, daemon=True).start()
        return future

    monkeypatch.setattr(srv.engine, "submit", held)
    async with connect(srv.url) as ws:
        await recv_json(ws)
        await ws.send(to_s16(np.concatenate([np.zeros(4000, dtype=np.float32), speech])))
        await asyncio.sleep(0.3)
        draining = asyncio.ensure_future(srv.shutdown())
        await asyncio.sleep(0.1)
        status, health = await http_status(srv.url, "health")
        assert status == 503 and health["status"] == "draining"
        assert (await http_status(srv.url, "livez"))[0] == 200
        response = await refused(srv.url)
        assert response.status_code == 503 and b"shutting down" in response.body
        gate.set()
        messages = await collect_until_close(ws)
        await draining
    finals = of_type(messages, "final")
    assert len(finals) == 1 and finals[0]["reason"] == "shutdown" and finals[0]["text"]
    assert ws.close_code == 1001


async def test_overloaded_engine_refuses_new_sessions_with_503_and_a_reason(
    tiny_model_dir: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = server_config(tiny_model_dir, max_engine_load=0.8)
    async with Server(config, model=tiny_model) as srv:
        async with connect(srv.url) as ws:  # an idle engine admits
            assert (await recv_json(ws))["type"] == "ready"
        # Stand-in for a saturated device: only the load reading is replaced.
        monkeypatch.setattr(InferenceEngine, "load", property(lambda _self: 0.93))
        response = await refused(srv.url)
        assert response.status_code == 503
        body = json.loads(response.body)
        assert body["error"].startswith("server overloaded: the model was busy 93%")
        status, health = await http_status(srv.url, "health")
        assert status == 503 and health["status"] == "full"
        assert health["admission"] == "overloaded" and health["engine_load"] == 0.93


async def test_a_stream_the_server_falls_behind_is_told_so_and_when_it_has_caught_up(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    speech = synthesize("the birch canoe slid on the smooth planks " * 3)
    config = server_config(tiny_model_dir, lag_warning_s=1.0)
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), speech])
    async with Server(config, model=tiny_model) as srv:
        # All at once, far faster than real time: the server is seconds behind at once.
        messages, code = await stream_pcm(srv.url, to_s16(audio), chunk_bytes=64000)
    assert code == 1000
    lags = of_type(messages, "lag")
    assert [m["state"] for m in lags] == ["behind", "caught_up"]
    assert lags[0]["lag_ms"] > 1000 and lags[1]["lag_ms"] <= 500
    assert "behind this stream's audio" in lags[0]["message"]
    kinds = [m["type"] for m in messages]
    assert kinds.index("lag") < kinds.index("final")  # told while it mattered
    assert len(of_type(messages, "final")) >= 1  # and nothing was lost


def slowed(model: LoadedModel, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every model call take ``seconds`` longer: a device that cannot keep up."""
    infer = model.infer

    def slow_infer(batch: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return infer(batch)

    monkeypatch.setattr(model, "infer", slow_infer)


async def test_streams_falling_behind_real_time_make_the_server_refuse_newcomers(
    tiny_model_dir: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    slowed(tiny_model, monkeypatch, 1.5)
    config = server_config(tiny_model_dir, lag_warning_s=1.0, max_engine_load=1.0)
    speech = to_s16(synthesize("the birch canoe slid on the smooth planks " * 2))
    async with Server(config, model=tiny_model) as srv, connect(srv.url) as live:
        await recv_json(live)
        await live.send(to_s16(np.zeros(RATE // 2, dtype=np.float32)))
        lag: dict[str, object] = {}
        for i in range(0, len(speech), 3200):  # real-time pace, 100 ms frames
            await live.send(speech[i : i + 3200])
            await asyncio.sleep(0.1)
            with contextlib.suppress(asyncio.TimeoutError):
                while not lag:
                    message = await recv_json(live, timeout=0.001)
                    lag = message if message["type"] == "lag" else {}
            if lag:
                break
        assert lag.get("state") == "behind", "the slowed server fell behind a real-time stream"
        response = await refused(srv.url)
        assert response.status_code == 503
        assert b"1 of 1 streams are more than 1 s behind real time" in response.body


async def test_a_client_sending_faster_than_real_time_does_not_close_the_server_to_others(
    tiny_model_dir: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    slowed(tiny_model, monkeypatch, 0.3)
    config = server_config(tiny_model_dir, lag_warning_s=1.0, max_engine_load=1.0)
    speech = synthesize("the birch canoe slid on the smooth planks " * 2)
    audio = to_s16(np.concatenate([np.zeros(RATE // 2, dtype=np.float32), speech]))
    async with Server(config, model=tiny_model) as srv, connect(srv.url) as fast:
        await recv_json(fast)
        await fast.send(audio)  # seconds of audio at once: behind its own audio by design
        message = await recv_json(fast)
        while message["type"] != "lag":
            message = await recv_json(fast)
        assert message["state"] == "behind"
        drivers = [c.driver for c in srv._connections]
        assert [(d.behind, d.behind_real_time) for d in drivers] == [(True, False)]
        async with connect(srv.url) as other:
            assert (await recv_json(other))["type"] == "ready"
