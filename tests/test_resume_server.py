"""Resume across real servers: a stream cut on one server continues on a second one (same
key) with the very finals the uncut stream gets; bad tokens get a precise error; a draining
server finishes the open utterance and tells the client to move.

Deterministic like tests/test_golden_wire.py: the client paces itself by the server's state
(``settle``), so both servers run the same windows on the same audio.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_golden_wire import (
    BUNDLED,
    SPEECH,
    Entry,
    Wire,
    bundled,  # noqa: F401 (a module fixture)
    chunks,
    demo_s16,
    golden_config,
    until,
    wire,
)

from streaming.config import LmConfig
from streaming.model import LoadedModel
from streaming.resume import TokenSigner
from streaming.server import Server

KEY = "a shared resume key for the tests"
CUT_MS = 5000  # inside the second sentence, after some of it is committed
FRAME = 3200  # 100 ms

pytestmark = pytest.mark.skipif(
    not (BUNDLED / "config.json").is_file(), reason="the bundled tiny-en model is not present"
)


def _config(lm: str = "none", **changes: Any) -> Any:
    return golden_config(resume_key=KEY, lm=LmConfig(path=lm), **changes)


def received(c: Wire, kind: str) -> list[dict[str, Any]]:
    return [e["recv"] for e in c.received if "recv" in e and e["recv"]["type"] == kind]


async def _open(server: Server, first: dict[str, Any], reply: int = 2) -> Wire:
    ctx = wire(server, "/v1/stream")
    c = await ctx.__aenter__()
    c._ctx = ctx  # type: ignore[attr-defined]
    await c.wait_messages(1)
    await c.send_json(first)
    await c.wait_messages(reply)
    return c


async def _stream(c: Wire, pcm: bytes) -> None:
    for frame in chunks(pcm, FRAME):
        await c.send_audio(frame, len(frame) // 32)


def _finals(c: Wire) -> list[dict[str, Any]]:
    return received(c, "final")


@pytest.mark.parametrize("lm", ["none", "auto"])
async def test_a_stream_cut_mid_utterance_resumes_on_another_server_with_the_same_finals(
    bundled: LoadedModel,  # noqa: F811
    lm: str,
) -> None:
    """Greedy finals (partials commit words) and LM finals (the default where the LM is
    installed: the final is decoded from the whole utterance's frames, so resuming must
    give the same frames)."""
    pcm = demo_s16(*SPEECH)
    start = {"type": "start", "sample_rate": 16000, "resume": True}
    async with Server(_config(lm), model=bundled) as whole_server:
        c = await _open(whole_server, start)
        await _stream(c, pcm)
        await c.send_json({"type": "end"})
        await c.finish()
        uncut = _finals(c)
        assert received(c, "ack"), "a resumable stream gets acks"

    async with (
        Server(_config(lm), model=bundled) as first,
        Server(_config(lm), model=bundled) as second,
    ):
        a = await _open(first, start)
        await _stream(a, pcm[: CUT_MS * 32])
        acks = received(a, "ack")
        assert a.ws.transport is not None
        a.ws.transport.abort()  # the network drops: no close frame
        token, offset = acks[-1]["token"], acks[-1]["offset"]
        shown = [p for p in received(a, "partial") if p["utterance_id"] == len(_finals(a))]
        committed = shown[-1]["committed"].split()
        if lm == "none":  # with LM finals every partial word stays tentative
            assert committed, "some words of the utterance in flight were committed"
        assert offset < CUT_MS * 16

        b = await _open(second, {"type": "resume", "token": token})
        reply = b.received[1]["recv"]
        assert reply["type"] == "resumed" and reply["offset"] == offset, reply
        assert reply["utterance_id"] == len(_finals(a))
        b.sent_ms = offset // 16
        await _stream(b, pcm[offset * 2 :])
        await b.send_json({"type": "end"})
        ended = await b.finish()
        resumed = 'streaming_resumes_total{outcome="resumed"} 1.0'
        assert resumed in second.metrics.render().decode()

    assert ended[-1] == {"close": [1000, ""]}
    assert _finals(a) + _finals(b) == uncut  # word for word, times and ids included
    for partial in received(b, "partial"):
        if partial["utterance_id"] == reply["utterance_id"]:
            assert partial["committed"].split()[: len(committed)] == committed
    assert all(p["audio_ms"] > CUT_MS - 3000 for p in received(b, "partial"))


@pytest.fixture
async def server(bundled: LoadedModel) -> Any:  # noqa: F811
    async with Server(_config(resume_ttl_s=60.0), model=bundled) as running:
        yield running


async def _rejected(server: Server, token: str) -> tuple[dict[str, Any], Entry]:
    c = await _open(server, {"type": "resume", "token": token})
    ended = await c.finish()
    return c.received[1]["recv"], ended[-1]


async def test_a_forged_or_foreign_token_gets_a_precise_fatal_error(server: Server) -> None:
    signer = TokenSigner(KEY.encode())
    c = await _open(server, {"type": "start", "resume": True})
    await _stream(c, demo_s16(0.0, 3.0))
    token = received(c, "ack")[-1]["token"]
    await c.close()
    assert signer.verify(token, model=server.config.model.name, now=0)

    version, kid, payload, mac = token.split(".")
    cases = {
        "bad_signature": f"{version}.{kid}.{payload[:-4]}AAAA.{mac}",
        "unknown_key": TokenSigner(b"another key, not the replicas'").sign(
            signer.verify(token, model=server.config.model.name, now=0)
        ),
        "malformed": token[: len(token) // 3],
    }
    for reason, bad in cases.items():
        error, close = await _rejected(server, bad)
        assert error["type"] == "error" and error["code"] == "resume_rejected", error
        assert error["fatal"] is True and error["reason"] == reason, error
        assert "start a new stream" in error["message"]
        assert close == {"close": [1008, "resume_rejected"]}


async def test_an_expired_token_is_refused(bundled: LoadedModel) -> None:  # noqa: F811
    async with Server(_config(resume_ttl_s=0.05), model=bundled) as short:
        c = await _open(short, {"type": "start", "resume": True})
        await _stream(c, demo_s16(0.0, 3.0))
        token = received(c, "ack")[-1]["token"]
        await c.close()
        await asyncio.sleep(1.1)
        error, _ = await _rejected(short, token)
    assert error["reason"] == "expired"


async def test_clients_that_do_not_ask_get_no_acks(server: Server) -> None:
    c = await _open(server, {"type": "start"})
    await _stream(c, demo_s16(0.0, 3.0))
    await c.send_json({"type": "end"})
    await c.finish()
    assert _finals(c) and not received(c, "ack")


async def test_a_draining_server_finishes_the_utterance_then_moves_the_stream(
    bundled: LoadedModel,  # noqa: F811
) -> None:
    pcm = demo_s16(*SPEECH)
    async with Server(_config(), model=bundled) as second:
        first = Server(_config(), model=bundled)
        await first.start()
        a = await _open(first, {"type": "start", "resume": True})
        await _stream(a, pcm[: CUT_MS * 32])
        await first.shutdown()
        ended = await a.finish()
        moved = received(a, "moved")
        assert ended[-1]["close"][0] == 1012
        assert [e["recv"]["type"] for e in a.received[-2:] if "recv" in e] == ["final", "moved"]
        last = _finals(a)[-1]
        assert last["reason"] == "shutdown" and last["text"]

        b = await _open(second, {"type": "resume", "token": moved[0]["token"]})
        assert b.received[1]["recv"]["utterance_id"] == last["utterance_id"] + 1
        offset = moved[0]["offset"]
        b.sent_ms = offset // 16
        await _stream(b, pcm[offset * 2 :])
        await b.send_json({"type": "end"})
        await b.finish()
    after = _finals(b)
    assert after and after[0]["utterance_id"] == last["utterance_id"] + 1
    # Nothing said before the cut comes again: the next utterance starts after it.
    assert all(w["start_ms"] >= last["audio_ms"] for f in after for w in f["words"])


async def test_a_resumed_stream_keeps_its_hotwords(server: Server) -> None:
    start = {"type": "start", "resume": True, "hotwords": ["stella", "plastic snake"]}
    c = await _open(server, start)
    await _stream(c, demo_s16(0.0, 4.0))  # acks follow its commits and finals
    await until(lambda: bool(received(c, "ack")))
    token = received(c, "ack")[-1]["token"]
    await c.close()
    b = await _open(server, {"type": "resume", "token": token})
    assert b.received[1]["recv"]["type"] == "resumed"
    (endpoint,) = server._connections
    assert [h.phrase for h in endpoint.driver.hotwords] == ["stella", "plastic snake"]
    await b.close()
