"""Fakes for unit-testing one component alone (never used by integration tests)."""

from __future__ import annotations

import numpy as np

from streaming.decoding import CtcVocab
from streaming.geometry import FrameGeometry
from streaming.random_model import BASE_960H_VOCAB

VOCAB = CtcVocab.from_vocab(BASE_960H_VOCAB)
GEOMETRY = FrameGeometry()


class LoudIsSpeech:
    """VAD stand-in: a frame is speech when it is loud."""

    def is_speech(self, buf: bytes, sample_rate: int) -> bool:
        samples = np.frombuffer(buf, dtype="<i2").astype(np.float32)
        return float(np.abs(samples).mean()) > 1000


def loud_detector(_mode: int) -> LoudIsSpeech:
    return LoudIsSpeech()


class ReceptiveFieldModel:
    """Frame t depends only on its own 400-sample receptive field, like the conv front end.

    With ``context_noise`` > 0 each frame is also nudged by the mean of the whole window,
    so overlapping windows disagree the way a real model's attention context makes them.
    """

    def __init__(self, context_noise: float = 0.0, seed: int = 0, vocab_size: int = 32) -> None:
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((400, vocab_size)).astype(np.float32) * 8
        self.projection[:, 0] -= 0.5  # a little bias towards blank, like real CTC output
        self.noise = rng.standard_normal(vocab_size).astype(np.float32)
        self.context_noise = context_noise
        self.calls = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.stack([self.window(row) for row in batch])

    def window(self, samples: np.ndarray) -> np.ndarray:
        frames = GEOMETRY.frames(samples.size)
        fields = np.stack([samples[320 * t : 320 * t + 400] for t in range(frames)])
        logits = fields @ self.projection
        if self.context_noise:
            logits = logits + self.context_noise * float(samples.mean() * 1e3) * self.noise
        logits = logits - logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
