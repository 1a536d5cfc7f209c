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
from math import gcd

import numpy as np

from .audio import AudioFormat, Resampler, decode_pcm
from .beam_commit import BeamCommits, BeamWord, CommitRule, CommitSearch
from .config import MODEL_SAMPLE_RATE, VadConfig, WindowConfig
from .decoding import CtcVocab, Word
from .errors import StreamError
from .events import ErrorEvent, Event, Final, Partial, WordTiming
from .geometry import FrameGeometry
from .resume import ResumeState, UtteranceState
from .stabilizer import Hypothesis, Stabilizer
from .utterance import StreamTail, Utterance, WindowRequest
from .vad import SpeechAudio, SpeechDetector, SpeechEnd, SpeechStart, VadGate, webrtc_detector
from .windowing import WindowPlanner, context_before


@dataclass(frozen=True)
class PendingFinal:
    """A final whose text is still to be decoded from ``scores`` (LM beam search).

    ``greedy`` is the final as greedy decoding reads it: the fallback, and the source of the
    timing fields. The driver decodes off the event loop, then calls :meth:`resolve`.
    With early commits the beam search covers only the frames from ``cut``: ``committed``
    (as the partials sent them) lead the final, ``context`` carries them to the LM.
    """

    greedy: Final
    scores: np.ndarray  # (frames, vocab) log-probabilities of the utterance from ``cut``
    frame_probs: np.ndarray  # best-path probability of every frame, for word confidences
    start_sample: int
    stride: int
    cut: int = 0
    committed: tuple[WordTiming, ...] = ()
    context: tuple[str, ...] = ()

    def resolve(self, words: list[BeamWord]) -> Final:
        """The final with ``words`` (text, start frame, end frame from ``cut``) from the LM
        decoder, after the committed words."""
        shifted = [(text, start + self.cut, end + self.cut) for text, start, end in words]
        timings = beam_timings(shifted, self.frame_probs, self.start_sample, self.stride)
        if self.committed:  # a resumed stream's seeds may reach past the cut
            after = self.committed[-1].end_ms
            timings = self.committed + tuple(t for t in timings if t.start_ms >= after)
        return replace(self.greedy, text=" ".join(t.word for t in timings), words=timings)


def beam_timings(
    words: list[BeamWord],
    frame_probs: np.ndarray,
    start_sample: int,
    stride: int,
    committed: bool = True,
) -> tuple[WordTiming, ...]:
    """Timed words from a beam's (text, start frame, end frame) words of one utterance;
    ``conf`` is the mean best-path probability of the word's frames."""
    timings = []
    for text, start, end in words:
        span = frame_probs[start : max(end, start + 1)]
        conf = float(span.mean()) if span.size else 0.0
        timings.append(
            WordTiming(
                text,
                _ms(start_sample + start * stride),
                _ms(start_sample + end * stride),
                round(conf, 3),
                committed,
            )
        )
    return tuple(timings)


SessionEvent = Event | PendingFinal | CommitSearch

# A resumed stream replays this much audio before the VAD gate proper starts, so webrtcvad
# (which adapts to the noise floor) has heard it; and this much more before a resampled
# stream's first kept sample, so the resampler's filter is filled as it was.
VAD_WARMUP_MS = 500
RESAMPLER_WARMUP_MS = 50


@dataclass
class _Resuming:
    """A resumed session until its replay reaches the point where the VAD gate starts."""

    state: ResumeState
    skip: int  # resampled samples still to drop
    warm: list[np.ndarray]


class Session:
    """Turns one client's audio into partial and final events.

    With ``rescore_finals`` the session keeps each utterance's log-probabilities and emits
    a :class:`PendingFinal` instead of a :class:`Final`; the final decoding may change any
    greedy word, so partials commit only what ``early_commits`` beam searches settle
    (:class:`CommitSearch` events, answered by :meth:`beam_committed`), or nothing.
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
        early_commits: bool = True,
        commit_rule: CommitRule | None = None,
    ) -> None:
        self.vocab = vocab
        self.rescore_finals = rescore_finals
        self.early_commits = early_commits
        self.commit_rule = commit_rule or CommitRule()
        self._beams: dict[int, BeamCommits] = {}
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
        self._resuming: _Resuming | None = None
        self._seeds: dict[int, tuple[WordTiming, ...]] = {}
        self._replay_windows: dict[int, UtteranceState] = {}
        self._committed: dict[int, tuple[WordTiming, ...]] = {}
        self.resumed_from: ResumeState | None = None
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

    def resume(self, state: ResumeState) -> None:
        """Continue a stream another session started (``streaming.resume``): the input
        format, stream position, utterance ids and committed words carry on from ``state``;
        the client then sends its audio from ``state.replay``."""
        if self.ended or self.audio_started or self.started:
            raise StreamError("resume_after_start", "resume must be the first message")
        self.start(AudioFormat(state.sample_rate, state.encoding))
        self._input_samples = state.replay
        self._next_utterance_id = state.open[0].id if state.open else state.next_id
        if self._tail is not None:
            self._tail.end = state.position
        for utterance in state.open:
            words = tuple(WordTiming(w, s, e, c, True) for w, s, e, c in utterance.words)
            if words:
                self._seeds[utterance.id] = words
                self._committed[utterance.id] = words
            self._replay_windows[utterance.id] = utterance
        self._resuming = _Resuming(state, state.skip, [])
        self.resumed_from = state

    def resume_state(self) -> ResumeState:
        """What a new session needs to continue this stream (see ``streaming.resume``):
        replay from before the first utterance whose final is not out yet (its start,
        less the VAD warm-up and left context), or, with none, from the oldest audio the
        VAD could still put into a new utterance."""
        if self._resuming is not None:  # the replay has not reached the VAD gate yet
            return replace(self._resuming.state, open=self._open_states())
        vad = self._vad
        first = self._utterances[0] if self._utterances else None
        anchor = first.start_sample if first is not None else vad.silence_from
        lead = max(VAD_WARMUP_MS * MODEL_SAMPLE_RATE // 1000, self._context)
        position, replay, skip = self._replay_point(max(0, anchor - lead))
        return ResumeState(
            replay=replay,
            skip=skip,
            position=position,
            vad_from=anchor,
            frames_seen=vad.frames_seen_at(anchor),
            next_id=first.id if first is not None else self._next_utterance_id,
            sample_rate=self.format.sample_rate,
            encoding=self.format.encoding,
            open=self._open_states(),
        )

    def _open_states(self) -> tuple[UtteranceState, ...]:
        if self._resuming is not None:
            return self._resuming.state.open
        return tuple(
            UtteranceState(
                u.id,
                u.start_sample,
                u.opened,
                tuple(u.windows),
                tuple(
                    (w.word, w.start_ms, w.end_ms, w.conf) for w in self._committed.get(u.id, ())
                ),
            )
            for u in self._utterances
        )

    def _replay_point(self, target: int) -> tuple[int, int, int]:
        """(stream position, input offset, resampled samples to drop) of a replay that
        starts at or just before ``target``: exact input offsets need a position on the
        grid where both rates meet, and a resampler needs a little audio before it."""
        rate = self.format.sample_rate
        if rate == MODEL_SAMPLE_RATE:
            return target, target, 0
        grid = MODEL_SAMPLE_RATE // gcd(rate, MODEL_SAMPLE_RATE)
        position = target // grid * grid
        warm = -(-RESAMPLER_WARMUP_MS * MODEL_SAMPLE_RATE // 1000 // grid) * grid
        start = max(0, position - warm)
        return position, start * rate // MODEL_SAMPLE_RATE, position - start

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
            partial = self._partial(utterance, hypothesis)
            if partial is not None:
                events.append(partial)
            beam = self._beams.get(utterance.id)
            if beam is not None and beam.due(utterance.stable_frames):
                scores, tentative = utterance.scores(), utterance.tentative_scores
                events.append(beam.search(utterance.id, utterance.stable_frames, scores, tentative))
        return events + self._collect_finals()

    def beam_committed(self, search: CommitSearch, words: list[BeamWord]) -> list[SessionEvent]:
        """Take the beam's words for ``search`` back: a partial if words committed (nothing
        once the utterance's final is out: that final did not count on them)."""
        beam = self._beams.get(search.utterance_id)
        if beam is None:
            return []
        if not beam.accept(search, words):
            return []
        utterance = self._find(search.utterance_id)
        partial = self._partial(utterance, utterance.decode_from(beam.cut))
        return [partial] if partial is not None else []

    def beam_failed(self, search: CommitSearch) -> None:
        """``search`` was not run (decoder busy or failed): a later window asks again."""
        beam = self._beams.get(search.utterance_id)
        if beam is not None:
            beam.failed()

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
        resuming = self._resuming
        if resuming is not None and resuming.skip:
            dropped = min(resuming.skip, samples.size)
            resuming.skip -= dropped
            samples = samples[dropped:]
        if samples.size == 0:
            return []
        if self._tail is not None:
            self._tail.append(samples)
        if resuming is not None:
            return self._warm_up(resuming, samples)
        return self._apply_vad(self._vad.process(samples))

    def _warm_up(self, resuming: _Resuming, samples: np.ndarray) -> list[SessionEvent]:
        """Replayed audio before the VAD gate's starting point warms the detector up; from
        there the gate goes on as the first session's did."""
        state = resuming.state
        held = sum(chunk.size for chunk in resuming.warm)
        before = max(0, min(samples.size, state.vad_from - state.position - held))
        if before:
            resuming.warm.append(samples[:before])
            samples = samples[before:]
        if samples.size == 0:
            return []
        self._resuming = None
        warm = np.concatenate(resuming.warm) if resuming.warm else samples[:0]
        vad = self._vad
        vad.warm_up(warm[warm.size % vad.frame :])
        first = state.open[0] if state.open else None
        opened = first.opened if first is not None and first.start == state.vad_from else None
        events = vad.resume(state.vad_from, state.frames_seen, opened)
        return self._apply_vad([*events, *vad.process(samples)])

    def _apply_vad(
        self, vad_events: list[SpeechStart | SpeechAudio | SpeechEnd]
    ) -> list[SessionEvent]:
        for event in vad_events:
            if isinstance(event, SpeechStart):
                replayed = self._replay_windows.pop(self._next_utterance_id, None)
                same = replayed is not None and replayed.start == event.at
                utterance = Utterance(
                    self._next_utterance_id,
                    event.at,
                    self._planner,
                    Stabilizer(self.vocab, commit_early=not self.rescore_finals),
                    keep_scores=self.rescore_finals,
                    whole_final=self.rescore_finals and not self.early_commits,
                    before=self._context_before(event.at),
                    opened=event.opened if event.opened >= 0 else event.at,
                    replay_windows=replayed.windows if replayed is not None and same else (),
                )
                if self.rescore_finals and self.early_commits:
                    self._beams[utterance.id] = BeamCommits(self.commit_rule, self.vocab)
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
            beam = self._beams.pop(utterance.id, None)
            committed = self._beam_words(utterance, beam)
            final = self._final(utterance, utterance.finalize(), committed)
            if self.rescore_finals and utterance.stable_frames:
                cut = beam.cut if beam is not None else 0
                events.append(
                    PendingFinal(
                        final,
                        utterance.final_scores(cut),
                        utterance.frame_probs,
                        utterance.start_sample,
                        self.geometry.stride,
                        cut,
                        self._seeded(utterance.id, committed),
                        beam.context if beam is not None else (),
                    )
                )
            else:
                events.append(final)
            self._last_partial.pop(utterance.id, None)
            self._committed.pop(utterance.id, None)
            self._seeds.pop(utterance.id, None)
        return events

    def _beam_words(self, utterance: Utterance, beam: BeamCommits | None) -> tuple[WordTiming, ...]:
        """The words early commits settled (none without them)."""
        if beam is None or not beam.words:
            return ()
        stride = self.geometry.stride
        return beam_timings(beam.words, utterance.frame_probs, utterance.start_sample, stride)

    def _partial(self, utterance: Utterance, hypothesis: Hypothesis) -> Partial | None:
        done = self._beam_words(utterance, self._beams.get(utterance.id))
        done += tuple(self._timing(utterance, w, True) for w in hypothesis.committed)
        open_ = tuple(self._timing(utterance, w, False) for w in hypothesis.tentative)
        done, open_ = self._seeded(utterance.id, done), self._seeded(utterance.id, open_, False)
        if done:
            self._committed[utterance.id] = done
        committed = " ".join(w.word for w in done)
        tentative = " ".join(w.word for w in open_)
        if self._last_partial.get(utterance.id) == (committed, tentative):
            return None
        self._last_partial[utterance.id] = (committed, tentative)
        words = done + open_
        return Partial(
            utterance.id,
            committed,
            tentative,
            _ms(utterance.start_sample),
            _ms(utterance.start_sample + utterance.heard),
            words,
        )

    def _final(
        self, utterance: Utterance, hypothesis: Hypothesis, early: tuple[WordTiming, ...] = ()
    ) -> Final:
        """The greedy final: ``early`` (LM-committed words), then greedy words."""
        self.finals_sent += 1
        words = early + tuple(self._timing(utterance, w, True) for w in hypothesis.committed)
        words = self._seeded(utterance.id, words)
        return Final(
            utterance.id,
            " ".join(w.word for w in words),
            _ms(utterance.start_sample),
            _ms(utterance.speech_end_sample),
            _ms(utterance.start_sample + len(utterance.audio)),
            words,
            utterance.reason,
        )

    def _seeded(
        self, utterance_id: int, words: tuple[WordTiming, ...], lead: bool = True
    ) -> tuple[WordTiming, ...]:
        """A resumed utterance's words: those committed before the resume (from the token),
        then the decoded ones after the last of them (re-decoded ones up to it are the same
        words, already sent). ``lead``: put the seeded words first."""
        seeds = self._seeds.get(utterance_id)
        if not seeds:
            return words
        later = tuple(w for w in words if w.start_ms >= seeds[-1].end_ms)
        return seeds + later if lead else later

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
