"""The endpoint's lifecycle, shown with a fifth protocol written as one small codec here
and routed on a real server (tiny random model, real webrtcvad): its messages, error
spelling, limits, draining after the end, shutdown and its own full-server reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

import pytest
from audio_fixtures import to_s16, white_noise
from conftest import server_config
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streaming.codecs import stream_paths
from streaming.codecs.base import Codec, HttpReply, Message
from streaming.errors import StreamError
from streaming.events import Event, Final
from streaming.model import LoadedModel
from streaming.server import Server


class ToyCodec(Codec):
    """Text "end" ends the stream, binary frames are s16 audio, one message per final."""

    name = "toy"
    paths: ClassVar[tuple[str, ...]] = ("/toy",)

    async def open(self) -> bool:
        self.stream.put({"hello": self.stream.session_id})
        return True

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.driver.feed(message)
        elif message == "end":
            self.driver.end("end")
        else:
            raise StreamError("toy_unknown", f"unknown command {message[:20]!r}")

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Final):
                self.stream.put({"final": event.reason})

    def error(self, code: str, message: str, *, fatal: bool) -> Message:
        return {"oops": code}

    def on_shutdown(self) -> None:
        self.stream.put({"bye": "shutdown"})

    def on_finished(self) -> None:
        self.stream.put({"done": self.session.audio_ms})

    @classmethod
    def full_reply(cls, message: str) -> HttpReply:
        return HttpReply.json(HTTPStatus.TOO_MANY_REQUESTS, {"toy": message})


@asynccontextmanager
async def toy_server(model_dir: Path, model: LoadedModel, **changes: Any) -> AsyncIterator[Server]:
    server = Server(server_config(model_dir, **changes), model=model)
    server.routes = type(server.routes)(server.routes.pages, {**stream_paths(), "/toy": ToyCodec})
    async with server:
        yield server


async def read_all(ws: ClientConnection) -> list[Message]:
    """Every message until the server closes, whatever the close code."""
    out: list[Message] = []
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            out.append(json.loads(message))
    return out


AUDIO = to_s16(white_noise(0.5))


async def test_a_fifth_protocol_is_one_codec(tiny_model_dir: Path, tiny_model: LoadedModel) -> None:
    async with toy_server(tiny_model_dir, tiny_model) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/toy") as ws:
            await ws.send(AUDIO)
            await ws.send("dance")
            await ws.send("end")
            messages = await asyncio.wait_for(read_all(ws), 30)
        assert messages[0]["hello"] and messages[1] == {"oops": "toy_unknown"}
        assert messages[-1] == {"done": 500}
        assert ws.close_code == 1000
        assert server.metrics.sessions.labels("/toy")._value.get() == 1


async def test_frames_after_the_end_are_drained_unanswered(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    async with toy_server(tiny_model_dir, tiny_model) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/toy") as ws:
            await ws.send("end")
            for _ in range(3):
                await ws.send("dance")  # read and dropped: no "oops"
            messages = await asyncio.wait_for(read_all(ws), 30)
        assert [m for m in messages if "oops" in m] == []
        assert messages[-1] == {"done": 0}


async def test_idle_timeout_is_a_policy_close_naming_the_limit(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    async with toy_server(tiny_model_dir, tiny_model, idle_timeout_s=0.3) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/toy") as ws:
            messages = await asyncio.wait_for(read_all(ws), 30)
        assert messages[-1] == {"done": 0}
        assert (ws.close_code, ws.close_reason) == (1008, "idle_timeout")


async def test_shutdown_tells_the_codec_and_closes_with_1001(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    async with toy_server(tiny_model_dir, tiny_model) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/toy") as ws:
            await ws.recv()
            await ws.send(AUDIO)
            reader = asyncio.ensure_future(read_all(ws))
            await asyncio.sleep(0.1)
            await server.shutdown()
            messages = await asyncio.wait_for(reader, 30)
        assert {"bye": "shutdown"} in messages and messages[-1] == {"done": 500}
        assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")


async def test_a_full_server_answers_with_the_codecs_own_reply(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    async with toy_server(tiny_model_dir, tiny_model, max_sessions=1) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/toy") as first:
            await first.recv()
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{server.port}/toy"):
                    pass
        response = refused.value.response
        assert response.status_code == 429
        assert json.loads(response.body) == {"toy": "server full: 1 sessions in use"}
        assert server.metrics.rejected.labels("full")._value.get() == 1
