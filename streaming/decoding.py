"""Greedy CTC decoding into words with frame spans and confidences."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CtcVocab:
    """What each output id means; built from the model's tokenizer."""

    tokens: tuple[str, ...]
    blank_id: int
    delimiter_id: int
    ignore_ids: frozenset[int] = frozenset()

    @classmethod
    def from_vocab(
        cls,
        vocab: Mapping[str, int],
        *,
        blank: str = "<pad>",
        delimiter: str = "|",
        specials: Iterable[str] = ("<s>", "</s>", "<unk>"),
        lowercase: bool = True,
    ) -> CtcVocab:
        size = max(vocab.values()) + 1
        tokens = [""] * size
        for token, index in vocab.items():
            tokens[index] = token.lower() if lowercase else token
        if blank not in vocab or delimiter not in vocab:
            raise ValueError(f"vocabulary lacks the blank {blank!r} or delimiter {delimiter!r}")
        ignore = frozenset(vocab[s] for s in specials if s in vocab)
        return cls(tuple(tokens), vocab[blank], vocab[delimiter], ignore)


@dataclass(frozen=True)
class Word:
    """A decoded word; frames are absolute within the utterance, ``end_frame`` exclusive.

    ``closed_at`` is the frame of the delimiter that ends the word, or None when nothing
    after it has been decoded yet (so more letters could still be appended).
    """

    text: str
    start_frame: int
    end_frame: int
    conf: float
    closed_at: int | None = None


def greedy_words(
    ids: np.ndarray,
    probs: np.ndarray,
    vocab: CtcVocab,
    *,
    frame_offset: int = 0,
    previous_id: int | None = None,
) -> list[Word]:
    """Collapse repeats, drop blanks, split at delimiters.

    ``previous_id`` is the id of the frame just before ``ids`` so a decode can resume in
    the middle of an utterance without re-reading earlier frames.
    """
    if ids.size == 0:
        return []
    prev = np.empty_like(ids)
    prev[0] = -1 if previous_id is None else previous_id
    prev[1:] = ids[:-1]
    emitted = np.flatnonzero((ids != prev) & (ids != vocab.blank_id))
    # Where each emitted token's run of repeated frames ends (exclusive).
    changes = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    run_ends = np.append(changes, ids.size)[np.searchsorted(changes, emitted, side="right")]
    words: list[Word] = []
    chars: list[str] = []
    frames: list[int] = []
    last_end = 0
    for index, run_end in zip(emitted.tolist(), run_ends.tolist()):
        token = int(ids[index])
        if token == vocab.delimiter_id:
            if chars:
                words.append(
                    _word(chars, frames, last_end, probs, frame_offset, index + frame_offset)
                )
                chars, frames = [], []
            continue
        if token in vocab.ignore_ids:
            continue
        chars.append(vocab.tokens[token])
        frames.append(index)
        last_end = run_end
    if chars:
        words.append(_word(chars, frames, last_end, probs, frame_offset, None))
    return words


def _word(
    chars: list[str],
    frames: list[int],
    end: int,
    probs: np.ndarray,
    offset: int,
    closed_at: int | None,
) -> Word:
    conf = float(np.mean(probs[frames]))
    return Word("".join(chars), frames[0] + offset, end + offset, conf, closed_at)


def best_path(logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame argmax id and its probability from (frames, vocab) log-probabilities."""
    ids = logprobs.argmax(axis=-1)
    probs = np.exp(np.take_along_axis(logprobs, ids[:, None], axis=-1)[:, 0])
    return ids.astype(np.int32), probs.astype(np.float32)


def words_text(words: Iterable[Word]) -> str:
    return " ".join(w.text for w in words)
