"""Early commits with LM finals (streaming.beam_commit), as pure logic: fed beams by hand."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.beam_commit import BeamCommits, CommitRule
from streaming.decoding import CtcVocab

VOCAB = CtcVocab(("<pad>", "|", "a", "b", "e"), blank_id=0, delimiter_id=1)
VOCAB_SIZE = len(VOCAB.tokens)


def scores(frames: int, fill: float = 0.0) -> np.ndarray:
    return np.full((frames, VOCAB_SIZE), fill, dtype=np.float32)


def spelled(frames: int, letters: dict[int, str]) -> np.ndarray:
    """Scores whose best path is blank but for ``letters`` (frame: letter, "|" a space)."""
    out = scores(frames, -10.0)
    out[:, VOCAB.blank_id] = 0.0
    for frame, letter in letters.items():
        out[frame, VOCAB.blank_id] = -10.0
        out[frame, VOCAB.tokens.index(letter)] = 0.0
    return out


def test_a_search_is_due_after_enough_new_stable_frames_and_only_one_at_a_time() -> None:
    beam = BeamCommits(CommitRule(min_frames=20, every_frames=10), VOCAB)
    assert not beam.due(19)
    assert beam.due(20)
    beam.search(0, 20, scores(20), scores(5))
    assert not beam.due(40), "one search in flight at a time"
    beam.failed()
    assert not beam.due(29), "the stable frames grew too little since the last search"
    assert beam.due(30)


def test_the_search_reads_from_the_cut_then_the_tentative_frames_with_the_words_before() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=1, agree="none"))
    stable = np.arange(60 * VOCAB_SIZE, dtype=np.float32).reshape(60, VOCAB_SIZE)
    first = beam.search(7, 40, stable, scores(6, -1.0))
    assert (first.utterance_id, first.cut, first.stable, first.context) == (7, 0, 40, ())
    assert first.scores.shape == (46, VOCAB_SIZE)
    assert beam.accept(first, [("one", 2, 8), ("two", 12, 20), ("three", 30, 44)])
    second = beam.search(7, 60, stable, scores(6, -1.0))
    assert (second.cut, second.context) == (30, ("one", "two"))
    np.testing.assert_array_equal(second.scores[:30], stable[30:60])
    np.testing.assert_array_equal(second.scores[30:], scores(6, -1.0))


def test_words_commit_with_holdback_words_after_them_and_the_next_one_starting_stable() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=2, agree="none"))
    search = beam.search(0, 50, scores(50), scores(12))
    words = [("a", 0, 5), ("b", 8, 15), ("c", 20, 30), ("d", 33, 45), ("e", 48, 60)]
    # "c" would need "d" and "e" after it, and "d" starts stable: a, b, c commit; not d.
    committed = beam.accept(search, words)
    assert committed == [("a", 0, 5), ("b", 8, 15), ("c", 20, 30)]
    assert beam.cut == 33, "the cut is where the first open word starts"
    assert beam.context == ("a", "b", "c")


def test_a_word_whose_successor_starts_in_tentative_frames_stays_open() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=1, agree="none"))
    search = beam.search(0, 30, scores(30), scores(20))
    assert beam.accept(search, [("a", 0, 10), ("b", 12, 29), ("c", 31, 45)]) == [("a", 0, 10)]
    assert beam.cut == 12, "b's successor starts past the stable frames"


def test_a_word_followed_by_a_pause_in_stable_frames_settles_before_the_next_word() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, agree="none", quiet_frames=10))
    search = beam.search(0, 40, scores(40), scores(20))
    # b ends at 20 and nothing starts before 40: ten stable frames of pause follow it
    assert beam.accept(search, [("a", 0, 10), ("b", 12, 20), ("c", 45, 55)]) == [
        ("a", 0, 10),
        ("b", 12, 20),
    ]
    assert beam.cut == 45
    # the beam's last word settles once the pause after it is stable
    last = beam.search(0, 80, scores(80), scores(5))
    assert beam.accept(last, [("c", 0, 10), ("d", 15, 24)]) == [("c", 45, 55), ("d", 60, 69)]
    assert beam.cut == 69
    # a pause shorter than quiet_frames settles nothing
    short = BeamCommits(CommitRule(min_frames=10, every_frames=10, agree="none", quiet_frames=10))
    search = short.search(0, 40, scores(40), scores(20))
    assert short.accept(search, [("a", 0, 10), ("b", 12, 35)]) == [("a", 0, 10)]


def test_frames_of_a_later_search_are_counted_from_its_cut() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=1, agree="none"))
    beam.accept(beam.search(0, 30, scores(30), scores(5)), [("a", 0, 8), ("b", 10, 25)])
    assert beam.cut == 10
    later = beam.search(0, 60, scores(60), scores(5))
    assert beam.accept(later, [("b", 0, 15), ("c", 20, 30), ("d", 35, 52)]) == [
        ("b", 10, 25),
        ("c", 30, 40),
    ]
    assert beam.cut == 45 and beam.words == [("a", 0, 8), ("b", 10, 25), ("c", 30, 40)]


def test_a_beam_too_short_to_settle_anything_commits_nothing_and_keeps_the_cut() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=2, agree="none"))
    search = beam.search(0, 40, scores(40), scores(5))
    assert beam.accept(search, [("a", 0, 10), ("b", 15, 38)]) == []
    assert beam.accept(beam.search(0, 50, scores(50), scores(5)), []) == []
    assert (beam.cut, beam.words, beam.in_flight) == (0, [], False)


def test_settled_agreement_commits_only_words_two_searches_settled_alike() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=1, agree="settled"))
    first = beam.search(0, 40, scores(40), scores(5))
    assert beam.accept(first, [("a", 0, 5), ("bee", 8, 15), ("c", 20, 30)]) == []
    second = beam.search(0, 50, scores(50), scores(5))
    committed = beam.accept(second, [("a", 0, 5), ("be", 8, 15), ("c", 20, 30), ("d", 32, 48)])
    assert committed == [("a", 0, 5)], "bee/be disagree: only a is settled twice"
    assert beam.cut == 8


def test_settled_agreement_ignores_words_the_previous_search_read_but_had_not_settled() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10, holdback=1, agree="settled"))
    first = beam.search(0, 20, scores(20), scores(20))  # b starts in stable frames, c not
    assert beam.accept(first, [("a", 0, 5), ("b", 10, 18), ("c", 25, 35)]) == []
    second = beam.search(0, 40, scores(40), scores(5))
    committed = beam.accept(second, [("a", 0, 5), ("b", 10, 18), ("c", 25, 35), ("d", 42, 48)])
    assert committed == [("a", 0, 5)], "b was read before but settled only now"


def test_read_agreement_commits_a_settled_word_the_previous_search_read_alike() -> None:
    rule = CommitRule(min_frames=10, every_frames=10, holdback=1, agree="read", quiet_frames=0)
    beam = BeamCommits(rule)
    first = beam.search(0, 20, scores(20), scores(20))  # c is read from tentative frames
    assert beam.accept(first, [("a", 0, 5), ("bee", 10, 18), ("c", 25, 35)]) == []
    second = beam.search(0, 40, scores(40), scores(5))
    committed = beam.accept(second, [("a", 0, 5), ("bee", 10, 18), ("c", 25, 35), ("d", 42, 48)])
    assert committed == [("a", 0, 5), ("bee", 10, 18)], "read alike, settled now: both commit"
    assert beam.cut == 25
    third = beam.search(0, 60, scores(60), scores(5))
    assert beam.accept(third, [("see", 0, 10), ("d", 13, 19), ("e", 25, 34)]) == [], "c/see"
    fourth = beam.search(0, 70, scores(70), scores(5))
    assert beam.accept(fourth, [("see", 0, 10), ("d", 13, 19), ("e", 25, 34)]) == [
        ("see", 25, 35),
        ("d", 38, 44),
    ]
    assert beam.cut == 50


def test_read_or_greedy_agreement_also_takes_greedy_decoding_spelling_a_word_alike() -> None:
    beam = BeamCommits(CommitRule(min_frames=10, every_frames=10), VOCAB)
    # greedy reads "a" (one frame off the beam) and "be", where the beam reads "a bee"
    first = beam.search(0, 40, spelled(40, {1: "a", 6: "|", 10: "b", 12: "e", 20: "|"}), scores(0))
    assert first.greedy == (("a", 1), ("be", 10))
    committed = beam.accept(first, [("a", 0, 5), ("bee", 10, 18), ("c", 25, 35)])
    assert committed == [("a", 0, 5)], "no search before it: only greedy's word commits"
    assert beam.cut == 10
    # the next search reads "bee" as this one did, though greedy still spells "be"
    second = beam.search(0, 60, spelled(60, {10: "b", 12: "e", 20: "|"}), scores(0))
    committed = beam.accept(second, [("bee", 0, 8), ("c", 15, 25), ("d", 40, 45)])
    assert committed == [("bee", 10, 18), ("c", 25, 35)]


def test_read_or_greedy_agreement_needs_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="needs the vocabulary"):
        BeamCommits(CommitRule(agree="read-or-greedy"))
    assert BeamCommits(CommitRule(agree="read")).vocab is None


def test_the_default_rule_asks_the_previous_search_or_greedy_to_read_a_word_alike() -> None:
    assert (CommitRule().holdback, CommitRule().agree) == (1, "read-or-greedy")
    assert CommitRule().label == "holdback 1, agree read-or-greedy"


def test_a_holdback_under_one_word_or_a_negative_pause_is_refused() -> None:
    with pytest.raises(ValueError, match="holdback"):
        CommitRule(holdback=0)
    with pytest.raises(ValueError, match="quiet_frames"):
        CommitRule(quiet_frames=-1)


def test_an_unknown_agreement_is_refused() -> None:
    with pytest.raises(
        ValueError, match="agree must be one of none, read, read-or-greedy, settled"
    ):
        CommitRule(agree="twice")  # type: ignore[arg-type]
