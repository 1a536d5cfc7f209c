"""Committed text is never retracted: on many random streams, through the whole Session."""

from __future__ import annotations

import numpy as np
from fakes import GEOMETRY, VOCAB, ReceptiveFieldModel, loud_detector
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.config import VadConfig, WindowConfig
from streaming.events import Final, Partial
from streaming.session import PendingFinal, Session, SessionEvent
from streaming.stabilizer import Stabilizer

RATE = 16000


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


def test_word_commits_only_when_its_closing_delimiter_is_stable() -> None:
    a, b, bar = 7, 24, 4  # 'a', 'b', '|'
    s = Stabilizer(VOCAB)
    hyp = s.update(ids(a, 0), ones(2), ids(bar, b), ones(2))
    assert [w.text for w in hyp.committed] == []
    assert [w.text for w in hyp.tentative] == ["a", "b"]
    hyp = s.update(ids(a, 0, bar), ones(3), ids(b), ones(1))
    assert [w.text for w in hyp.committed] == ["a"]
    assert [w.text for w in hyp.tentative] == ["b"]


def test_final_commits_everything_left() -> None:
    s = Stabilizer(VOCAB)
    s.update(ids(7, 4), ones(2), ids(24), ones(1))
    hyp = s.update(ids(7, 4, 24, 24), ones(4), ids(), ones(0), final=True)
    assert [w.text for w in hyp.committed] == ["a", "b"]
    assert hyp.tentative == ()


def noise_bursts(segments: list[tuple[bool, float]], seed: int) -> bytes:
    """Loud/silent stretches of noise as s16le PCM (the fake VAD calls loud audio speech)."""
    rng = np.random.default_rng(seed)
    parts = [
        (rng.standard_normal(int(s * RATE)) * (0.3 if loud else 0.0)).astype(np.float32)
        for loud, s in segments
    ]
    audio = np.concatenate(parts)
    return (np.clip(audio, -1, 0.99) * 32767).astype("<i2").tobytes()


def make_session(*, rescore_finals: bool = False, stream_context: str = "off") -> Session:
    vad = VadConfig(max_utterance_s=2.0)
    return Session(
        VOCAB,
        GEOMETRY,
        vad,
        WindowConfig(stream_context=stream_context),
        detector_factory=loud_detector,
        rescore_finals=rescore_finals,
    )


def run_stream(
    session: Session,
    pcm: bytes,
    chunk_sizes: list[int],
    flush_every: int | None,
    model: ReceptiveFieldModel,
) -> list[SessionEvent]:
    """Feed ``pcm`` in varying pieces, run every due window, end; every event in order."""
    events: list[SessionEvent] = []

    def pump() -> None:
        while (request := session.next_request()) is not None:
            events.extend(session.complete(request, model.window(request.samples)))

    position, i = 0, 0
    while position < len(pcm):
        size = 2 * chunk_sizes[i % len(chunk_sizes)]
        events.extend(session.feed(pcm[position : position + size]))
        position += size
        i += 1
        if flush_every and i % flush_every == 0:
            events.extend(session.flush())
        pump()
    events.extend(session.end())
    pump()
    assert session.idle
    return events


segments = st.lists(st.tuples(st.booleans(), st.floats(0.05, 2.5)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    segments=segments,
    chunk_sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=4),
    flush_every=st.one_of(st.none(), st.integers(3, 40)),
    context_noise=st.floats(0.0, 3.0),
    stream_context=st.sampled_from(["on", "off"]),
    seed=st.integers(0, 10_000),
)
def test_committed_text_is_a_prefix_of_every_later_committed_text_and_of_the_final(
    segments: list[tuple[bool, float]],
    chunk_sizes: list[int],
    flush_every: int | None,
    context_noise: float,
    stream_context: str,
    seed: int,
) -> None:
    model = ReceptiveFieldModel(context_noise, seed)
    session = make_session(stream_context=stream_context)
    events = run_stream(session, noise_bursts(segments, seed), chunk_sizes, flush_every, model)

    committed: dict[int, list[str]] = {}
    finals: dict[int, Final] = {}
    for event in events:
        if isinstance(event, Partial):
            assert event.utterance_id not in finals, "partial after its final"
            words = event.committed.split()
            previous = committed.get(event.utterance_id, [])
            assert words[: len(previous)] == previous, "committed text was retracted"
            committed[event.utterance_id] = words
        else:
            finals[event.utterance_id] = event
    for utterance_id, words in committed.items():
        assert finals[utterance_id].text.split()[: len(words)] == words
    # Every utterance that was opened got exactly one final, in order.
    assert sorted(finals) == list(range(session.utterances_opened))
    assert [e.utterance_id for e in events if isinstance(e, Final)] == sorted(finals)


@settings(max_examples=25, deadline=None)
@given(
    segments=segments,
    chunk_sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_with_lm_finals_every_utterance_hands_over_all_its_frames_and_commits_nothing_early(
    segments: list[tuple[bool, float]], chunk_sizes: list[int], seed: int
) -> None:
    pcm = noise_bursts(segments, seed)
    plain = run_stream(make_session(), pcm, chunk_sizes, None, ReceptiveFieldModel(0.0, seed))
    session = make_session(rescore_finals=True)
    events = run_stream(session, pcm, chunk_sizes, None, ReceptiveFieldModel(0.0, seed))
    assert all(e.committed == "" for e in events if isinstance(e, Partial))
    finals = [e for e in events if isinstance(e, (Final, PendingFinal))]
    assert len(finals) == session.utterances_opened, "one final per utterance, none lost"
    # Same windows, same greedy reading: only the final's decoding is left to the LM.
    expected = [e.text for e in plain if isinstance(e, Final)]
    assert [e.greedy.text if isinstance(e, PendingFinal) else e.text for e in finals] == expected
    for final in finals:
        if isinstance(final, PendingFinal):
            assert final.scores.shape == (final.frame_probs.size, len(VOCAB.tokens))
            span_ms = final.scores.shape[0] * final.stride * 1000 // RATE
            assert abs(final.greedy.audio_ms - final.greedy.start_ms - span_ms) <= 40


@settings(max_examples=25, deadline=None)
@given(
    segments=segments,
    chunk_sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_stream_context_changes_window_lengths_but_not_what_a_frame_local_model_reads(
    segments: list[tuple[bool, float]], chunk_sizes: list[int], seed: int
) -> None:
    # The receptive-field model's frames depend on their own samples only, so any wrong
    # offset of the audio before an utterance would show up as different text.
    pcm = noise_bursts(segments, seed)
    texts = {}
    for mode in ("off", "on"):
        events = run_stream(
            make_session(stream_context=mode), pcm, chunk_sizes, None, ReceptiveFieldModel()
        )
        texts[mode] = [(e.utterance_id, e.text) for e in events if isinstance(e, Final)]
    assert texts["on"] == texts["off"]


def test_with_stream_context_a_later_utterance_runs_steady_length_windows_only() -> None:
    session = make_session(stream_context="on")
    pcm = noise_bursts([(True, 1.0), (False, 2.0), (True, 1.5)], seed=3)
    lengths: dict[int, list[int]] = {}
    model = ReceptiveFieldModel()
    for position in range(0, len(pcm), 2 * 320):  # a live stream's 20 ms frames
        session.feed(pcm[position : position + 2 * 320])
        while (request := session.next_request()) is not None:
            if not request.plan.final:
                lengths.setdefault(request.utterance_id, []).append(request.plan.length)
            session.complete(request, model.window(request.samples))
    steady = (240 + 1600 + 480) * RATE // 1000
    assert set(lengths[1]) == {steady}  # 2 s of silence before it: full left context
    assert len(set(lengths[0])) > 1  # the stream's first utterance has nothing before it
