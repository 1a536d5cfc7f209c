"""Shared by tests/test_codec_*.py: which model recognizes, a server on it, text checks.

Test modules import the fixtures they use by name (``recognizer``, ``speech``, ``spoken``).
The ``recognizer`` fixture is the one place that decides: the bundled trained model when
``streaming/models/tiny-en`` exists (then the words are checked against the reference),
else the tiny random model from conftest (then only the mechanics are checked).
"""

from __future__ import annotations

import functools
import io
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import RATE, Segment, speech_with_pauses, to_s16
from conftest import server_config

import streaming
from streaming.config import ModelConfig
from streaming.model import LoadedModel, load_model
from streaming.server import Server

BUNDLED = Path(streaming.__file__).parent / "models" / "tiny-en"
MAX_CER = 0.6  # calibrated to the bundled model as shipped (test CER ~0.3-0.5)
# Sentences spoken by espeak-ng en-us, one of the bundled model's training voices.
SENTENCES = ["please call stella and ask her to bring these things", "we need a small red snake"]


@dataclass(frozen=True)
class Recognizer:
    model_dir: Path
    model: LoadedModel
    trained: bool

    def check(self, hypothesis: str, reference: str) -> None:
        """Trained model: the reference was recognized (CER, and at least half the key
        words, each within the same tolerance); random model: nothing to check about
        words, the caller checks the mechanics."""
        if not self.trained:
            return
        hypothesis = " ".join(hypothesis.lower().split())
        error = cer(hypothesis, reference)
        assert error <= MAX_CER, f"CER {error:.2f} > {MAX_CER}: {hypothesis!r} vs {reference!r}"
        keywords = sorted({w for w in reference.split() if len(w) >= 4})
        heard = [k for k in keywords if any(cer(w, k) <= MAX_CER for w in hypothesis.split())]
        assert 2 * len(heard) >= len(keywords), f"heard {heard} of the key words {keywords}"


@pytest.fixture(scope="session")
def recognizer(request: pytest.FixtureRequest) -> Recognizer:
    if (BUNDLED / "config.json").is_file():
        model = load_model(ModelConfig(name=str(BUNDLED)), threads=1)
        return Recognizer(BUNDLED, model, trained=True)
    model_dir: Path = request.getfixturevalue("tiny_model_dir")
    tiny: LoadedModel = request.getfixturevalue("tiny_model")
    return Recognizer(model_dir, tiny, trained=False)


@functools.cache
def _spoken() -> tuple[np.ndarray, list[Segment]]:
    return speech_with_pauses(SENTENCES, pause_s=1.2)


@pytest.fixture(scope="session")
def spoken() -> tuple[np.ndarray, list[Segment]]:
    """Two sentences with 1.2 s pauses (float32, 16 kHz) and where each one lies."""
    return _spoken()


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, str]:
    """The same audio and what was said."""
    audio, segments = _spoken()
    return audio, " ".join(segment.text for segment in segments)


@asynccontextmanager
async def running_server(recognizer: Recognizer, **changes: object) -> AsyncIterator[Server]:
    model = ModelConfig(name=str(recognizer.model_dir), warmup=False)
    config = server_config(recognizer.model_dir, model=model, **changes)
    async with Server(config, model=recognizer.model) as server:
        yield server


def wav_bytes(audio: np.ndarray, rate: int = RATE) -> bytes:
    """A 16-bit mono WAV file, as a stock client would read from disk."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(to_s16(audio))
    return out.getvalue()


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edit distance over the reference length."""
    previous = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        current = [i]
        for j, r in enumerate(reference, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1] / max(len(reference), 1)
