"""SRT / WebVTT output from finals."""

from __future__ import annotations

import itertools
from typing import Any

from client.subtitles import cues_from_finals, to_srt, to_vtt, wrap


def final(text: str, start: int, end: int, words: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "final", "text": text, "start_ms": start, "end_ms": end, "words": words or []}


def test_srt() -> None:
    finals = [
        final("hello world", 1200, 2750),
        final("", 3000, 3100),  # VAD heard something, no words: no cue
        final("second line", 3_601_005, 3_602_000),
    ]
    assert to_srt(finals) == (
        "1\n00:00:01,200 --> 00:00:02,750\nhello world\n"
        "\n"
        "2\n01:00:01,005 --> 01:00:02,000\nsecond line\n"
    )


def test_vtt() -> None:
    assert to_vtt([final("a --> b", 0, 999)]) == "WEBVTT\n\n00:00:00.000 --> 00:00:00.999\na -> b\n"
    assert to_vtt([]) == "WEBVTT\n"
    assert to_srt([]) == ""


def test_zero_length_cue_gets_a_millisecond() -> None:
    (cue,) = cues_from_finals([final("x", 500, 500)])
    assert (cue.start_ms, cue.end_ms) == (500, 501)


def test_control_characters_and_newlines_are_removed() -> None:
    assert (
        to_srt([final("one\n\ntwo\x1b[1m", 0, 10)])
        == "1\n00:00:00,000 --> 00:00:00,010\none two[1m\n"
    )


def test_wrap() -> None:
    assert wrap("a b c", 3) == ["a b", "c"]
    assert wrap("averyveryverylongword b", 5) == ["averyveryverylongword", "b"]
    assert wrap("", 5) == []


def test_long_utterance_is_split_at_words_with_word_times() -> None:
    words: list[dict[str, Any]] = [
        {"word": f"word{i:02d}", "start_ms": 1000 + i * 500, "end_ms": 1000 + i * 500 + 400}
        for i in range(30)
    ]
    text = " ".join(w["word"] for w in words)
    cues = cues_from_finals([final(text, 900, 16_000, words)])
    assert len(cues) > 1
    assert " ".join(" ".join(c.lines) for c in cues) == text  # nothing lost or reordered
    for c in cues:
        assert len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines)
        assert c.end_ms > c.start_ms
    assert cues[0].start_ms == 900 and cues[-1].end_ms == 16_000
    for a, b in itertools.pairwise(cues):
        assert a.end_ms <= b.start_ms
    # a middle cue starts at its first word and ends at its last word
    first_word = cues[1].lines[0].split()[0]
    i = int(first_word[4:])
    assert cues[1].start_ms == 1000 + i * 500


def test_long_utterance_without_words_is_one_wrapped_cue() -> None:
    text = " ".join(["lorem"] * 40)
    (cue,) = cues_from_finals([final(text, 0, 9000)])
    assert len(cue.lines) > 2 and all(len(line) <= 42 for line in cue.lines)
