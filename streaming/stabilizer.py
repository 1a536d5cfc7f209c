"""Committed + tentative text for one utterance; committed words are never retracted.

Stable frames never change once a window has kept them. A word is committed when its
letters *and* the delimiter that closes it are all in stable frames: nothing a later window
produces can then alter it, so "committed text is a prefix of every later text" holds by
construction rather than by heuristics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decoding import CtcVocab, Word, greedy_words


@dataclass(frozen=True)
class Hypothesis:
    committed: tuple[Word, ...]
    tentative: tuple[Word, ...]


class Stabilizer:
    """Incrementally decodes stable + tentative frames; only decodes past the last commit."""

    def __init__(self, vocab: CtcVocab, *, commit_early: bool = True) -> None:
        # Without early commits every word stays tentative until the final: for a final
        # that is decoded differently (LM beam search), which may revise any word.
        self.vocab = vocab
        self.commit_early = commit_early
        self._committed: list[Word] = []
        self._scan_from = 0  # first frame after the delimiter of the last committed word

    def skip_to(self, frame: int) -> None:
        """Decode from ``frame`` on, a word boundary: the words before it were decided
        elsewhere (LM early commits, ``streaming.beam_commit``)."""
        if self._committed:
            raise RuntimeError("skip_to is for a stabilizer that commits nothing itself")
        self._scan_from = frame

    def update(
        self,
        stable_ids: np.ndarray,
        stable_probs: np.ndarray,
        tentative_ids: np.ndarray,
        tentative_probs: np.ndarray,
        *,
        final: bool = False,
    ) -> Hypothesis:
        """Decode everything after the last commit; commit the words that are settled.

        ``final`` means no frame will ever follow: every word is committed.
        """
        n_stable = stable_ids.size
        ids = np.concatenate([stable_ids[self._scan_from :], tentative_ids])
        probs = np.concatenate([stable_probs[self._scan_from :], tentative_probs])
        previous = self.vocab.delimiter_id if self._scan_from else None
        words = greedy_words(
            ids, probs, self.vocab, frame_offset=self._scan_from, previous_id=previous
        )
        if final:
            self._committed.extend(words)
            self._scan_from = n_stable
            return Hypothesis(tuple(self._committed), ())
        settled = 0
        for word in words if self.commit_early else ():
            if word.closed_at is None or word.closed_at >= n_stable:
                break
            settled += 1
            self._scan_from = word.closed_at + 1
        self._committed.extend(words[:settled])
        return Hypothesis(tuple(self._committed), tuple(words[settled:]))
