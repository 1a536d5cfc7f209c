"""Greedy CTC decoding: collapse, blanks, delimiters, frame spans, confidence."""

from __future__ import annotations

import numpy as np

from streaming.decoding import CtcVocab, best_path, greedy_words, words_text

VOCAB = CtcVocab.from_vocab({"<pad>": 0, "|": 1, "A": 2, "B": 3, "<unk>": 4})


def decode(ids: list[int], **kw: object) -> list[tuple[str, int, int, int | None]]:
    arr = np.array(ids, dtype=np.int32)
    words = greedy_words(arr, np.ones(arr.size, dtype=np.float32), VOCAB, **kw)  # type: ignore[arg-type]
    return [(w.text, w.start_frame, w.end_frame, w.closed_at) for w in words]


def test_repeats_collapse_and_blanks_separate_double_letters() -> None:
    assert decode([2, 2, 0, 2, 3, 3]) == [("aab", 0, 6, None)]


def test_delimiter_closes_words_and_records_its_frame() -> None:
    assert decode([0, 2, 1, 1, 3, 0]) == [("a", 1, 2, 2), ("b", 4, 5, None)]


def test_special_tokens_are_ignored() -> None:
    assert decode([2, 4, 3]) == [("ab", 0, 3, None)]


def test_resuming_after_a_delimiter_does_not_merge_with_it() -> None:
    assert decode([1, 2, 1], frame_offset=10, previous_id=1) == [("a", 11, 12, 12)]


def test_confidence_is_mean_probability_of_the_letters() -> None:
    ids = np.array([2, 0, 3], dtype=np.int32)
    probs = np.array([0.5, 0.9, 1.0], dtype=np.float32)
    [word] = greedy_words(ids, probs, VOCAB)
    assert abs(word.conf - 0.75) < 1e-6


def test_best_path_gives_argmax_and_its_probability() -> None:
    logp = np.log(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32))
    ids, probs = best_path(logp)
    assert ids.tolist() == [1, 0]
    assert np.allclose(probs, [0.7, 0.6])


def test_words_text_joins_with_spaces() -> None:
    arr = np.array([2, 1, 3], dtype=np.int32)
    assert words_text(greedy_words(arr, np.ones(3, dtype=np.float32), VOCAB)) == "a b"
