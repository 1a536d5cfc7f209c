"""Hotwords: words and phrases a client asks the final decoding to favour, checked once.

A client names them when it starts a stream (each protocol its own way: the native
``start`` field, Vosk's ``phrase_list``, Deepgram's ``keywords``/``keyterm``); every codec
turns what it got into :class:`Hotword` values with :func:`hotword`, and the driver checks
them against the model's alphabet with :func:`check_hotwords` before any audio. The LM
beam search (``streaming.lm``) then adds ``weight`` to the score of a beam each time one of
the phrase's words completes, so a name the acoustics spell "stela" is written "stella".

The weight is in the beam search's natural-log score units (pyctcdecode's ``hotword_weight``,
default 10): large enough to beat a near-miss spelling, not to invent a word that was not
said. A negative weight suppresses a word.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .decoding import CtcVocab

DEFAULT_WEIGHT = 10.0
MAX_WEIGHT = 50.0  # |weight|; 5x the default already overrides clear acoustics
MAX_HOTWORDS = 100  # Deepgram's documented limit for keywords; a beam search slows with more
MAX_PHRASE_CHARS = 50
MAX_PHRASE_WORDS = 6


class HotwordError(ValueError):
    """A hotword list a client cannot use; the message says what to change."""


@dataclass(frozen=True)
class Hotword:
    phrase: str  # lowercase words separated by single spaces
    weight: float = DEFAULT_WEIGHT

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.phrase.split(" "))


def hotword(phrase: object, weight: object = DEFAULT_WEIGHT) -> Hotword:
    """One hotword from a client's values: text of 1-6 words (at most 50 characters) and a
    finite number in [-50, 50]; the phrase is lowercased and its spaces collapsed."""
    if not isinstance(phrase, str):
        raise HotwordError(f"a hotword must be text, got {_kind(phrase)}")
    words = phrase.lower().split()
    text = " ".join(words)
    if not text:
        raise HotwordError("a hotword must not be empty")
    if len(text) > MAX_PHRASE_CHARS:
        raise HotwordError(
            f"hotword {text[:20]!r}... is {len(text)} characters long; at most {MAX_PHRASE_CHARS}"
        )
    if len(words) > MAX_PHRASE_WORDS:
        raise HotwordError(
            f"hotword {text!r} has {len(words)} words; at most {MAX_PHRASE_WORDS} per phrase"
        )
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise HotwordError(f"the weight of hotword {text!r} must be a number, got {_kind(weight)}")
    value = float(weight)
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise HotwordError(
            f"the weight of hotword {text!r} must be between {-MAX_WEIGHT:g} and "
            f"{MAX_WEIGHT:g}, got {weight!r}"
        )
    return Hotword(text, value)


def hotword_list(hotwords: Iterable[Hotword]) -> tuple[Hotword, ...]:
    """The list a stream uses: at most 100 phrases, each once (the larger weight wins)."""
    merged: dict[str, Hotword] = {}
    for item in hotwords:
        known = merged.get(item.phrase)
        if known is None or abs(item.weight) > abs(known.weight):
            merged[item.phrase] = item
        if len(merged) > MAX_HOTWORDS:
            raise HotwordError(f"too many hotwords: at most {MAX_HOTWORDS} per stream")
    return tuple(merged.values())


def from_json(value: object) -> tuple[Hotword, ...]:
    """A JSON list of phrases: strings, or ``{"phrase": text, "weight": number}`` objects."""
    if not isinstance(value, list):
        raise HotwordError(f"hotwords must be a list, got {_kind(value)}")
    if len(value) > MAX_HOTWORDS:
        raise HotwordError(f"too many hotwords ({len(value)}): at most {MAX_HOTWORDS} per stream")
    items = []
    for entry in value:
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"phrase", "weight"})
            if unknown:
                raise HotwordError(f"a hotword object has unknown fields {unknown[:5]}")
            if "phrase" not in entry:
                raise HotwordError('a hotword object needs a "phrase"')
            items.append(hotword(entry["phrase"], entry.get("weight", DEFAULT_WEIGHT)))
        else:
            items.append(hotword(entry))
    return hotword_list(items)


def alphabet(vocab: CtcVocab) -> frozenset[str]:
    """The characters the model can write (its one-character tokens, and the space)."""
    letters = {
        token
        for i, token in enumerate(vocab.tokens)
        if len(token) == 1
        and i not in (vocab.blank_id, vocab.delimiter_id)
        and i not in vocab.ignore_ids
    }
    return frozenset(letters | {" "})


def check_hotwords(hotwords: Iterable[Hotword], letters: frozenset[str]) -> None:
    """A hotword with a character the model never writes could never be matched: refuse it."""
    for item in hotwords:
        bad = sorted(set(item.phrase) - letters)
        if bad:
            shown = "".join(sorted(letters - {" "}))
            raise HotwordError(
                f"hotword {item.phrase!r} has characters the model cannot write: "
                f"{' '.join(repr(c) for c in bad)} (it writes {shown!r} and spaces; spell "
                "numbers and symbols as words)"
            )


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number" if isinstance(value, int | float) else "?"
