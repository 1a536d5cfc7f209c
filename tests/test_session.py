"""The Session state machine alone: PCM in through the real webrtcvad, window requests out,
log-probabilities back in, events out. No server, no event loop.

Where the text must be exact, windows are answered with log-probabilities that spell a
known text through the vocabulary (frame f of an utterance reads the same token whichever
window covers it, like a model whose frames depend on their own audio only). Where only
the invariants matter, the real tiny random Wav2Vec2 answers: its overlapping windows
disagree with each other the way a trained model's do.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import soxr
from audio_fixtures import RATE, frames, silence, synthesize, to_s16
from fakes import GEOMETRY, VOCAB
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.audio import AudioFormat
from streaming.beam_commit import BeamWord, CommitSearch
from streaming.config import VadConfig, WindowConfig
from streaming.decoding import CtcVocab, best_path, greedy_words
from streaming.errors import StreamError
from streaming.events import ErrorEvent, Final, Partial
from streaming.model import LoadedModel
from streaming.session import PendingFinal, Session, SessionEvent
from streaming.utterance import WindowRequest

FRAME_MS = GEOMETRY.stride * 1000 // RATE  # one model frame: 20 ms
LIVE = 2 * RATE // 50  # one 20 ms frame of s16le, as a live client sends it
LEAD = 5  # blank model frames before a spelled text starts
FOX = "the quick brown fox jumps over the lazy dog"  # 3.2 s with no pause in it

Answer = Callable[[WindowRequest], np.ndarray]


def spelled(text: str) -> np.ndarray:
    """CTC ids that spell ``text``: LEAD blanks, then letter, blank, ..., delimiter, blank."""
    ids = [VOCAB.blank_id] * LEAD
    for word in text.split():
        for letter in word:
            ids += [VOCAB.tokens.index(letter), VOCAB.blank_id]
        ids += [VOCAB.delimiter_id, VOCAB.blank_id]
    return np.array(ids, dtype=np.int32)


class Speller:
    """Answers a window with log-probs spelling ``texts[utterance id]`` (blank past the end)."""

    def __init__(self, *texts: str) -> None:
        self.scripts = [spelled(text) for text in texts]

    def __call__(self, request: WindowRequest) -> np.ndarray:
        uid = request.utterance_id
        script = self.scripts[uid] if uid < len(self.scripts) else spelled("")
        count = GEOMETRY.frames(request.plan.length)
        index = np.arange(count) + request.plan.start // GEOMETRY.stride
        ids = np.full(count, VOCAB.blank_id, dtype=np.int32)
        inside = (index >= 0) & (index < script.size)
        ids[inside] = script[index[inside]]
        logprobs = np.full((count, len(VOCAB.tokens)), -1e4, dtype=np.float32)
        logprobs[np.arange(count), ids] = 0.0
        return logprobs


def make_session(
    *,
    rescore_finals: bool = False,
    early_commits: bool = True,
    window: WindowConfig | None = None,
    **vad: float,
) -> Session:
    """A session with the real webrtcvad (its default detector)."""
    config = VadConfig(**vad)  # type: ignore[arg-type]
    return Session(
        VOCAB,
        GEOMETRY,
        config,
        window or WindowConfig(),
        rescore_finals=rescore_finals,
        early_commits=early_commits,
    )


def run_windows(session: Session, answer: Answer) -> list[SessionEvent]:
    """Run every due window, one in flight at a time, as the driver does."""
    events: list[SessionEvent] = []
    while (request := session.next_request()) is not None:
        events += session.complete(request, answer(request))
    return events


def stream(
    session: Session, pcm: bytes, answer: Answer, *, size: int = LIVE, end: bool = True
) -> list[SessionEvent]:
    """Feed ``pcm`` in frames of ``size`` bytes with every due window run after each."""
    events: list[SessionEvent] = []
    for frame in frames(pcm, size):
        events += session.feed(frame)
        events += run_windows(session, answer)
    if end:
        events += session.end()
        events += run_windows(session, answer)
    return events


def finals(events: list[SessionEvent]) -> list[Final]:
    return [e for e in events if isinstance(e, Final)]


def partials(events: list[SessionEvent]) -> list[Partial]:
    return [e for e in events if isinstance(e, Partial)]


@pytest.fixture(scope="module")
def hello() -> np.ndarray:
    """'hello world' between 0.5 s and 1.0 s of silence."""
    return np.concatenate([silence(0.5), synthesize("hello world"), silence(1.0)])


@pytest.fixture(scope="module")
def fox() -> np.ndarray:
    return np.concatenate([silence(0.5), synthesize(FOX), silence(1.0)])


# -- the way through ----------------------------------------------------------------------


def test_speech_gives_partials_that_commit_word_by_word_then_one_final(hello: np.ndarray) -> None:
    session = make_session()
    events = stream(session, to_s16(hello), Speller("hello world"))

    # A word commits once the delimiter after it is in stable frames; the final commits all.
    assert [(p.committed, p.tentative) for p in partials(events)] == [
        ("", "hello world"),
        ("hello", "world"),
        ("hello world", ""),
    ]
    [final] = finals(events)
    assert events[-1] is final
    assert (final.utterance_id, final.text, final.reason) == (0, "hello world", "vad")
    # The pre-roll opens the utterance before the speech at 0.5 s; the hangover runs past it.
    assert final.start_ms < 500 < final.end_ms < final.audio_ms <= session.audio_ms
    hello_word, world_word = final.words
    assert (hello_word.word, world_word.word) == ("hello", "world")
    # 'h' is frame LEAD of the utterance; 'o' (frame LEAD + 8) ends the word.
    assert hello_word.start_ms == final.start_ms + LEAD * FRAME_MS
    assert hello_word.end_ms == final.start_ms + (LEAD + 9) * FRAME_MS
    assert all(w.committed and w.conf == 1.0 for w in final.words)
    assert session.audio_ms == hello.size * 1000 // RATE
    assert session.idle and session.finals_sent == 1 and session.utterances_opened == 1


def test_declared_rate_and_encoding_are_resampled_and_audio_ms_counts_the_input(
    hello: np.ndarray,
) -> None:
    slow = np.asarray(soxr.resample(hello, RATE, 8000), dtype="<f4")
    session = make_session()
    session.start(AudioFormat(8000, "pcm_f32le"))
    events = stream(session, slow.tobytes(), Speller("hello world"), size=4 * 160)
    assert [f.text for f in finals(events)] == ["hello world"]
    assert session.audio_ms == slow.size * 1000 // 8000


@pytest.mark.parametrize("context", ["off", "on"])
def test_the_real_model_answers_every_window_with_the_frames_the_session_planned(
    context: str, hello: np.ndarray, tiny_model: LoadedModel
) -> None:
    # The failure path decodes geometry.frames(plan.length) blank frames in a window's
    # place: the real model must give exactly that many, with and without stream context.
    window = WindowConfig(stream_context=context)
    session = Session(tiny_model.vocab, tiny_model.geometry, VadConfig(), window)
    answered: list[WindowRequest] = []

    def answer(request: WindowRequest) -> np.ndarray:
        logprobs = tiny_model.infer(request.samples[None])[0]
        assert logprobs.shape[0] == GEOMETRY.frames(request.plan.length)
        answered.append(request)
        return logprobs

    events = stream(session, to_s16(hello), answer)
    assert len(answered) == session.windows_requested > 3
    assert [f.reason for f in finals(events)] == ["vad"]
    if context == "on":  # the first window reaches back into the silence before
        assert answered[0].plan.start < 0


# -- control messages and errors ------------------------------------------------------------


def test_start_must_come_before_any_audio_and_only_once() -> None:
    session = make_session()
    assert session.feed(b"") == []  # an empty frame is no audio
    session.start(AudioFormat(8000))
    with pytest.raises(StreamError, match="already started") as again:
        session.start(AudioFormat(16000))
    late = make_session()
    late.feed(to_s16(silence(0.02)))
    with pytest.raises(StreamError, match="audio was sent") as after_audio:
        late.start(AudioFormat(8000))
    for error in (again.value, after_audio.value):
        assert (error.code, error.fatal) == ("start_after_audio", False)


def test_a_bad_frame_is_rejected_alone_and_the_stream_goes_on(hello: np.ndarray) -> None:
    session = make_session()
    with pytest.raises(StreamError) as misaligned:
        session.feed(b"\x00\x01\x02")
    assert (misaligned.value.code, misaligned.value.fatal) == ("misaligned_audio", False)
    assert session.audio_ms == 0 and not session.audio_started
    events = stream(session, to_s16(hello), Speller("hello world"))
    assert [f.text for f in finals(events)] == ["hello world"]

    floats = make_session()
    floats.start(AudioFormat(RATE, "pcm_f32le"))
    with pytest.raises(StreamError) as nan:
        floats.feed(np.array([0.1, np.nan], dtype="<f4").tobytes())
    assert (nan.value.code, nan.value.fatal) == ("invalid_audio", False)


def test_nothing_but_a_repeated_end_is_accepted_after_end() -> None:
    session = make_session()
    session.feed(to_s16(silence(0.1)))
    assert session.end() == []
    calls: list[Callable[[], object]] = [
        lambda: session.feed(to_s16(silence(0.02))),
        session.flush,
        lambda: session.start(AudioFormat()),
    ]
    for call in calls:
        with pytest.raises(StreamError) as after:
            call()
        assert after.value.code == "after_end"
    assert session.end() == []
    assert session.ended and session.idle


def test_flush_finalizes_the_open_utterance_and_later_speech_opens_the_next(
    fox: np.ndarray,
) -> None:
    session = make_session()
    answer = Speller("the quick", "lazy dog")
    cut = int(2.1 * RATE)  # mid-sentence
    pcm = to_s16(fox)
    events = stream(session, pcm[: 2 * cut], answer, end=False)
    assert finals(events) == []
    events = session.flush() + run_windows(session, answer)
    [first] = finals(events)
    assert (first.utterance_id, first.text, first.reason) == (0, "the quick", "flush")
    assert first.audio_ms == cut * 1000 // RATE  # the buffered part of a VAD frame went too
    assert session.flush() == []  # nothing open any more
    events = stream(session, pcm[2 * cut :], answer)
    assert [(f.utterance_id, f.text, f.reason) for f in finals(events)] == [(1, "lazy dog", "vad")]


def test_end_mid_utterance_closes_it_and_its_final_follows_the_last_window(
    fox: np.ndarray,
) -> None:
    session = make_session()
    answer = Speller("the quick")
    cut = int(2.1 * RATE)
    events = stream(session, to_s16(fox)[: 2 * cut], answer, end=False)
    events = session.end()
    assert finals(events) == [] and not session.idle  # windows still owed
    events += run_windows(session, answer)
    [final] = finals(events)
    assert (final.text, final.reason, final.audio_ms) == ("the quick", "end", 2100)
    assert session.idle and session.next_request() is None


def test_max_utterance_length_cuts_continuous_speech_into_back_to_back_utterances(
    fox: np.ndarray,
) -> None:
    session = make_session(max_utterance_s=1.0)
    out = finals(stream(session, to_s16(fox), Speller()))
    assert len(out) == session.utterances_opened >= 3
    assert [f.reason for f in out] == ["max_length"] * (len(out) - 1) + ["vad"]
    for before, after in itertools.pairwise(out):
        assert after.start_ms == before.audio_ms  # no audio lost between them
    for cut in out[:-1]:
        assert 1000 <= cut.audio_ms - cut.start_ms < 1000 + 30  # within one VAD frame


# -- inference ------------------------------------------------------------------------------


def test_one_window_is_in_flight_at_a_time_and_only_its_answer_is_taken(
    hello: np.ndarray,
) -> None:
    session = make_session()
    answer = Speller("hello world")
    session.feed(to_s16(hello))
    request = session.next_request()
    assert request is not None
    assert session.next_request() is None
    impostor = WindowRequest(
        request.utterance_id, request.plan, request.samples.copy(), request.key
    )
    with pytest.raises(RuntimeError, match="not in flight"):
        session.complete(impostor, answer(impostor))
    with pytest.raises(RuntimeError, match="not in flight"):
        session.fail(impostor, "boom")
    session.complete(request, answer(request))
    with pytest.raises(RuntimeError, match="not in flight"):
        session.complete(request, answer(request))


def test_a_failed_window_reads_as_silence_and_its_utterance_still_gets_its_final(
    hello: np.ndarray,
) -> None:
    session = make_session()
    answer = Speller("hello world")
    events: list[SessionEvent] = []
    for frame in frames(to_s16(hello), LIVE):
        events += session.feed(frame)
        while (request := session.next_request()) is not None:
            if session.windows_requested == 1:  # frames 0-11 hold 'h', 'e', 'l', 'l'
                events += session.fail(request, "model exploded")
            else:
                events += session.complete(request, answer(request))
    events += session.end()
    [error] = [e for e in events if isinstance(e, ErrorEvent)]
    assert (error.code, error.fatal) == ("inference_failed", False)
    assert "model exploded" in error.message
    assert [f.text for f in finals(events)] == ["o world"]


def test_an_utterance_whose_every_window_fails_still_gets_one_empty_final(
    hello: np.ndarray,
) -> None:
    session = make_session()
    events: list[SessionEvent] = []
    for frame in [*frames(to_s16(hello), LIVE), None]:
        events += session.feed(frame) if frame is not None else session.end()
        while (request := session.next_request()) is not None:
            events += session.fail(request, "down")
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == session.windows_requested > 1
    assert partials(events) == []
    assert [(f.text, f.reason) for f in finals(events)] == [("", "vad")]
    assert session.idle


def test_cancel_inflight_forgets_the_window_so_it_is_planned_again(hello: np.ndarray) -> None:
    session = make_session()
    answer = Speller("hello world")
    session.feed(to_s16(hello))
    lost = session.next_request()
    assert lost is not None
    session.cancel_inflight()
    with pytest.raises(RuntimeError, match="not in flight"):
        session.complete(lost, answer(lost))
    again = session.next_request()
    assert again is not None and again.plan == lost.plan
    assert np.array_equal(again.samples, lost.samples)
    events = session.complete(again, answer(again)) + run_windows(session, answer)
    events += session.end()
    assert [f.text for f in finals(events)] == ["hello world"]


def test_backlog_is_the_utterance_audio_not_yet_decoded(hello: np.ndarray) -> None:
    session = make_session()
    session.feed(to_s16(silence(1.0)))
    assert session.backlog_samples == 0  # silence never reaches the model
    session.feed(to_s16(hello))
    owed = session.backlog_samples
    [final] = finals(run_windows(session, Speller("hello world")))
    assert owed * 1000 // RATE == final.audio_ms - final.start_ms
    assert session.backlog_samples == 0


def test_with_lm_finals_partials_stay_tentative_and_the_final_is_left_to_decode(
    hello: np.ndarray,
) -> None:
    session = make_session(rescore_finals=True, early_commits=False)
    events = stream(session, to_s16(hello), Speller("hello world"))
    assert not [e for e in events if isinstance(e, CommitSearch)]
    assert {p.committed for p in partials(events)} == {""}
    assert "hello world" in {p.tentative for p in partials(events)}
    assert finals(events) == []
    [pending] = [e for e in events if isinstance(e, PendingFinal)]
    greedy = pending.greedy
    assert (greedy.text, greedy.reason) == ("hello world", "vad")
    assert pending.scores.shape == (pending.frame_probs.size, len(VOCAB.tokens))
    resolved = pending.resolve([("hullo", LEAD, LEAD + 9), ("world", LEAD + 12, LEAD + 21)])
    assert resolved.text == "hullo world"
    assert resolved.words[0].start_ms == greedy.start_ms + LEAD * FRAME_MS
    assert resolved.words[1].end_ms == greedy.start_ms + (LEAD + 21) * FRAME_MS
    assert all(w.committed and w.conf == 1.0 for w in resolved.words)
    assert (resolved.start_ms, resolved.end_ms, resolved.audio_ms, resolved.reason) == (
        greedy.start_ms,
        greedy.end_ms,
        greedy.audio_ms,
        greedy.reason,
    )


def test_with_lm_finals_held_to_the_end_the_final_searches_one_window_over_the_utterance(
    hello: np.ndarray,
) -> None:
    session = make_session(rescore_finals=True, early_commits=False)
    speller = Speller("hello world")
    answers: list[tuple[WindowRequest, np.ndarray]] = []

    def answer(request: WindowRequest) -> np.ndarray:
        logprobs = speller(request) - 0.01 * len(answers)  # which window a frame came from
        answers.append((request, logprobs))
        return logprobs

    events = stream(session, to_s16(hello), answer)
    [pending] = [e for e in events if isinstance(e, PendingFinal)]
    last, logprobs = answers[-1]
    assert last.plan.final and last.plan.start <= 0 and len(answers) > 2
    offset = -last.plan.start // GEOMETRY.stride
    np.testing.assert_array_equal(pending.scores, logprobs[offset:])
    assert pending.scores.shape[0] == pending.frame_probs.size
    assert pending.greedy.text == "hello world"


def test_with_lm_finals_early_commit_searches_settle_words_that_lead_the_final(
    hello: np.ndarray,
) -> None:
    session = make_session(rescore_finals=True)
    speller = Speller("hello big wide world")
    events: list[SessionEvent] = []
    for frame in frames(to_s16(hello), 640):
        events += session.feed(frame)
        while (request := session.next_request()) is not None:
            for event in session.complete(request, speller(request)):
                if isinstance(event, CommitSearch):  # answered at once, as a free thread would
                    assert event.scores.shape[1] == len(VOCAB.tokens)
                    event_words = session.beam_committed(event, beam_of(event.scores, VOCAB))
                    events += event_words
                else:
                    events.append(event)
    events += session.end()
    while (request := session.next_request()) is not None:
        events += session.complete(request, speller(request))
    committed = [p.committed for p in partials(events) if p.committed]
    assert committed and committed[-1].startswith("hello"), "words commit before the final"
    [pending] = [e for e in events if isinstance(e, PendingFinal)]
    assert pending.committed and " ".join(w.word for w in pending.committed) == committed[-1]
    assert pending.context == tuple(committed[-1].split())
    assert pending.cut > 0 and pending.scores.shape[0] == pending.frame_probs.size - pending.cut
    final = pending.resolve(beam_of(pending.scores, VOCAB))
    assert final.text == "hello big wide world"
    assert [w.start_ms for w in final.words] == sorted(w.start_ms for w in final.words)
    assert pending.greedy.text == "hello big wide world"


# -- invariants on any stream -----------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A client's stream: speech clips and pauses, sent in frames of ``frame_ms``; windows
    run only after every ``lazy``-th frame (a late server catches up with longer windows);
    flushes after some frames, some windows fail, and the stream ends after ``cut`` of it."""

    parts: list[tuple[int, float]]  # (clip, seconds of silence after it)
    frame_ms: int
    lazy: int
    flushes: frozenset[int]
    failures: frozenset[int]
    cut: float
    rescore: bool
    max_utterance_s: float


scenarios = st.builds(
    Scenario,
    parts=st.lists(st.tuples(st.integers(0, 2), st.floats(0.0, 1.2)), min_size=1, max_size=3),
    frame_ms=st.sampled_from([10, 20, 30, 100, 250, 700]),
    lazy=st.integers(1, 4),
    flushes=st.frozensets(st.integers(0, 300), max_size=3),
    failures=st.frozensets(st.integers(0, 12), max_size=3),
    cut=st.floats(0.2, 1.0),
    rescore=st.booleans(),
    max_utterance_s=st.sampled_from([1.5, 30.0]),
)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [synthesize(t) for t in ("hello world", "seven green apples", FOX)]


@dataclass
class Run:
    session: Session
    events: list[SessionEvent]
    failed: int


def wordy(model: LoadedModel, request: WindowRequest) -> np.ndarray:
    """The real model's answer with the columns of 'c' and the delimiter swapped: the random
    model says 'c' often, so its text breaks into many words that commit one by one."""
    logprobs = model.infer(request.samples[None])[0]
    c, delimiter = model.vocab.tokens.index("c"), model.vocab.delimiter_id
    logprobs[:, [c, delimiter]] = logprobs[:, [delimiter, c]]
    return logprobs


def beam_of(scores: np.ndarray, vocab: CtcVocab) -> list[BeamWord]:
    """An LM beam search stand-in: the best path's words with their frames."""
    ids, probs = best_path(scores)
    return [(w.text, w.start_frame, w.end_frame) for w in greedy_words(ids, probs, vocab)]


def play(scenario: Scenario, clips: list[np.ndarray], model: LoadedModel) -> Run:
    parts = [silence(0.4)]
    for clip, pause in scenario.parts:
        parts += [clips[clip], silence(pause)]
    audio = np.concatenate(parts)
    pcm = to_s16(audio[: int(audio.size * scenario.cut)])
    session = Session(
        model.vocab,
        model.geometry,
        VadConfig(max_utterance_s=scenario.max_utterance_s),
        WindowConfig(),
        rescore_finals=scenario.rescore,
    )
    events: list[SessionEvent] = []
    searches: list[CommitSearch] = []
    failed = 0

    def take(out: list[SessionEvent]) -> None:
        searches.extend(e for e in out if isinstance(e, CommitSearch))
        events.extend(e for e in out if not isinstance(e, CommitSearch))

    def pump() -> None:
        nonlocal failed
        # Early-commit searches answer one pump late, as a decoder thread would: some
        # after more windows, some after their utterance's final (then they are moot).
        answered = list(searches)
        searches.clear()
        for search in answered:
            take(session.beam_committed(search, beam_of(search.scores, model.vocab)))
        while (request := session.next_request()) is not None:
            if session.windows_requested - 1 in scenario.failures:
                take(session.fail(request, "boom"))
                failed += 1
            else:
                take(session.complete(request, wordy(model, request)))

    for i, frame in enumerate(frames(pcm, 2 * RATE * scenario.frame_ms // 1000)):
        events.extend(session.feed(frame))
        if i in scenario.flushes:
            events.extend(session.flush())
        if i % scenario.lazy == 0:
            pump()
    events.extend(session.end())
    pump()
    assert session.idle and session.next_request() is None
    return Run(session, events, failed)


def final_of(event: SessionEvent) -> Final | None:
    if isinstance(event, PendingFinal):
        return event.greedy
    return event if isinstance(event, Final) else None


def test_the_streams_of_the_invariant_tests_commit_many_words_before_their_finals(
    clips: list[np.ndarray], tiny_model: LoadedModel
) -> None:
    # Guards the tests below: without early commits "never shrinks" would hold trivially.
    plain = Scenario([(2, 1.0)], 20, 1, frozenset(), frozenset(), 1.0, False, 30.0)
    run = play(plain, clips, tiny_model)
    counts = [len(e.committed.split()) for e in run.events if isinstance(e, Partial)]
    assert max(counts) >= 5 and len(set(counts)) >= 3
    # With LM finals the words commit through the early-commit searches.
    run = play(replace(plain, rescore=True), clips, tiny_model)
    counts = [len(e.committed.split()) for e in run.events if isinstance(e, Partial)]
    assert max(counts) >= 3 and len(set(counts)) >= 3


@settings(max_examples=20, deadline=None)
@given(scenario=scenarios)
def test_committed_text_never_shrinks_and_the_final_starts_with_it(
    scenario: Scenario, clips: list[np.ndarray], tiny_model: LoadedModel
) -> None:
    run = play(scenario, clips, tiny_model)
    committed: dict[int, list[str]] = {}
    for event in run.events:
        final = final_of(event)
        if isinstance(event, Partial):
            words = event.committed.split()
            before = committed.get(event.utterance_id, [])
            assert words[: len(before)] == before, "committed text shrank"
            committed[event.utterance_id] = words
        elif final is not None:
            before = committed.get(final.utterance_id, [])
            texts = [final.text]
            if isinstance(event, PendingFinal):  # the LM's final and its greedy fallback
                texts.append(event.resolve(beam_of(event.scores, tiny_model.vocab)).text)
            for text in texts:
                assert text.split()[: len(before)] == before, "the final dropped committed words"


@settings(max_examples=20, deadline=None)
@given(scenario=scenarios)
def test_every_utterance_gets_exactly_one_final_even_with_flushes_failures_and_early_end(
    scenario: Scenario, clips: list[np.ndarray], tiny_model: LoadedModel
) -> None:
    run = play(scenario, clips, tiny_model)
    ids = [f.utterance_id for e in run.events if (f := final_of(e)) is not None]
    assert ids == list(range(run.session.utterances_opened))
    assert run.session.finals_sent == len(ids)
    reasons = {f.reason for e in run.events if (f := final_of(e)) is not None}
    assert reasons <= {"vad", "flush", "max_length", "end"}
    errors = [e for e in run.events if isinstance(e, ErrorEvent)]
    assert len(errors) == run.failed and all(e.code == "inference_failed" for e in errors)


@settings(max_examples=20, deadline=None)
@given(scenario=scenarios)
def test_events_come_in_utterance_order_and_nothing_follows_a_final_of_its_utterance(
    scenario: Scenario, clips: list[np.ndarray], tiny_model: LoadedModel
) -> None:
    run = play(scenario, clips, tiny_model)
    last_id, closed = -1, -1
    for event in run.events:
        final = final_of(event)
        uid = event.utterance_id if isinstance(event, Partial) else None
        uid = final.utterance_id if final is not None else uid
        if uid is None:
            continue
        assert uid >= last_id, "an event of an earlier utterance came late"
        assert uid > closed, "an event after its utterance's final"
        last_id = uid
        if final is not None:
            closed = uid
        if isinstance(event, Partial):
            assert event.start_ms <= event.audio_ms
            assert all(event.start_ms <= w.start_ms <= w.end_ms for w in event.words)
