"""WebRTC VAD framing and the utterance trigger (onset, pre-roll, hangover, max length).

The gate sees 16 kHz float32 audio in chunks of any size and turns it into utterance
events; audio outside utterances is discarded here, so it never reaches the model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .audio import to_int16_bytes
from .config import MODEL_SAMPLE_RATE, VadConfig

STARTUP_MS = 120


class SpeechDetector(Protocol):
    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


def webrtc_detector(aggressiveness: int) -> SpeechDetector:
    """The real detector; imported lazily so pure tests can inject a fake."""
    import webrtcvad

    detector: SpeechDetector = webrtcvad.Vad(aggressiveness)
    return detector


@dataclass(frozen=True)
class SpeechStart:
    """An utterance opens at stream sample ``at`` (pre-roll included); the VAD decided so
    at ``opened`` (the end of its onset, or ``at`` itself after a max-length cut)."""

    at: int
    opened: int = -1


@dataclass(frozen=True)
class SpeechAudio:
    """Samples that belong to the open utterance."""

    samples: np.ndarray


@dataclass(frozen=True)
class SpeechEnd:
    """The open utterance closes; ``speech_end`` is where its last voiced frame ends."""

    at: int
    speech_end: int
    reason: str


VadEvent = SpeechStart | SpeechAudio | SpeechEnd


class VadGate:
    """Frames audio for webrtcvad and runs the trigger state machine."""

    def __init__(
        self,
        config: VadConfig,
        detector_factory: Callable[[int], SpeechDetector] = webrtc_detector,
        sample_rate: int = MODEL_SAMPLE_RATE,
    ) -> None:
        self.sample_rate = sample_rate
        self._detector = detector_factory(config.aggressiveness)
        self._frame = sample_rate * config.frame_ms // 1000
        self._onset_frames = max(1, config.onset_ms // config.frame_ms)
        self._onset_needed = max(1, round(self._onset_frames * config.onset_ratio))
        self._preroll_frames = config.preroll_ms // config.frame_ms
        self._hangover_frames = max(1, config.hangover_ms // config.frame_ms)
        self._max_samples = int(config.max_utterance_s * sample_rate)
        # webrtcvad calls the first ~90 ms of any stream speech while its noise model
        # settles; those decisions are ignored (the audio still lands in the pre-roll).
        self._startup_frames = -(-STARTUP_MS // config.frame_ms)
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # stream sample index of the first sample in ``_pending``
        # Silence state: recent frames (start position, samples, voiced) for onset + pre-roll.
        self._ring: deque[tuple[int, np.ndarray, bool]] = deque(
            maxlen=self._preroll_frames + self._onset_frames
        )
        self._in_speech = False
        self._utterance_start = 0
        self._silent_run = 0
        self._last_voiced_end = 0
        self._frames_seen = 0
        self._force_open: int | None = None  # resumed: open (only) when a frame ends here

    # -- resume (streaming.resume): continue a stream another gate started ----------------

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def position(self) -> int:
        """Stream position of the next frame's first sample."""
        return self._position

    @property
    def silence_from(self) -> int:
        """Where the audio that a new utterance may still take begins (silence state):
        the oldest frame in the onset/pre-roll ring, else the next frame."""
        return self._ring[0][0] if self._ring else self._position

    def frames_seen_at(self, position: int) -> int:
        """How many frames this gate had seen when it reached ``position`` (a frame start)."""
        return max(0, self._frames_seen - (self._position - position) // self._frame)

    def warm_up(self, samples: np.ndarray) -> None:
        """Run the detector over whole frames of earlier audio and forget its decisions:
        webrtcvad adapts to the noise floor, so a resumed gate first hears what came before."""
        for i in range(samples.size // self._frame):
            frame = samples[i * self._frame : (i + 1) * self._frame]
            self._detector.is_speech(to_int16_bytes(frame), self.sample_rate)

    def resume(self, position: int, frames_seen: int, opened: int | None) -> list[VadEvent]:
        """Continue at ``position`` as the original gate did: in silence, or (``opened``)
        with an utterance that starts at ``position`` and opened once a frame ended at
        ``opened`` (at once if ``opened == position``)."""
        self._position = position
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = frames_seen
        self._ring.clear()
        self._in_speech = False
        self._force_open = None
        if opened is None:
            return []
        if opened == position:
            self._in_speech = True
            self._utterance_start = self._last_voiced_end = position
            self._silent_run = 0
            return [SpeechStart(position, position)]
        self._force_open = opened
        return []

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Consume any number of samples; returns events in stream order."""
        buf = np.concatenate([self._pending, samples]) if self._pending.size else samples
        events: list[VadEvent] = []
        audio: list[np.ndarray] = []
        n_frames = buf.size // self._frame
        for i in range(n_frames):
            frame = buf[i * self._frame : (i + 1) * self._frame]
            start = self._position + i * self._frame
            self._step(frame, start, events, audio)
        used = n_frames * self._frame
        self._pending = np.array(buf[used:], dtype=np.float32)
        self._position += used
        _flush_audio(events, audio)
        return events

    def flush(self, reason: str = "flush") -> list[VadEvent]:
        """Close the open utterance now (the buffered partial frame goes with it)."""
        if not self._in_speech:
            self._ring.clear()
            return []
        events: list[VadEvent] = []
        if self._pending.size:
            events.append(SpeechAudio(self._pending))
            self._position += self._pending.size
            self._pending = np.zeros(0, dtype=np.float32)
        end = self._position
        events.append(SpeechEnd(end, max(self._last_voiced_end, self._utterance_start), reason))
        self._in_speech = False
        self._ring.clear()
        return events

    def _step(
        self, frame: np.ndarray, start: int, events: list[VadEvent], audio: list[np.ndarray]
    ) -> None:
        voiced = self._detector.is_speech(to_int16_bytes(frame), self.sample_rate)
        voiced = voiced and self._frames_seen >= self._startup_frames
        self._frames_seen += 1
        end = start + frame.size
        if not self._in_speech:
            self._ring.append((start, frame, voiced))
            if self._force_open is not None:
                if end >= self._force_open:
                    self._open(events, audio, end)
                return
            recent = list(self._ring)[-self._onset_frames :]
            if sum(v for _, _, v in recent) >= self._onset_needed:
                self._open(events, audio, end)
            return
        audio.append(frame)
        if voiced:
            self._silent_run = 0
            self._last_voiced_end = end
        else:
            self._silent_run += 1
        if self._silent_run >= self._hangover_frames:
            self._close(events, audio, end, "vad")
        elif end - self._utterance_start >= self._max_samples:
            self._close(events, audio, end, "max_length")
            # Speech goes on: the next utterance starts right here, no onset needed.
            self._in_speech = True
            self._utterance_start = end
            self._last_voiced_end = end
            events.append(SpeechStart(end, end))

    def _open(self, events: list[VadEvent], audio: list[np.ndarray], end: int) -> None:
        frames = list(self._ring)
        self._utterance_start = frames[0][0]
        self._force_open = None
        events.append(SpeechStart(self._utterance_start, end))
        audio.extend(f for _, f, _ in frames)
        self._last_voiced_end = max((s + f.size for s, f, v in frames if v), default=end)
        self._ring.clear()
        self._in_speech = True
        self._silent_run = 0

    def _close(
        self, events: list[VadEvent], audio: list[np.ndarray], end: int, reason: str
    ) -> None:
        _flush_audio(events, audio)
        events.append(SpeechEnd(end, self._last_voiced_end, reason))
        self._in_speech = False
        self._silent_run = 0


def _flush_audio(events: list[VadEvent], audio: list[np.ndarray]) -> None:
    """Merge consecutive frames into one event so consumers append once per call."""
    if audio:
        events.append(SpeechAudio(np.concatenate(audio)))
        audio.clear()
