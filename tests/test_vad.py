"""VAD trigger: onset, pre-roll, hangover, max length, flush; real webrtcvad on audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from audio_fixtures import RATE, silence, synthesize, white_noise
from fakes import loud_detector

from streaming.config import VadConfig
from streaming.vad import SpeechAudio, SpeechStart, VadEvent, VadGate


def gate(**changes: object) -> VadGate:
    """A gate whose detector calls loud frames speech: isolates the trigger logic."""
    return VadGate(VadConfig(**changes), loud_detector)  # type: ignore[arg-type]


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run(g: VadGate, audio: np.ndarray, chunk: int = 1234) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, audio.size, chunk):
        events += g.process(audio[i : i + chunk])
    return events


def utterances(events: list[VadEvent]) -> list[tuple[int, int, int, str]]:
    """(start, samples, speech_end, reason) per utterance."""
    out, start, size = [], 0, 0
    for e in events:
        if isinstance(e, SpeechStart):
            start, size = e.at, 0
        elif isinstance(e, SpeechAudio):
            size += e.samples.size
        else:
            assert start + size == e.at
            out.append((start, size, e.speech_end, e.reason))
    return out


def test_preroll_starts_utterance_before_onset_so_speech_is_not_clipped() -> None:
    g = gate(preroll_ms=300, onset_ms=90, hangover_ms=300)
    events = run(g, np.concatenate([silence(1.0), tone(1.0), silence(1.0)]))
    [(start, _size, speech_end, reason)] = utterances(events)
    # At least the pre-roll before speech begins at 1.0 s, at most pre-roll + onset window.
    assert RATE * (1.0 - 0.3 - 0.09 - 0.03) <= start <= RATE * 0.7
    assert speech_end == pytest.approx(RATE * 2.0, abs=480)
    assert reason == "vad"


def test_hangover_bridges_short_pauses_and_ends_after_long_ones() -> None:
    g = gate(hangover_ms=500)
    audio = np.concatenate(
        [tone(0.5), silence(0.3), tone(0.5), silence(1.0), tone(0.5), silence(1.0)]
    )
    found = utterances(run(g, audio))
    assert len(found) == 2
    first_end = found[0][0] + found[0][1]
    # Ends once 500 ms of trailing non-speech have passed, not before.
    assert first_end == pytest.approx(RATE * (1.3 + 0.5), abs=480)


def test_max_utterance_length_splits_continuous_speech_without_losing_audio() -> None:
    g = gate(max_utterance_s=1.0, preroll_ms=0)
    audio = tone(3.5)
    events = run(g, np.concatenate([audio, silence(1.0)]))
    found = utterances(events)
    assert [r for *_, r in found] == ["max_length", "max_length", "max_length", "vad"]
    # Utterances tile the audio: each starts where the previous one ended.
    for (s1, n1, _, _), (s2, _, _, _) in itertools.pairwise(found):
        assert s1 + n1 == s2


def test_silence_never_opens_an_utterance() -> None:
    assert run(gate(), silence(5.0)) == []


def test_flush_closes_the_open_utterance_with_buffered_audio() -> None:
    g = gate()
    events = g.process(tone(0.5)[:7777])
    events += g.flush()
    [(start, size, _, reason)] = utterances(events)
    assert reason == "flush"
    assert start + size == 7777
    assert g.flush() == []


def test_real_webrtcvad_finds_synthesized_speech_and_ignores_quiet_noise() -> None:
    speech = synthesize("the weather is nice today")
    g = VadGate(VadConfig(aggressiveness=2))
    found = utterances(run(g, np.concatenate([silence(0.5), speech, silence(1.0)])))
    assert len(found) == 1
    assert run(VadGate(VadConfig()), white_noise(5.0, 0.02)) == []
