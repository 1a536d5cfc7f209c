"""One stream's pure logic: PCM → resample → VAD gate → utterances → windows → events.

No asyncio and no torch here: the server feeds bytes in, asks for the next window to run,
hands the model's answer back, and sends whatever events come out. Keeping at most one
window in flight per session keeps the stitching strictly sequential and bounds the work
any single stream can queue in the shared engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .audio import AudioFormat, Resampler, decode_pcm
from .config import MODEL_SAMPLE_RATE, VadConfig, WindowConfig
from .decoding import CtcVocab, Word
from .errors import StreamError
from .events import ErrorEvent, Event, Final, Partial, WordTiming
from .geometry import FrameGeometry
from .stabilizer import Hypothesis, Stabilizer
from .utterance import StreamTail, Utterance, WindowRequest
from .vad import SpeechAudio, SpeechDetector, SpeechEnd, SpeechStart, VadGate, webrtc_detector
from .windowing import WindowPlanner, context_before


@dataclass(frozen=True)
class PendingFinal:
    """A final whose text is still to be decoded from ``scores`` (LM beam search).

    ``greedy`` is the final as greedy decoding reads it: the fallback, and the source of the
    timing fields. The driver decodes off the event loop, then calls :meth:`resolve`.
    """

    greedy: Final
    scores: np.ndarray  # (frames, vocab) log-probabilities of the whole utterance
    frame_probs: np.ndarray  # best-path probability per frame, for word confidences
    start_sample: int
    stride: int

    def resolve(self, words: list[tuple[str, int, int]]) -> Final:
        """The final with ``words`` (text, start frame, end frame) from the LM decoder."""
        timings = []
        for text, start, end in words:
            span = self.frame_probs[start : max(end, start + 1)]
            conf = float(span.mean()) if span.size else 0.0
            timings.append(
                WordTiming(
                    text,
                    _ms(self.start_sample + start * self.stride),
                    _ms(self.start_sample + end * self.stride),
                    round(conf, 3),
                    True,
                )
            )
        return replace(self.greedy, text=" ".join(t.word for t in timings), words=tuple(timings))


SessionEvent = Event | PendingFinal


class Session:
    """Turns one client's audio into partial and final events.

    With ``rescore_finals`` the session keeps each utterance's log-probabilities and emits
    a :class:`PendingFinal` instead of a :class:`Final`; partial words then all stay
    tentative, because the final decoding may change any of them.
    """

    def __init__(
        self,
        vocab: CtcVocab,
        geometry: FrameGeometry,
        vad: VadConfig,
        window: WindowConfig,
        *,
        detector_factory: Callable[[int], SpeechDetector] = webrtc_detector,
        rescore_finals: bool = False,
    ) -> None:
        self.vocab = vocab
        self.rescore_finals = rescore_finals
        self.geometry = geometry
        self.format = AudioFormat()
        self._planner = WindowPlanner(window, geometry, MODEL_SAMPLE_RATE)
        self._vad = VadGate(vad, detector_factory)
        # stream_context: keep enough audio to give a new utterance its left context,
        # counted back from its start, which the VAD places up to onset + pre-roll earlier.
        self._context = context_before(window, geometry, MODEL_SAMPLE_RATE)
        lookback = (vad.preroll_ms + vad.onset_ms + 2 * vad.frame_ms) * MODEL_SAMPLE_RATE // 1000
        self._tail = StreamTail(self._context + lookback) if self._context else None
        self._resampler = Resampler(self.format.sample_rate)
        self._utterances: deque[Utterance] = deque()
        self._next_utterance_id = 0
        self._inflight: WindowRequest | None = None
        self._last_partial: dict[int, tuple[str, str]] = {}
        self._input_samples = 0
        self.audio_started = False
        self.started = False
        self.ended = False
        self.windows_requested = 0
        self.finals_sent = 0

    # -- client input ---------------------------------------------------------------

    def start(self, fmt: AudioFormat) -> None:
        """Declare the input format; only before any audio."""
        if self.ended:
            raise StreamError("after_end", "start received after end")
        if self.audio_started or self.started:
            what = "audio was sent" if self.audio_started else "the stream was already started"
            raise StreamError("start_after_audio", f"start must come first, but {what}")
        self.format = fmt
        self._resampler = Resampler(fmt.sample_rate)
        self.started = True

    def feed(self, data: bytes) -> list[SessionEvent]:
        """Accept one binary frame of PCM; invalid frames raise a non-fatal StreamError."""
        if self.ended:
            raise StreamError("after_end", "audio received after end")
        samples = decode_pcm(data, self.format)
        if samples.size == 0:
            return []
        self.audio_started = True
        self._input_samples += samples.size
        return self._gate(self._resampler.process(samples))

    def flush(self) -> list[SessionEvent]:
        """Finalize the current utterance now."""
        if self.ended:
            raise StreamError("after_end", "flush received after end")
        return self._apply_vad(self._vad.flush("flush"))

    def end(self, reason: str = "end") -> list[SessionEvent]:
        """No more audio: close everything; finals follow as windows complete."""
        if self.ended:
            return []
        events = self._gate(self._resampler.finish())
        events += self._apply_vad(self._vad.flush(reason))
        self.ended = True
        return events + self._collect_finals()

    # -- inference ------------------------------------------------------------------

    def next_request(self) -> WindowRequest | None:
        """The next window to run, if one is due and none is in flight."""
        if self._inflight is not None:
            return None
        for utterance in self._utterances:
            request = utterance.next_request()
            if request is not None:
                self._inflight = request
                self.windows_requested += 1
                return request
        return None

    def complete(self, request: WindowRequest, logprobs: np.ndarray) -> list[SessionEvent]:
        """Stitch in the model's (frames, vocab) log-probabilities for ``request``."""
        self._check_inflight(request)
        utterance = self._find(request.utterance_id)
        hypothesis = utterance.apply(request.plan, logprobs)
        events: list[SessionEvent] = []
        if not request.plan.final:
            partial = self._partial(utterance, hypothesis, request)
            if partial is not None:
                events.append(partial)
        return events + self._collect_finals()

    def fail(self, request: WindowRequest, message: str) -> list[SessionEvent]:
        """The model failed on ``request``: its frames decode as silence, the stream goes on."""
        self._check_inflight(request)
        utterance = self._find(request.utterance_id)
        plan = request.plan
        frames = self.geometry.frames(plan.length)
        blank = np.full((frames, len(self.vocab.tokens)), -1e4, dtype=np.float32)
        blank[:, self.vocab.blank_id] = 0.0
        utterance.apply(plan, blank)
        error = ErrorEvent("inference_failed", f"inference failed for this stream: {message}")
        return [error, *self._collect_finals()]

    def cancel_inflight(self) -> None:
        """Forget the in-flight request (its result will never come)."""
        self._inflight = None

    # -- state ----------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing open, nothing owed: safe to close after ``end``."""
        return self._inflight is None and not self._utterances

    @property
    def utterances_opened(self) -> int:
        return self._next_utterance_id

    @property
    def backlog_samples(self) -> int:
        """Model-rate samples received but not yet turned into stable frames."""
        return sum(u.backlog for u in self._utterances)

    @property
    def audio_ms(self) -> int:
        """Input received so far, in ms of the stream."""
        return self._input_samples * 1000 // self.format.sample_rate

    # -- internals ------------------------------------------------------------------

    def _gate(self, samples: np.ndarray) -> list[SessionEvent]:
        if samples.size == 0:
            return []
        if self._tail is not None:
            self._tail.append(samples)
        return self._apply_vad(self._vad.process(samples))

    def _apply_vad(
        self, vad_events: list[SpeechStart | SpeechAudio | SpeechEnd]
    ) -> list[SessionEvent]:
        for event in vad_events:
            if isinstance(event, SpeechStart):
                utterance = Utterance(
                    self._next_utterance_id,
                    event.at,
                    self._planner,
                    Stabilizer(self.vocab, commit_early=not self.rescore_finals),
                    keep_scores=self.rescore_finals,
                    before=self._context_before(event.at),
                )
                self._next_utterance_id += 1
                self._utterances.append(utterance)
            elif isinstance(event, SpeechAudio):
                self._utterances[-1].append(event.samples)
            else:
                self._utterances[-1].close(event.reason, event.speech_end)
        return self._collect_finals()

    def _context_before(self, at: int) -> np.ndarray | None:
        if self._tail is None:
            return None
        return self._tail.before(at, self._context, self.geometry.stride)

    def _collect_finals(self) -> list[SessionEvent]:
        """Emit finals in utterance order for every leading utterance that is complete."""
        events: list[SessionEvent] = []
        while self._utterances and self._utterances[0].done:
            if self._inflight is not None and self._inflight.utterance_id == self._utterances[0].id:
                break
            utterance = self._utterances.popleft()
            final = self._final(utterance, utterance.finalize())
            if self.rescore_finals and utterance.stable_frames:
                stride = self.geometry.stride
                scores, probs = utterance.scores(), utterance.frame_probs
                events.append(PendingFinal(final, scores, probs, utterance.start_sample, stride))
            else:
                events.append(final)
            self._last_partial.pop(utterance.id, None)
        return events

    def _partial(
        self, utterance: Utterance, hypothesis: Hypothesis, request: WindowRequest
    ) -> Partial | None:
        committed = " ".join(w.text for w in hypothesis.committed)
        tentative = " ".join(w.text for w in hypothesis.tentative)
        if self._last_partial.get(utterance.id) == (committed, tentative):
            return None
        self._last_partial[utterance.id] = (committed, tentative)
        words = tuple(self._timing(utterance, w, True) for w in hypothesis.committed) + tuple(
            self._timing(utterance, w, False) for w in hypothesis.tentative
        )
        return Partial(
            utterance.id,
            committed,
            tentative,
            _ms(utterance.start_sample),
            _ms(utterance.start_sample + request.plan.end),
            words,
        )

    def _final(self, utterance: Utterance, hypothesis: Hypothesis) -> Final:
        self.finals_sent += 1
        words = tuple(self._timing(utterance, w, True) for w in hypothesis.committed)
        return Final(
            utterance.id,
            " ".join(w.word for w in words),
            _ms(utterance.start_sample),
            _ms(utterance.speech_end_sample),
            _ms(utterance.start_sample + len(utterance.audio)),
            words,
            utterance.reason,
        )

    def _timing(self, utterance: Utterance, word: Word, committed: bool) -> WordTiming:
        stride = self.geometry.stride
        return WordTiming(
            word.text,
            _ms(utterance.start_sample + word.start_frame * stride),
            _ms(utterance.start_sample + word.end_frame * stride),
            round(word.conf, 3),
            committed,
        )

    def _find(self, utterance_id: int) -> Utterance:
        for utterance in self._utterances:
            if utterance.id == utterance_id:
                return utterance
        raise RuntimeError(f"utterance {utterance_id} is not pending")

    def _check_inflight(self, request: WindowRequest) -> None:
        if self._inflight is not request:
            raise RuntimeError("result for a window that is not in flight")
        self._inflight = None


def _ms(samples: int) -> int:
    return samples * 1000 // MODEL_SAMPLE_RATE
