"""The training augmentations (training/data.py) do what their names promise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("soxr")

from training.data import Augment, augment, opus_roundtrip, telephone, vocal_tract_warp

RATE = 16000

#: Every augmentation off: the identity, up to the gain range set per test.
NOTHING = Augment(
    speed_prob=0.0,
    warp_prob=0.0,
    reverb_prob=0.0,
    gain_db=(0.0, 0.0),
    babble_prob=0.0,
    noise_prob=0.0,
    telephone_prob=0.0,
    codec_prob=0.0,
)


def sine(hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * RATE / len(audio))


def band_power(audio: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[np.abs(freqs - hz) < 30].sum())


def test_vocal_tract_warp_by_one_gives_the_audio_back() -> None:
    audio = sine(300) + sine(1700, amplitude=0.2)
    out = vocal_tract_warp(audio, 1.0)
    assert out.shape == audio.shape
    assert np.abs(out[600:-600] - audio[600:-600]).max() < 1e-3


def test_vocal_tract_warp_moves_spectral_peaks_by_its_factor() -> None:
    assert peak_hz(vocal_tract_warp(sine(1000), 1.2)) == pytest.approx(1200, abs=40)
    assert peak_hz(vocal_tract_warp(sine(1000), 0.9)) == pytest.approx(900, abs=40)


def test_telephone_keeps_the_voice_band_and_cuts_what_lies_outside_it() -> None:
    inside, low, high = sine(1000), sine(120), sine(5000)
    mixed = inside + low + high
    out = telephone(mixed)
    assert out.shape == mixed.shape
    assert band_power(out, 1000) > 0.5 * band_power(mixed, 1000)
    assert band_power(out, 120) < 0.05 * band_power(mixed, 120)
    assert band_power(out, 5000) < 1e-3 * band_power(mixed, 5000)


def test_opus_roundtrip_keeps_length_and_the_signal() -> None:
    audio = sine(440) + sine(2500, amplitude=0.1)
    out = opus_roundtrip(audio, quality=0.0)
    assert out.shape == audio.shape
    assert not np.array_equal(out, audio)  # it went through the codec
    assert abs(peak_hz(out) - 440) < 10
    assert band_power(out, 440) == pytest.approx(band_power(audio, 440), rel=0.3)


def test_with_every_augmentation_off_the_audio_is_unchanged() -> None:
    audio = sine(500)
    out = augment(audio, NOTHING, np.random.default_rng(0), [sine(900)])
    np.testing.assert_allclose(out, audio, atol=1e-6)


def test_babble_mixes_other_talkers_at_the_chosen_snr() -> None:
    audio, talker = sine(500), sine(1300, seconds=0.4)
    cfg = dataclasses.replace(NOTHING, babble_prob=1.0, babble_snr_db=(10.0, 10.0))
    out = augment(audio, cfg, np.random.default_rng(1), [talker])
    added = out - audio
    assert band_power(added, 1300) > 100 * band_power(added, 500)
    snr = 10 * np.log10(float((audio**2).mean()) / float((added**2).mean()))
    assert snr == pytest.approx(10.0, abs=0.5)


def test_without_other_talkers_babble_adds_nothing() -> None:
    audio = sine(500)
    cfg = dataclasses.replace(NOTHING, babble_prob=1.0)
    np.testing.assert_allclose(augment(audio, cfg, np.random.default_rng(1), []), audio)


def test_the_same_seed_gives_the_same_augmented_audio() -> None:
    rng_audio = np.random.default_rng(5)
    audio = (rng_audio.standard_normal(RATE) * 0.1).astype(np.float32)
    talkers = [sine(700), sine(1100)]
    cfg = dataclasses.replace(Augment(), telephone_prob=0.5, codec_prob=0.5)
    first = augment(audio, cfg, np.random.default_rng([3, 1, 7]), talkers)
    second = augment(audio, cfg, np.random.default_rng([3, 1, 7]), talkers)
    np.testing.assert_array_equal(first, second)
    assert np.isfinite(first).all()
