"""Committed text is never retracted: on many random streams, through the whole Session."""

from __future__ import annotations

import numpy as np
from fakes import GEOMETRY, VOCAB, ReceptiveFieldModel, loud_detector
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.config import VadConfig, WindowConfig
from streaming.events import Final, Partial
from streaming.session import Session
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


segments = st.lists(st.tuples(st.booleans(), st.floats(0.05, 2.5)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    segments=segments,
    chunk_sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=4),
    flush_every=st.one_of(st.none(), st.integers(3, 40)),
    context_noise=st.floats(0.0, 3.0),
    seed=st.integers(0, 10_000),
)
def test_committed_text_is_a_prefix_of_every_later_committed_text_and_of_the_final(
    segments: list[tuple[bool, float]],
    chunk_sizes: list[int],
    flush_every: int | None,
    context_noise: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    parts = [
        (rng.standard_normal(int(s * RATE)) * (0.3 if loud else 0.0)).astype(np.float32)
        for loud, s in segments
    ]
    audio = np.concatenate(parts)
    pcm = (np.clip(audio, -1, 0.99) * 32767).astype("<i2").tobytes()
    model = ReceptiveFieldModel(context_noise, seed)
    vad = VadConfig(max_utterance_s=2.0)
    session = Session(VOCAB, GEOMETRY, vad, WindowConfig(), detector_factory=loud_detector)
    events: list[Partial | Final] = []

    def pump() -> None:
        while (request := session.next_request()) is not None:
            events.extend(session.complete(request, model.window(request.samples)))  # type: ignore[arg-type]

    position, i = 0, 0
    while position < len(pcm):
        size = 2 * chunk_sizes[i % len(chunk_sizes)]
        events.extend(session.feed(pcm[position : position + size]))  # type: ignore[arg-type]
        position += size
        i += 1
        if flush_every and i % flush_every == 0:
            events.extend(session.flush())  # type: ignore[arg-type]
        pump()
    events.extend(session.end())  # type: ignore[arg-type]
    pump()
    assert session.idle

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
