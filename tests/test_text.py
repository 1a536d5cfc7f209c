"""The training text: fortunes splits stay fixed, WordNet examples only add training text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import numbers
from training import synth, text
from training.data import load_manifests

DATA_LINE = (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived; "
    '"the cars were in position"; "he ran 10 miles"\n'
)


def _fake_wordnet(directory: Path) -> Path:
    directory.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE\n"
    (directory / "data.noun").write_text(header + DATA_LINE)
    for pos in ("verb", "adj", "adv"):
        (directory / f"data.{pos}").write_text(header)
    return directory


def test_wordnet_examples_are_the_quoted_parts_of_glosses_capitalized(tmp_path: Path) -> None:
    examples = list(text.read_wordnet(_fake_wordnet(tmp_path / "wn")))

    assert examples == ["The cars were in position", "He ran 10 miles"]


def test_extra_sentences_are_normalized_and_never_repeat_a_fortunes_label() -> None:
    extra = text.build_extra(
        ["The cars were in position", "He ran 10 miles", "He ran ten miles"],
        exclude={"the cars were in position"},
    )

    assert [s.text for s in extra] == ["he ran ten miles"]
    assert extra[0].tts == "he ran ten miles."


def test_extra_sentences_whose_hash_says_test_or_valid_are_dropped() -> None:
    candidates = [f"The number {numbers.cardinal(i)} is here" for i in range(200)]
    kept = {s.text for s in text.build_extra(candidates, exclude=set())}
    labels = [n[1] for n in map(text.normalize, candidates) if n is not None]

    assert kept == {label for label in labels if text.split_of(label) == "train"}
    assert len(kept) < len(labels)  # some of the 200 hash to valid/test


def test_wordnet_audio_is_training_audio_with_its_own_manifest(tmp_path: Path) -> None:
    assert synth.corpus_split(text.WORDNET_SPLIT) == "train"
    assert (
        synth.manifest_path(text.WORDNET_SPLIT, "joe")
        == synth.CORPUS_DIR / "train/joe-wordnet.jsonl"
    )
    assert synth.manifest_path("train", "joe") == synth.CORPUS_DIR / "train/joe.jsonl"

    (tmp_path / "train").mkdir()
    for name, uid in (("joe", "joe-a-0"), ("joe-wordnet", "joe-b-0"), ("kal", "kal-c-0")):
        record = {"id": uid, "engine": name.split("-")[0], "seconds": 1.0}
        (tmp_path / "train" / f"{name}.jsonl").write_text(json.dumps(record) + "\n")

    assert [r["id"] for r in load_manifests("train", ["joe"], tmp_path)] == ["joe-a-0", "joe-b-0"]


def test_wordnet_sentences_are_planned_as_training_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentences = text.build_extra(["She stood there ironing", "They made a mock of him"], set())
    with open(tmp_path / f"{text.WORDNET_SPLIT}.jsonl", "w", encoding="utf-8") as fh:
        for s in sentences:
            fh.write(json.dumps({"id": s.id, "tts": s.tts, "text": s.text}) + "\n")
    monkeypatch.setattr(synth, "TEXT_DIR", tmp_path)

    jobs = list(synth.plan_jobs("awb", text.WORDNET_SPLIT, copies=1, limit=None, offset=0))

    assert [j.split for j in jobs] == ["train", "train"]
    assert {j.sentence.text for j in jobs} == {s.text for s in sentences}
