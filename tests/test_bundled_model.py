"""The shipped tiny-en model through the real server: the words come out, not just messages.

Sentences are spoken by espeak-ng en-us, one of the model's training voices (the sentences
themselves are not in its training text). Thresholds sit well above what the model scores
(CER ~0.2-0.3 on these), so a broken pipeline fails and a retrained model still passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from audio_fixtures import RATE, speech_with_pauses, synthesize, to_s16
from compat_support import BUNDLED, cer
from conftest import server_config
from wsclient import of_type, stream_pcm

from streaming.config import EngineConfig, ModelConfig, WindowConfig
from streaming.decoding import best_path, greedy_words, words_text
from streaming.model import LoadedModel, load_model
from streaming.server import Server

SENTENCES = [
    "it is a good day to go to the market",
    "she can scoop these things into three red bags",
]


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    assert (BUNDLED / "config.json").is_file(), "the bundled model ships with the package"
    return load_model(ModelConfig(name="tiny-en"), threads=1)


@pytest.fixture
async def bundled_server(bundled: LoadedModel) -> AsyncIterator[Server]:
    async with Server(server_config(BUNDLED), model=bundled) as running:
        yield running


def offline_text(model: LoadedModel, audio: np.ndarray) -> str:
    """Greedy decode of the whole utterance in one model call."""
    logprobs = model.infer(audio[None])[0]
    ids, probs = best_path(logprobs)
    return words_text(greedy_words(ids, probs, model.vocab))


async def test_bundled_model_is_loaded_by_short_name_and_recognizes_words(
    bundled_server: Server,
) -> None:
    audio, _ = speech_with_pauses(SENTENCES, pause_s=1.5)
    messages, code = await stream_pcm(bundled_server.url, to_s16(audio))
    assert code == 1000
    finals = of_type(messages, "final")
    assert len(finals) == len(SENTENCES)
    for final, reference in zip(finals, SENTENCES):
        text = final["text"]
        assert cer(text, reference) <= 0.45, f"{text!r} vs {reference!r}"
        # The words, spelled right; the model sometimes runs two together ("thingsinto").
        words = {w for w in reference.split() if len(w) >= 3}
        heard = {w for w in words if w in text.replace(" ", "")}
        assert 2 * len(heard) >= len(words), f"heard {sorted(heard)} in {text!r}"
        assert all(0 <= w["conf"] <= 1 for w in final["words"])


async def test_streaming_final_text_is_close_to_decoding_the_whole_utterance(
    bundled_server: Server, bundled: LoadedModel
) -> None:
    lead = np.zeros(RATE // 2, dtype=np.float32)
    pairs = []
    for sentence in SENTENCES:
        speech = synthesize(sentence)
        messages, _ = await stream_pcm(bundled_server.url, to_s16(np.concatenate([lead, speech])))
        (final,) = of_type(messages, "final")
        pairs.append((final["text"], offline_text(bundled, speech)))
    # Sliding windows see less context than one whole-utterance call, and the VAD trims
    # the edges, so a few letters may differ (one sentence alone has reached 0.128 with a
    # sound model); a CER over 0.12 across the sentences means broken stitching.
    errors = sum(cer(stream, offline) * len(offline) for stream, offline in pairs)
    assert errors / sum(len(offline) for _, offline in pairs) <= 0.12, pairs


def test_padded_masked_windows_give_each_window_its_own_outputs(tiny_model: LoadedModel) -> None:
    # the bundled model's layer-norm front end takes a mask: one call for three lengths.
    # fp32: the check is that masking is exact, which bf16 rounding (auto on some CPUs) hides
    bundled = load_model(ModelConfig(name="tiny-en", dtype="fp32", warmup=False), threads=1)
    assert bundled.masks_padding and not tiny_model.masks_padding  # group norm: no mask
    speech = np.tile(synthesize(SENTENCES[0]), 2)  # long enough for every row
    rows = [speech[:n].copy() for n in (37120, 30000, 16160)]
    together = bundled.infer_ragged(rows, batch_rows=4)  # + one silent row
    for row, output in zip(rows, together):
        alone = bundled.infer(row[None])[0]
        assert output.shape == alone.shape
        np.testing.assert_allclose(output, alone, atol=1e-3)
    with pytest.raises(ValueError, match="cannot take padded windows"):
        tiny_model.infer_ragged(rows)


async def test_gpu_window_and_batching_settings_give_the_same_words_on_the_cpu(
    bundled: LoadedModel,
) -> None:
    # What "auto" turns on for a CUDA device: windows that take left context from the
    # audio before an utterance, mixed lengths in one masked call, padded batches.
    config = server_config(
        BUNDLED,
        window=WindowConfig(stream_context="on"),
        engine=EngineConfig(pad_lengths="on", pad_batches="on"),
    )
    audio, _ = speech_with_pauses(SENTENCES, pause_s=1.5)
    later = np.concatenate([np.zeros(RATE * 2 // 5, dtype=np.float32), audio])
    async with Server(config, model=bundled) as running:
        runs = await asyncio.gather(
            *(stream_pcm(running.url, to_s16(a), pace=0.01) for a in (audio, later))
        )
        stats = running.engine.stats if running.engine else None
    assert stats is not None and stats.batches == stats.gathers  # one call per round
    offline = [offline_text(bundled, synthesize(s)) for s in SENTENCES]
    for messages, code in runs:
        assert code == 1000
        finals = [f["text"] for f in of_type(messages, "final")]
        assert len(finals) == len(offline)
        errors = sum(cer(stream, whole) * len(whole) for stream, whole in zip(finals, offline))
        assert errors / sum(len(whole) for whole in offline) <= 0.12, (finals, offline)
