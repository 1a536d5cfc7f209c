"""Audio files: conversion to what the server accepts, folder expansion, pacing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from client.files import (
    AudioFileError,
    chunk_samples,
    expand_paths,
    load_audio,
    paced_chunks,
    prepare_audio,
    split_chunks,
    to_int16,
)


def test_to_int16_clips_instead_of_wrapping() -> None:
    out = to_int16(np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0]))
    assert out.tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768]


def test_prepare_keeps_server_rates_and_mixes_to_mono() -> None:
    stereo = np.stack([np.full(4410, 0.5), np.full(4410, -0.1)], axis=1)
    mono, rate = prepare_audio(stereo, 44100)
    assert rate == 44100 and mono.shape == (4410,) and mono.dtype == np.int16
    assert mono[0] == round(0.2 * 32768)


@pytest.mark.parametrize("rate", [11025, 22050, 24000, 96000])
def test_prepare_resamples_other_rates_to_16k(rate: int) -> None:
    t = np.arange(rate) / rate
    mono, out_rate = prepare_audio(0.5 * np.sin(2 * np.pi * 440 * t), rate)
    assert out_rate == 16000
    assert abs(len(mono) - 16000) <= 2
    # still a 440 Hz tone of the same level
    spectrum = np.abs(np.fft.rfft(mono.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / len(mono) - 440) < 3
    assert 0.3 < np.abs(mono).max() / 32768 < 0.6


def test_load_audio(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "x.flac"), np.zeros((800, 3), dtype=np.float32), 8000)
    audio, rate = load_audio(tmp_path / "x.flac")
    assert rate == 8000 and audio.shape == (800,)
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(AudioFileError, match="cannot read audio"):
        load_audio(tmp_path / "bad.wav")


def test_expand_paths(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.wav", "d/a.FLAC", "d/sub/c.ogg", "d/readme.txt", "e.wav"):
        (tmp_path / name).write_bytes(b"")
    got = expand_paths([tmp_path / "d", tmp_path / "e.wav"])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "d/a.FLAC", "d/b.wav", "d/sub/c.ogg", "e.wav"
    ]  # fmt: skip
    with pytest.raises(AudioFileError, match="no such file"):
        expand_paths([tmp_path / "missing.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match="no audio files"):
        expand_paths([tmp_path / "empty"])


def test_chunks() -> None:
    assert chunk_samples(16000, 100) == 1600
    assert chunk_samples(44100, 100) == 4410
    assert chunk_samples(8000, 20) == 160
    with pytest.raises(ValueError):
        chunk_samples(8000, 0.01)
    parts = split_chunks(np.arange(3500, dtype=np.int16), 1600)
    assert [len(p) for p in parts] == [1600, 1600, 300]


async def test_paced_chunks_follow_real_time() -> None:
    chunks = split_chunks(np.zeros(16000, dtype=np.int16), 1600)  # 1 s in 100 ms chunks
    t0 = time.monotonic()
    times = [time.monotonic() - t0 async for _ in paced_chunks(chunks, 16000, 1.0)]
    assert len(times) == 10
    # chunk k is released once its last sample would have been recorded: (k+1) * 100 ms
    for k, t in enumerate(times):
        assert (k + 1) * 0.1 - 0.01 <= t <= (k + 1) * 0.1 + 0.15


async def test_paced_chunks_speed_and_fast() -> None:
    chunks = split_chunks(np.zeros(16000, dtype=np.int16), 1600)
    t0 = time.monotonic()
    assert len([c async for c in paced_chunks(chunks, 16000, 4.0)]) == 10
    assert 0.24 <= time.monotonic() - t0 <= 0.6
    t0 = time.monotonic()
    assert len([c async for c in paced_chunks(chunks, 16000, 0)]) == 10
    assert time.monotonic() - t0 < 0.2


async def test_paced_chunks_stop_early() -> None:
    chunks = split_chunks(np.zeros(160000, dtype=np.int16), 1600)  # 10 s
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.35, stop.set)
    t0 = time.monotonic()
    got = [c async for c in paced_chunks(chunks, 16000, 1.0, stop)]
    assert time.monotonic() - t0 < 0.6
    assert len(got) == 3
