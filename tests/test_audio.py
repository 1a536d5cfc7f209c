"""PCM decoding, validation and streaming resampling."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.audio import AudioFormat, Resampler, decode_pcm
from streaming.errors import StreamError


def test_s16le_decodes_to_float_range() -> None:
    data = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    assert np.allclose(decode_pcm(data, AudioFormat()), [0, 0.5, -1, 32767 / 32768])


def test_f32le_decodes_and_clips() -> None:
    data = np.array([0.25, 2.0], dtype="<f4").tobytes()
    assert decode_pcm(data, AudioFormat(16000, "pcm_f32le")).tolist() == [0.25, 1.0]


@pytest.mark.parametrize(("encoding", "size"), [("pcm_s16le", 3), ("pcm_f32le", 6)])
def test_partial_samples_are_rejected(encoding: str, size: int) -> None:
    with pytest.raises(StreamError) as info:
        decode_pcm(b"\0" * size, AudioFormat(16000, encoding))
    assert info.value.code == "misaligned_audio"
    assert str(size) in info.value.message


def test_nan_f32_is_rejected() -> None:
    data = np.array([0.1, np.nan], dtype="<f4").tobytes()
    with pytest.raises(StreamError, match="NaN"):
        decode_pcm(data, AudioFormat(16000, "pcm_f32le"))


def test_unsupported_formats_are_rejected_with_the_supported_list() -> None:
    with pytest.raises(StreamError, match="44100"):
        AudioFormat(96000)
    with pytest.raises(StreamError) as info:
        AudioFormat(16000, "opus")
    assert info.value.code == "unsupported_encoding"


@pytest.mark.parametrize("rate", [8000, 32000, 44100, 48000])
def test_streaming_resampler_keeps_duration_over_odd_chunks(rate: int) -> None:
    resampler = Resampler(rate)
    t = np.arange(rate * 2) / rate
    audio = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = [resampler.process(audio[i : i + 997]) for i in range(0, audio.size, 997)]
    total = sum(o.size for o in out) + resampler.finish().size
    assert abs(total - 32000) <= 2


def test_same_rate_is_a_pass_through() -> None:
    x = np.ones(10, dtype=np.float32)
    assert Resampler(16000).process(x) is x
