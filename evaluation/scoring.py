"""Word and character error rates, and the text normalization they are measured after.

The CTC vocabulary writes lowercase a-z, apostrophe and single spaces; a hypothesis from
anything else (a Whisper transcript, a server's final) is brought to that alphabet before
it is scored, so every WER/CER in the repository counts the same edits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluation import numbers

_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?")


def normalize_text(text: str) -> str:
    """Lowercase a-z, apostrophe and single spaces (what the CTC vocabulary can write)."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def spell_numbers(text: str) -> str:
    """Digits → words (Whisper writes "4,000"; our labels say "four thousand")."""

    def one(m: re.Match[str]) -> str:
        raw = m.group(0).replace(",", "")
        money = raw.startswith("$")
        raw = raw.lstrip("$")
        whole, _, frac = raw.partition(".")
        words = numbers.cardinal(int(whole or "0"))
        if frac:
            words += " point " + numbers.digits(frac)
        return f" {words}{' dollars' if money else ''} "

    text = _NUMBER.sub(one, text)
    return text.replace("%", " percent ").replace("&", " and ")


def normalize_written(text: str) -> str:
    """Written text (digits, ``$``, ``%``, punctuation, capitals) as a label would say it."""
    return normalize_text(spell_numbers(text))


def edit_distance(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    """Levenshtein distance (characters of a string or items of a list)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCounts:
    """Corpus-level edit counts (WER/CER = errors / reference length)."""

    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0

    def add(self, reference: str, hypothesis: str, normalize: bool = True) -> None:
        """Count one pair; ``normalize=False`` for texts already in the label alphabet
        (training's labels and greedy transcripts: scored exactly as written)."""
        if normalize:
            reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
        self.word_errors += edit_distance(reference.split(), hypothesis.split())
        self.words += len(reference.split())
        self.char_errors += edit_distance(reference, hypothesis)
        self.chars += len(reference)

    @property
    def wer(self) -> float:
        return self.word_errors / max(1, self.words)

    @property
    def cer(self) -> float:
        return self.char_errors / max(1, self.chars)

    def to_json(self) -> dict[str, Any]:
        return {"wer": round(self.wer, 4), "cer": round(self.cer, 4), "words": self.words}


def error_rates(pairs: Sequence[tuple[str, str]], normalize: bool = True) -> ErrorCounts:
    """The counts of ``(reference, hypothesis)`` pairs (see :meth:`ErrorCounts.add`)."""
    counts = ErrorCounts()
    for ref, hyp in pairs:
        counts.add(ref, hyp, normalize)
    return counts
