"""The noise benchmark's degradations: the SNR it claims, the noise it adds, the room."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import noise
from benchmarks.accuracy import pad

RATE = 16000


def tone_speech(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-like loudness changes
    return (0.2 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("snr_db", noise.SNRS_DB)
def test_noise_is_added_at_the_stated_snr_against_the_sentence_alone(snr_db: int) -> None:
    speech = tone_speech()
    clip = pad(speech)
    unit = noise.pink_noise(clip.size, np.random.default_rng(1))
    noisy = noise.add_noise(clip, speech, unit, snr_db)
    added = noisy.astype(np.float64) - clip
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.05)


def test_pink_noise_has_unit_power_and_more_power_low_than_high() -> None:
    pink = noise.pink_noise(RATE * 2, np.random.default_rng(0))
    assert np.mean(pink.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.rfft(pink)) ** 2
    freqs = np.fft.rfftfreq(pink.size, 1 / RATE)
    low = power[(freqs > 100) & (freqs < 200)].mean()
    high = power[(freqs > 4000) & (freqs < 4100)].mean()
    assert 10 < low / high < 80  # 1/f: about 27 between these bands


def test_babble_mixes_other_talkers_repeatably_at_unit_power() -> None:
    talkers = [tone_speech(s) * (i + 1) for i, s in enumerate((0.7, 0.9, 1.1, 1.3, 1.5))]
    first = noise.babble(RATE * 3, talkers, np.random.default_rng(7))
    again = noise.babble(RATE * 3, talkers, np.random.default_rng(7))
    other = noise.babble(RATE * 3, talkers, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.mean(first.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-3)


def test_a_room_keeps_the_level_and_leaves_a_reverberant_tail() -> None:
    speech = tone_speech()
    clip = pad(speech)
    heard = noise.degrade(noise.Condition("room", 0.7), speech, [], seed=0)
    assert heard.size == clip.size + RATE // 2
    rms = np.sqrt(np.mean(heard.astype(np.float64) ** 2))
    assert rms == pytest.approx(np.sqrt(np.mean(clip.astype(np.float64) ** 2)), rel=0.02)
    speech_end = RATE // 2 + speech.size  # pad() leads with 0.5 s
    tail = heard[speech_end + RATE // 10 : speech_end + RATE // 5]
    assert np.sqrt(np.mean(tail.astype(np.float64) ** 2)) > 0.05 * rms  # the room rings on


def test_every_condition_is_made_and_clean_is_the_padded_sentence() -> None:
    speech = tone_speech()
    labels = [c.label for c in noise.conditions()]
    assert labels[0] == "clean" and len(labels) == len(set(labels)) == 11
    np.testing.assert_array_equal(
        noise.degrade(noise.Condition("clean"), speech, [], seed=0), pad(speech)
    )
