"""The out-of-domain evaluation sets (``training.ood``) and the benchmark that compares them
with the in-domain test set (``benchmarks.accuracy_ood``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import accuracy_ood
from training import ood
from training.text import FORTUNE_DIR, MAX_WORDS

needs_fortunes = pytest.mark.skipif(
    not FORTUNE_DIR.is_dir(), reason="needs Debian's fortunes (the training text)"
)


@pytest.fixture(scope="module")
def training_text() -> ood.TrainingText:
    return ood.TrainingText.load()


@needs_fortunes
def test_the_builder_gives_the_same_300_plus_sentences_across_all_categories_each_time(
    training_text: ood.TrainingText,
) -> None:
    pytest.importorskip("faker")
    first = ood.build(training_text)
    again = ood.build(training_text)

    assert first == again
    assert len(first) >= 300
    per_category = {c: sum(s.category == c for s in first) for c in ood.CATEGORIES}
    assert per_category == dict.fromkeys(ood.CATEGORIES, ood.PER_CATEGORY)
    assert len({s.id for s in first}) == len({s.text for s in first}) == len(first)


def test_the_committed_sentences_are_normalized_like_training_labels() -> None:
    items = ood.load_sentences()

    assert len(items) >= 300
    assert {s.category for s in items} == set(ood.CATEGORIES)
    for s in items:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", s.text), s
        assert ood.MIN_OOD_WORDS <= len(s.text.split()) <= MAX_WORDS
        assert re.sub(r"[,.!?]", " ", s.tts).split() == s.text.split(), s


@needs_fortunes
def test_no_committed_sentence_is_or_mostly_repeats_a_training_sentence(
    training_text: ood.TrainingText,
) -> None:
    items = ood.load_sentences()

    assert not {s.text for s in items} & training_text.labels
    worst = max(items, key=lambda s: training_text.overlap(s.text))
    assert training_text.overlap(worst.text) < ood.MAX_NGRAM_OVERLAP, worst


def test_overlap_counts_the_word_4grams_found_in_training_text() -> None:
    text = ood.TrainingText({"the cat sat on the mat"}, {("the", "cat", "sat", "on")})

    assert text.overlap("the cat sat on a hat") == pytest.approx(1 / 3)
    assert not text.admits("the cat sat on the mat")  # an exact training sentence
    assert not text.admits("the cat sat on")  # its only 4-gram is training text
    assert text.admits("a dog sat on the mat")


def test_every_sentence_is_read_by_a_training_voice_and_by_a_held_out_voice() -> None:
    items = ood.load_sentences()
    jobs = ood.plan(items, per_category=3)

    assert len(jobs) == 2 * 3 * len(ood.CATEGORIES)
    assert not set(ood.HELD_OUT_VOICES) & set(ood.TRAINING_VOICES)
    for (s1, trained, g1), (s2, unseen, g2) in zip(jobs[::2], jobs[1::2]):
        assert s1 == s2 and (g1, g2) == ("training", "held-out")
        assert trained in ood.TRAINING_VOICES and unseen in ood.HELD_OUT_VOICES


def test_alignment_pairs_only_equal_words() -> None:
    assert accuracy_ood.matched(["a", "b", "c"], ["a", "x", "c"]) == [0, None, 2]
    assert accuracy_ood.matched(["a", "b", "c"], ["a", "c"]) == [0, None, 1]
    assert accuracy_ood.matched(["a", "b"], ["z", "a", "b"]) == [1, 2]


def test_edits_are_told_apart_as_substitutions_deletions_and_insertions() -> None:
    ref = ["the", "terrified", "cat"]

    assert accuracy_ood.edit_kinds(ref, ["the", "terri", "fied", "cat"]) == (1, 0, 1)
    assert accuracy_ood.edit_kinds(ref, ["the", "cat"]) == (0, 1, 0)
    assert accuracy_ood.edit_kinds(ref, ref) == (0, 0, 0)


def test_a_streaming_only_error_is_binned_by_its_distance_to_the_nearest_stitch() -> None:
    decoded = accuracy_ood.Decoded(
        ref=["one", "two", "three"],
        whole=[("one", 100.0, 200.0), ("two", 300.0, 400.0), ("three", 640.0, 740.0)],
    )
    words = [("one", 100.0, 200.0), ("too", 300.0, 340.0), ("three", 640.0, 740.0)]
    run = accuracy_ood.StreamRun("one too three", words, [390.0, 630.0], [], None, 3)
    positions = accuracy_ood.Positions(half_chunk_ms=120.0)

    positions.add(decoded, run)
    out = positions.to_json()

    # "two" (centre 350 ms) is 40 ms before the stitch at 390 ms and straddles it
    assert {b["from_ms"]: b["streaming_only_errors"] for b in out["bins"]} == {-40: 1, 60: 0}
    assert out["straddling_a_stitch"] == {"words": 1, "streaming_only_errors": 1, "rate": 1.0}
    assert out["far"] == {"words": 1, "streaming_only_errors": 0}  # "one": 240 ms away


def test_a_word_break_inside_a_whole_decode_word_counts_as_a_split() -> None:
    decoded = accuracy_ood.Decoded(
        ref=["terrified", "cat"], whole=[("terrified", 300.0, 500.0), ("cat", 600.0, 700.0)]
    )
    words = [("terri", 300.0, 380.0), ("fied", 420.0, 500.0), ("cat", 600.0, 700.0)]
    run = accuracy_ood.StreamRun("terri fied cat", words, [390.0], [], None, 2)
    positions = accuracy_ood.Positions(half_chunk_ms=120.0)

    positions.add(decoded, run)
    bins = {b["from_ms"]: b for b in positions.to_json()["word_breaks"]["bins"]}

    # the break at 400 ms is 10 ms from the stitch; the one at 550 ms is 160 ms away (far)
    assert (bins[0]["breaks"], bins[0]["inside_a_whole_word"]) == (1, 1)
    assert (bins[120]["breaks"], bins[120]["inside_a_whole_word"]) == (1, 0)


@needs_fortunes
@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="needs espeak-ng and flite (a training and a held-out voice)",
)
def test_the_quick_benchmark_scores_both_domains_and_voice_groups_with_the_real_model(
    tmp_path: Path,
) -> None:
    data = accuracy_ood.run(accuracy_ood.parse_args(["--quick", "--results-dir", str(tmp_path)]))

    assert len(data["utterances"]) == 2 * (1 + len(ood.CATEGORIES))
    result = data["settings"][0]
    cells = {(r["set"], r["voices"]): r for r in result["sets"]}
    for domain in ("in-domain", "out-of-domain"):
        for group in ("training", "held-out"):
            cell = cells[(domain, group)]
            assert {"whole", "streaming", "hf_chunked"} <= set(cell)
            assert cell["streaming"]["wer"] >= 0 and cell["whole"]["words"] > 0
    # the training voice reads an in-domain sentence mostly right
    assert cells[("in-domain", "training")]["whole"]["cer"] < 0.5
    saved = json.loads(next(tmp_path.glob("accuracy_ood-quick-*.json")).read_text())
    assert saved["settings"][0]["error_positions"]["all|all"]["words_whole_correct"] > 0
