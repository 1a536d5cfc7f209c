"""LM finals (``--lm``): ordering, fallback and shutdown of the rescoring path.

The decoder here is a stand-in (the real LM decoder needs the optional pyctcdecode and
kenlm; tests/test_lm.py runs it through the server when they are installed), so these
tests pin down the driver's part in isolation: a final that is still being decoded holds
back the events behind it, a failing decoder falls back to the greedy final, and a client
that leaves mid-decode leaves nothing behind. The server, VAD and model are real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import speech_with_pauses, to_s16
from conftest import server_config
from websockets.asyncio.client import connect
from wsclient import of_type, recv_json, stream_pcm

from streaming.config import LmConfig
from streaming.errors import ModelLoadError
from streaming.model import LoadedModel
from streaming.rescoring import FinalRescorer, lm_path
from streaming.server import Server

SENTENCES = ["the cat sat on the mat", "a second sentence follows it"]


class SlowDecoder:
    """Names each utterance it decodes, after a delay long enough to reorder events."""

    def __init__(self, delay: float = 0.4, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.shapes: list[tuple[int, ...]] = []
        self.lock = threading.Lock()
        self.started = threading.Event()

    def decode_words(
        self, log_probs: np.ndarray, hotwords: object = (), context: object = ()
    ) -> list[tuple[str, int, int]]:
        self.started.set()
        time.sleep(self.delay)
        with self.lock:
            self.shapes.append(log_probs.shape)
            n = len(self.shapes)
        if self.fail:
            raise RuntimeError("decoder exploded")
        return [(f"utterance{n}", 0, 2), ("decoded", 2, log_probs.shape[0])]


async def run_with(
    tiny_model_dir: Path, tiny_model: LoadedModel, decoder: SlowDecoder
) -> tuple[list[dict[str, object]], int | None, Server]:
    audio, _ = speech_with_pauses(SENTENCES, pause_s=1.5)
    rescorer = FinalRescorer(decoder)
    # Finals alone: the stand-in counts its decodes (early commits: test_driver, test_lm).
    config = server_config(tiny_model_dir).replace(lm=LmConfig(early_commits=False))
    async with Server(config, model=tiny_model, rescorer=rescorer) as srv:
        messages, code = await stream_pcm(srv.url, to_s16(audio))
    return messages, code, srv


async def test_lm_finals_replace_greedy_text_and_keep_stream_order(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    decoder = SlowDecoder()
    messages, code, srv = await run_with(tiny_model_dir, tiny_model, decoder)
    assert code == 1000
    finals = of_type(messages, "final")
    assert [f["text"] for f in finals] == ["utterance1 decoded", "utterance2 decoded"]
    # The whole utterance's scores went to the decoder, one row per model frame.
    assert all(s[1] == len(tiny_model.vocab.tokens) and s[0] > 10 for s in decoder.shapes)
    # Word timings come from the decoder's frame spans: 20 ms frames from the utterance start.
    first = finals[0]["words"]
    assert isinstance(first, list) and first[0]["end_ms"] - first[0]["start_ms"] == 40
    # Nothing of utterance 1 arrives after its final, nothing of utterance 2 before it.
    ids = [m["utterance_id"] for m in messages if m["type"] in ("partial", "final")]
    assert ids == sorted(ids)
    final_at = messages.index(finals[0])
    assert all(m.get("utterance_id") != 0 for m in messages[final_at + 1 :])
    # Without early commits partials commit nothing: the LM may change any word.
    assert all(p["committed"] == "" for p in of_type(messages, "partial"))
    assert srv.health()["lm_finals"] == 2


async def test_failing_lm_decoder_falls_back_to_the_greedy_final(
    tiny_model_dir: Path, tiny_model: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    messages, code, _ = await run_with(tiny_model_dir, tiny_model, SlowDecoder(0.0, fail=True))
    assert code == 1000
    finals = of_type(messages, "final")
    assert len(finals) == len(SENTENCES), "an utterance is never lost to a decoder failure"
    assert all("utterance" not in str(f["text"]) for f in finals)
    assert "LM decoding failed" in caplog.text


async def test_client_leaving_during_lm_decoding_leaves_server_working(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    decoder = SlowDecoder(delay=1.0)
    audio, _ = speech_with_pauses(SENTENCES[:1], pause_s=1.0)
    rescorer = FinalRescorer(decoder)
    async with Server(server_config(tiny_model_dir), model=tiny_model, rescorer=rescorer) as srv:
        async with connect(srv.url) as ws:
            assert (await recv_json(ws))["type"] == "ready"
            await ws.send(to_s16(audio))
            await ws.send('{"type": "flush"}')
            # Wait until a final is being decoded, then leave before it is done.
            assert await asyncio.to_thread(decoder.started.wait, 20)
        assert not decoder.shapes, "the client left while its final was still being decoded"
        messages, code = await stream_pcm(srv.url, to_s16(audio))
        assert code == 1000 and len(of_type(messages, "final")) == 1
        for _ in range(100):
            if srv.health()["sessions"] == 0:
                break
            await asyncio.sleep(0.05)
        assert srv.health()["sessions"] == 0


def test_lm_file_is_checked_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        lm_path(LmConfig(path=str(tmp_path / "missing.arpa")), str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"ships lm\.arpa\.gz"):
        lm_path(LmConfig(path="model"), str(tmp_path))
    (tmp_path / "lm.arpa.gz").write_bytes(b"")
    assert lm_path(LmConfig(path="model"), str(tmp_path)) == tmp_path / "lm.arpa.gz"


def test_the_default_uses_the_models_lm_only_when_the_folder_has_one(tmp_path: Path) -> None:
    for off in ("none", "off", "None", None):
        assert lm_path(LmConfig(path=off), str(tmp_path)) is None
    assert LmConfig().path == "auto" and LmConfig().enabled
    assert not LmConfig(path="none").enabled
    assert lm_path(LmConfig(), str(tmp_path)) is None  # no lm.arpa.gz: greedy finals
    (tmp_path / "lm.arpa.gz").write_bytes(b"")
    assert lm_path(LmConfig(), str(tmp_path)) == tmp_path / "lm.arpa.gz"


def test_without_the_lm_packages_the_default_falls_back_to_greedy_finals_with_a_hint(
    tmp_path: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from streaming import rescoring

    (tmp_path / "lm.arpa.gz").write_bytes(b"")  # never read: the packages are "missing"
    monkeypatch.setattr(rescoring, "missing_lm_packages", lambda: ["kenlm"])
    with caplog.at_level("INFO", logger="streaming.rescoring"):
        built = rescoring.build_rescorer(LmConfig(), tiny_model.info.vocab, str(tmp_path))
    hints = [r.getMessage() for r in caplog.records if "greedy finals" in r.getMessage()]
    assert len(hints) == 1 and "kenlm" in hints[0] and "pip install" in hints[0], hints
    # With pyctcdecode there is still a beam search without an LM, for hotword streams.
    if built is not None:
        assert not built.has_lm and built.lm_path is None
        built.close()
    # Asked for by name, a missing LM is an error, not a fallback.
    monkeypatch.setattr(rescoring, "missing_lm_packages", lambda: [])
    with pytest.raises(ModelLoadError):
        rescoring.build_rescorer(LmConfig(path="model"), tiny_model.info.vocab, "/nonexistent")


async def test_a_model_without_an_lm_keeps_greedy_finals_by_default(server: Server) -> None:
    """The random test model ships no lm.arpa.gz: the default (auto) stays greedy."""
    assert server.health()["lm"] is None
    assert server.rescorer is None or not server.rescorer.has_lm
