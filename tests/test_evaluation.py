"""The neutral package that training and benchmarks share: text normalization, error
rates and the machine's name, each written once."""

from __future__ import annotations

from evaluation.machine import cpu_model
from evaluation.scoring import edit_distance, error_rates, normalize_text, normalize_written


def test_written_numbers_money_and_percent_are_spelled_as_labels_say_them() -> None:
    assert normalize_written("It cost $4,000 at 3.5%!") == (
        "it cost four thousand dollars at three point five percent"
    )


def test_normalization_keeps_only_what_the_ctc_vocabulary_writes() -> None:
    assert normalize_text("Don\u2019t  STOP -- 'now'") == "don't stop now"


def test_edit_distance_counts_characters_of_strings_and_items_of_lists() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1
    assert edit_distance("", "abc") == 3


def test_error_rates_are_corpus_level_over_all_pairs() -> None:
    counts = error_rates([("a b", "a"), ("c d e f", "c d e f")])

    assert (counts.word_errors, counts.words) == (1, 6)
    assert counts.wer == 1 / 6
    assert counts.to_json() == {"wer": 0.1667, "cer": round(2 / 10, 4), "words": 6}


def test_exact_scoring_counts_what_normalization_would_forgive() -> None:
    pair = [("hello world", "Hello, World!")]

    assert error_rates(pair).wer == 0.0
    assert error_rates(pair, normalize=False).wer == 1.0


def test_the_cpu_is_named_on_one_line() -> None:
    name = cpu_model()

    assert name and "\n" not in name and name == name.strip()
