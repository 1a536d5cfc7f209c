"""Property-based fuzzing of the protocol layer and of a live server.

CI runs a few hundred examples; a long run: FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_fixtures import speech_with_pauses, to_s16
from conftest import server_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from wsclient import of_type, stream_pcm

from streaming.codecs import native_format as protocol
from streaming.errors import StreamError
from streaming.model import LoadedModel
from streaming.server import Server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
KNOWN_CODES = {
    "invalid_json", "invalid_message", "unknown_type", "invalid_field",
    "unsupported_sample_rate", "unsupported_encoding", "unsupported_channels",
    "start_after_audio", "misaligned_audio", "invalid_audio", "frame_too_large", "after_end",
}  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
message_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "flush", "end", "bogus", ""]) | st.text(max_size=8)},
    optional={
        "sample_rate": st.sampled_from([8000, 16000, 44100, 48000, 96000, 0, -1]) | json_values,
        "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "mp3"]) | json_values,
        "channels": st.sampled_from([1, 2]) | json_values,
        "extra": json_values,
    },
)
text_frames = st.one_of(
    message_dicts.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
)
binary_frames = st.one_of(
    st.binary(max_size=4000),
    st.integers(0, 12000).map(lambda n: bytes(n)),
)
frames = st.lists(st.one_of(text_frames, binary_frames), max_size=12)


@settings(max_examples=EXAMPLES, deadline=None)
@given(text_frames)
def test_protocol_layer_parses_or_raises_a_known_error(text: str) -> None:
    try:
        message = protocol.parse_client_text(text)
    except StreamError as exc:
        assert exc.code in KNOWN_CODES and exc.message
    else:
        assert isinstance(message, protocol.Start | protocol.Flush | protocol.End)


class BackgroundServer:
    """A real server on its own event loop thread, shared by many hypothesis examples."""

    def __init__(self, model_dir: Path, model: LoadedModel) -> None:
        self.loop = asyncio.new_event_loop()
        self.config = server_config(model_dir, max_frame_bytes=8000, idle_timeout_s=5.0)
        self.server = Server(self.config, model=model)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live(tiny_model_dir: Path, tiny_model: LoadedModel) -> Iterator[BackgroundServer]:
    background = BackgroundServer(tiny_model_dir, tiny_model)
    yield background
    background.close()


async def send_and_collect(
    url: str, sequence: list[str | bytes]
) -> tuple[list[dict[str, Any]], int | None]:
    async with connect(url, open_timeout=10) as ws:
        messages = [json.loads(await ws.recv())]
        for frame in sequence:
            await ws.send(frame)
        await ws.send('{"type": "end"}')
        async for raw in ws:
            messages.append(json.loads(raw))
        return messages, ws.close_code


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=frames)
def test_live_server_answers_any_frame_sequence_and_stays_up(
    live: BackgroundServer, sequence: list[str | bytes]
) -> None:
    url = live.server.url
    messages, code = asyncio.run(asyncio.wait_for(send_and_collect(url, sequence), 60))
    assert messages[0]["type"] == "ready"
    assert code == 1000
    for message in messages[1:]:
        assert message["type"] in ("started", "partial", "final", "error")
        if message["type"] == "error":
            assert message["code"] in KNOWN_CODES, message
            assert message["message"] and message["fatal"] is False


def test_a_good_session_works_after_the_fuzzing(live: BackgroundServer) -> None:
    audio, segments = speech_with_pauses(["the server survived the fuzzing"], pause_s=1.0)
    messages, code = asyncio.run(stream_pcm(live.server.url, to_s16(audio)))
    assert code == 1000
    assert len(of_type(messages, "final")) == len(segments)
    for _ in range(100):  # the handler finishes just after the client sees the close
        if live.server.active_sessions == 0:
            break
        time.sleep(0.02)
    assert live.server.active_sessions == 0, "a session leaked"
