"""Speech and noise made offline for tests (espeak-ng is installed by .ci/run)."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

RATE = 16000


def synthesize(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 mono at 16 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return np.asarray(soxr.resample(audio, rate, RATE), dtype=np.float32)


@dataclass(frozen=True)
class Segment:
    text: str
    start_s: float
    end_s: float


def speech_with_pauses(
    sentences: list[str], pause_s: float = 1.5, lead_s: float = 0.5, voice: str = "en-us"
) -> tuple[np.ndarray, list[Segment]]:
    """Sentences separated by silence, with where each one lies."""
    parts = [np.zeros(int(lead_s * RATE), dtype=np.float32)]
    segments = []
    position = lead_s
    for sentence in sentences:
        speech = synthesize(sentence, voice)
        parts.append(speech)
        segments.append(Segment(sentence, position, position + speech.size / RATE))
        position += speech.size / RATE + pause_s
        parts.append(np.zeros(int(pause_s * RATE), dtype=np.float32))
    return np.concatenate(parts), segments


def white_noise(seconds: float, level: float = 0.01, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def to_s16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def frames(pcm: bytes, size: int) -> list[bytes]:
    """``pcm`` cut into frames of ``size`` bytes, as a live client sends it."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
