"""Hotwords: a stream's phrases favoured by the final decoding, through every protocol.

Checked with the bundled tiny-en model on espeak-ng speech: names it misspells without
help come out right with them, the other sentences are decoded no worse, and every
protocol refuses an unusable list, in its own way, before any audio.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from audio_fixtures import speech_with_pauses, synthesize, to_s16
from compat_support import BUNDLED, cer
from conftest import server_config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsclient import of_type, recv_json, stream_pcm

from streaming.codecs import CODECS
from streaming.config import LmConfig, ModelConfig
from streaming.decoding import CtcVocab
from streaming.hotwords import (
    MAX_HOTWORDS,
    Hotword,
    HotwordError,
    alphabet,
    check_hotwords,
    from_json,
    hotword,
)
from streaming.model import LoadedModel, load_model
from streaming.server import Server

pytest.importorskip("pyctcdecode", reason="hotwords need the optional package pyctcdecode")

VOCAB = CtcVocab.from_vocab(json.loads((BUNDLED / "vocab.json").read_text(encoding="utf-8")))
# Names and jargon tiny-en misspells, each in a sentence of otherwise common words. Its
# streaming finals (greedy or LM) write "stelibefore", "bang alor", "post gears", "frowdow",
# "an estas"; the hotwords fix those. "priya" ("pree") and "django" ("gango") are too far
# from what the acoustics spell for a boost of 10 (or 20) to reach: they stay in the list,
# to show a hotword that cannot be matched costs the rest of the sentence nothing.
NAMED = {
    "please send the report to stella before noon": ["stella"],
    "my name is priya and i live in bangalore": ["priya", "bangalore"],
    "the postgres database needs a vacuum tonight": ["postgres"],
    "we met gandalf and frodo near the river": ["frodo"],
    "the nginx proxy forwards requests to django": ["django"],
    "anastasia bought a ticket to the show": ["anastasia"],
}
# The names the bundled model misspells and its hotwords put right, chosen again for each
# shipped model: step 81129 also misspells bangalore and anastasia with weight 10 given.
FIXED = {"stella", "postgres", "frodo"}
PLAIN = [
    "the train leaves the station at seven in the morning",
    "she wrote a long letter to her brother last week",
    "we need to buy bread and milk on the way home",
    "the children played in the garden until it got dark",
]
HOTWORDS = [{"phrase": w, "weight": 10} for words in NAMED.values() for w in words]


def word_errors(hypothesis: str, reference: str) -> int:
    return round(cer(hypothesis.split(), reference.split()) * len(reference.split()))  # type: ignore[arg-type]


# -- the list a client gives ------------------------------------------------------------


def test_a_list_of_strings_and_weighted_objects_is_read_lowercased_and_merged() -> None:
    got = from_json(["Stella", {"phrase": "  New   York ", "weight": 20}, "stella"])
    assert got == (Hotword("stella", 10.0), Hotword("new york", 20.0))
    assert from_json([{"phrase": "cat", "weight": -5}]) == (Hotword("cat", -5.0),)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("stella", "must be a list"),
        (["x"] * 0 + [f"w{i}" for i in range(MAX_HOTWORDS + 1)], "at most 100"),
        (["a" * 51], "at most 50"),
        (["one two three four five six seven"], "at most 6"),
        ([42], "must be text, got a number"),
        ([None], "must be text, got null"),
        ([["stella"]], "must be text, got a list"),
        ([""], "must not be empty"),
        ([{"phrase": 3}], "must be text"),
        ([{"weight": 3}], 'needs a "phrase"'),
        ([{"phrase": "x", "boost": 3}], "unknown fields ['boost']"),
        ([{"phrase": "x", "weight": "high"}], "must be a number, got text"),
        ([{"phrase": "x", "weight": True}], "must be a number, got a boolean"),
        ([{"phrase": "x", "weight": 51}], "between -50 and 50"),
    ],
)
def test_an_unusable_list_is_refused_with_what_to_change(value: Any, says: str) -> None:
    with pytest.raises(HotwordError, match=None) as refused:
        from_json(value)
    assert says in str(refused.value)


def test_a_character_the_model_never_writes_is_refused() -> None:
    letters = alphabet(VOCAB)
    assert {"a", "z", "'", " "} <= letters and "|" not in letters and "1" not in letters
    check_hotwords((hotword("o'brien"),), letters)
    with pytest.raises(HotwordError, match="cannot write: '\\+'"):
        check_hotwords((hotword("c++"),), letters)


def test_a_hotword_adds_its_weight_when_complete_and_a_share_while_being_spelled() -> None:
    from streaming.lm import HotwordBoost

    boost = HotwordBoost(
        [Hotword("stella", 10.0), Hotword("bad", -5.0)], known=frozenset({"bad"}), oov_bonus=3.0
    )
    assert boost.score("send it to stella") == 13.0  # unknown to the LM: its penalty repaid
    assert boost.score("stellar stella stella") == 26.0
    assert boost.score("a bad day") == -5.0
    assert "ste" in boost and "stellas" not in boost and "ba" not in boost
    assert boost.score_partial_token("ste") == pytest.approx(10.0 * 3 / 6)
    assert boost.score_partial_token("b") == 0.0  # suppression does not touch prefixes


def test_each_protocol_reads_its_own_hotword_spelling() -> None:
    from streaming.codecs import vosk_format, whisperlive_format
    from streaming.codecs.deepgram_params import parse_params

    vosk = vosk_format.apply_config(vosk_format.VoskOptions(), {"phrase_list": ["Stella", "[unk]"]})
    assert vosk.hotwords == (Hotword("stella"),)  # Vosk's grammar "anything else" is skipped
    options = whisperlive_format.parse_options('{"uid": "u", "hotwords": "stella, New York"}')
    assert options.hotwords == (Hotword("stella"), Hotword("new york"))
    params = parse_params(
        "keywords=stella:2&keywords=mumble:-1&keywords=huge:9&keywords=plain&keyterm=new%20york"
    )
    assert params.hotwords == (
        Hotword("stella", 20.0), Hotword("mumble", -10.0), Hotword("huge", 50.0),
        Hotword("plain", 10.0), Hotword("new york", 10.0),
    )  # fmt: skip


# -- the bundled model, end to end -------------------------------------------------------

needs_bundled = pytest.mark.skipif(
    not (BUNDLED / "config.json").is_file(), reason="the bundled tiny-en model is not present"
)


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(ModelConfig(name=str(BUNDLED)), threads=1)


@pytest.fixture(scope="module")
def sentence_audio() -> tuple[np.ndarray, list[str]]:
    sentences = [*NAMED, *PLAIN]
    audio, _ = speech_with_pauses(sentences, pause_s=1.2)
    return audio, sentences


def bundled_config(lm: str) -> Any:
    return server_config(BUNDLED, model=ModelConfig(name=str(BUNDLED), warmup=False)).replace(
        lm=LmConfig(path=lm)
    )


async def finals_of(url: str, pcm: bytes, start: dict[str, Any]) -> list[str]:
    messages, code = await stream_pcm(url, pcm, chunk_bytes=6400, start=start)
    assert code == 1000, messages[-3:]
    if start.get("hotwords"):
        assert of_type(messages, "started")[0]["hotwords"] == len(start["hotwords"])
    return [str(f["text"]) for f in of_type(messages, "final")]


@needs_bundled
@pytest.mark.parametrize("lm", ["auto", "none"])
async def test_names_the_model_misspells_come_out_right_with_hotwords_and_the_rest_no_worse(
    bundled: LoadedModel, sentence_audio: tuple[np.ndarray, list[str]], lm: str
) -> None:
    """With the LM (the default) and without one (beam search for this stream only)."""
    if lm == "auto" and not (BUNDLED / "lm.arpa.gz").is_file():
        pytest.skip("no lm.arpa.gz bundled with tiny-en")
    audio, sentences = sentence_audio
    pcm = to_s16(audio)
    async with Server(bundled_config(lm), model=bundled) as server:
        plain, boosted = await asyncio.gather(
            finals_of(server.url, pcm, {}),
            finals_of(server.url, pcm, {"hotwords": HOTWORDS}),
        )
    assert len(plain) == len(boosted) == len(sentences), (plain, boosted)
    named = len(NAMED)
    words_before = {w for text in plain[:named] for w in text.split()}
    words_after = {w for text in boosted[:named] for w in text.split()}
    assert not FIXED & words_before, f"the model already writes some names: {plain}"
    assert words_after >= FIXED, boosted[:named]
    assert sum(map(word_errors, boosted[:named], NAMED)) < sum(
        map(word_errors, plain[:named], NAMED)
    )
    # The sentences without a hotword: decoded no worse with the list given.
    errors_before = sum(map(word_errors, plain[named:], PLAIN))
    errors_after = sum(map(word_errors, boosted[named:], PLAIN))
    assert errors_after <= errors_before, (plain[named:], boosted[named:])


@needs_bundled
async def test_hotwords_reach_the_decoder_through_every_protocol(bundled: LoadedModel) -> None:
    """Native ``hotwords``, Vosk ``phrase_list``, Deepgram ``keywords``/``keyterm`` and a
    WhisperLive ``hotwords`` option each turn "stela" into "stella"."""
    sentence = "please send the report to stella before noon"
    audio = np.concatenate([synthesize(sentence), np.zeros(16000, np.float32)])
    pcm = to_s16(audio)
    texts: dict[str, str] = {}
    async with Server(bundled_config("none"), model=bundled) as server:
        url = server.url
        texts["greedy"] = " ".join(await finals_of(url, pcm, {}))
        texts["native"] = " ".join(await finals_of(url, pcm, {"hotwords": ["stella"]}))
        async with connect(url + "vosk") as ws:
            await ws.send(json.dumps({"config": {"sample_rate": 16000, "phrase_list": ["stella"]}}))
            replies = []  # a result may come in reply to a chunk or after eof: keep all
            for i in range(0, len(pcm), 8000):
                await ws.send(pcm[i : i + 8000])
                replies.append(await recv_json(ws))
            await ws.send('{"eof" : 1}')
            replies += [json.loads(m) async for m in ws]
            texts["vosk"] = " ".join(r["text"] for r in replies if r.get("text"))
        for query in ("keywords=stella:1", "keyterm=Stella"):
            dg = f"{url}v1/listen?encoding=linear16&sample_rate=16000&{query}"
            async with connect(dg) as ws:
                await ws.send(pcm)
                await ws.send(json.dumps({"type": "CloseStream"}))
                results = [json.loads(m) async for m in ws]
            texts[query] = " ".join(
                r["channel"]["alternatives"][0]["transcript"]
                for r in results
                if r.get("type") == "Results" and r.get("is_final")
            )
        async with connect(url + "whisperlive") as ws:
            await ws.send(json.dumps({"uid": "u1", "hotwords": "stella, noon"}))
            assert (await recv_json(ws))["message"] == "SERVER_READY"
            await ws.send(audio.tobytes())
            await ws.send(b"END_OF_AUDIO")
            segments = [json.loads(m).get("segments") async for m in ws]
    assert "stella" not in texts.pop("greedy").split()
    for protocol, text in texts.items():
        assert "stella" in text.split(), (protocol, text)
    assert any("stella" in s["text"] for batch in segments if batch for s in batch)


# -- refusals, in each protocol's own spelling -------------------------------------------


async def test_native_start_with_bad_hotwords_gets_an_error_and_a_good_start_still_works(
    server: Server,
) -> None:
    async with connect(server.url) as ws:
        await recv_json(ws)  # ready
        for hotwords, says in [
            ([f"w{i}" for i in range(MAX_HOTWORDS + 1)], "at most 100"),
            (["c++"], "cannot write"),
            ([{"phrase": "x", "weight": "high"}], "must be a number"),
            ("stella", "must be a list"),
        ]:
            await ws.send(json.dumps({"type": "start", "hotwords": hotwords}))
            error = await recv_json(ws)
            assert error["type"] == "error" and error["code"] == "invalid_hotwords", error
            assert says in error["message"] and error["fatal"] is False
        await ws.send(json.dumps({"type": "start", "hotwords": ["stella"]}))
        assert (await recv_json(ws)) == {
            "type": "started", "sample_rate": 16000, "encoding": "pcm_s16le", "hotwords": 1
        }  # fmt: skip
        await ws.send(to_s16(np.zeros(1600, np.float32)))
        await ws.send(json.dumps({"type": "start", "hotwords": ["noon"]}))
        late = await recv_json(ws)
        assert late["code"] == "start_after_audio" and "before any audio" in late["message"]


@pytest.mark.parametrize(
    ("phrase_list", "says"),
    [([42], "must be text"), (["c++"], "cannot write"), ("stella", "must be a list")],
)
async def test_vosk_phrase_list_it_cannot_use_closes_with_1003_and_why(
    server: Server, phrase_list: Any, says: str
) -> None:
    async with connect(server.url + "vosk") as ws:
        await ws.send(json.dumps({"config": {"phrase_list": phrase_list}}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1003
    assert ws.close_reason.startswith("phrase_list:") and says in ws.close_reason


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("keywords=stella:loud", "must be a number"),
        ("keyterm=" + "a" * 60, "at most 50"),
        ("&".join(f"keywords=w{i}" for i in range(MAX_HOTWORDS + 1)), "at most 100"),
    ],
)
async def test_deepgram_keywords_it_cannot_use_get_http_400(
    server: Server, query: str, says: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.url}v1/listen?{query}"):
            pass
    response = refused.value.response
    assert response.status_code == 400
    body = json.loads(response.body or b"{}")
    assert body["err_code"] == "INVALID_QUERY_PARAMETER" and says in body["err_msg"]


async def test_deepgram_keyterm_the_model_cannot_write_closes_with_1008(server: Server) -> None:
    async with connect(f"{server.url}v1/listen?keyterm=C%2B%2B") as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008
    assert ws.close_reason.startswith("INVALID_QUERY_PARAMETER") and "cannot write" in (
        ws.close_reason
    )


@pytest.mark.parametrize(
    ("hotwords", "says"), [(["one two three four five six seven"], "at most 6"), (["c#"], "cannot")]
)
async def test_whisperlive_hotwords_it_cannot_use_get_an_error_status(
    server: Server, hotwords: Any, says: str
) -> None:
    async with connect(server.url + "whisperlive") as ws:
        await ws.send(json.dumps({"uid": "u1", "hotwords": hotwords}))
        status = await recv_json(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert status["uid"] == "u1" and status["status"] == "ERROR" and says in status["message"]
    assert ws.close_code == 1008


def test_every_codec_declares_hotwords() -> None:
    assert {codec.name: codec.supports_hotwords for codec in CODECS} == {
        "native": True, "vosk": True, "whisperlive": True, "deepgram": True
    }  # fmt: skip


async def test_without_the_beam_search_hotwords_are_refused_not_ignored(
    tiny_model: LoadedModel,
) -> None:
    """No pyctcdecode on the server: no rescorer, so a stream's hotwords get a clear error."""
    from streaming.config import ServerConfig
    from streaming.driver import SessionDriver
    from streaming.engine import InferenceEngine
    from streaming.errors import StreamError
    from streaming.session import Session

    info = tiny_model.info
    session = Session(info.vocab, info.geometry, ServerConfig().vad, ServerConfig().window)
    engine = InferenceEngine(tiny_model)
    driver = SessionDriver(session, engine, ServerConfig(), lambda _: None)
    with pytest.raises(StreamError) as refused:
        driver.set_hotwords((hotword("stella"),))
    assert refused.value.code == "hotwords_unavailable"
    assert "pyctcdecode" in refused.value.message
