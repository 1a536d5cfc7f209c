"""PCM decoding, validation and streaming resampling to the model rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from .config import MODEL_SAMPLE_RATE, SUPPORTED_ENCODINGS, SUPPORTED_SAMPLE_RATES
from .errors import StreamError

_SAMPLE_WIDTH = {"pcm_s16le": 2, "pcm_f32le": 4}


@dataclass(frozen=True)
class AudioFormat:
    """What the client declared it sends (mono is the only layout)."""

    sample_rate: int = MODEL_SAMPLE_RATE
    encoding: str = "pcm_s16le"

    def __post_init__(self) -> None:
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            rates = ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)
            raise StreamError(
                "unsupported_sample_rate",
                f"sample_rate {self.sample_rate} is not supported; use one of {rates}",
            )
        if self.encoding not in SUPPORTED_ENCODINGS:
            raise StreamError(
                "unsupported_encoding",
                f"encoding {self.encoding!r} is not supported; use "
                + " or ".join(repr(e) for e in SUPPORTED_ENCODINGS),
            )

    @property
    def sample_width(self) -> int:
        return _SAMPLE_WIDTH[self.encoding]


def decode_pcm(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Bytes of mono PCM → float32 samples in [-1, 1]; rejects partial samples and NaNs."""
    width = fmt.sample_width
    if len(data) % width:
        raise StreamError(
            "misaligned_audio",
            f"binary frame of {len(data)} bytes is not a whole number of {width}-byte "
            f"{fmt.encoding} samples",
        )
    if fmt.encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        raise StreamError("invalid_audio", "pcm_f32le frame contains NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0)


class Resampler:
    """Streaming resampler to the model rate; a pass-through when rates already match.

    A stateful stream (not per-chunk resampling) keeps chunk boundaries click-free and the
    sample count exact over the whole stream.
    """

    def __init__(self, in_rate: int, out_rate: int = MODEL_SAMPLE_RATE) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, samples: np.ndarray, *, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.float32)

    def finish(self) -> np.ndarray:
        """Drain what the filter still holds at the end of the stream."""
        return self.process(np.zeros(0, dtype=np.float32), last=True)


def to_int16_bytes(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] → s16le bytes (what webrtcvad consumes)."""
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
    return bytes(pcm.tobytes())
