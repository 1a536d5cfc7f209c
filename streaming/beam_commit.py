"""Words that commit before the final when finals come from an LM beam search.

Greedy partials can commit a word as soon as its letters are in stable frames, but an LM
final may respell any word, so with LM finals nothing could commit until the utterance ended
(seconds, on long utterances). Here the undecided part of an utterance, from the ``cut``
frame on, is beam-searched with the LM as it is spoken (about a millisecond per search for
tiny-en); a word commits once the word after it starts in stable frames and the search
before (or greedy decoding) read it alike, and the cut moves to the start of the first word
that did not. The final is then the committed words plus a beam search of the frames from
the cut, continuing the LM from the committed words: committed text is a prefix of the final
by construction. On 200 out-of-domain sentences this costs 12 % more word errors than
holding every word to the final, whose last window then reads the whole utterance (0.280 vs
0.249; greedy 0.397), and brings the commit p50 / p95 from 2.4 / 4.8 s to 0.72 / 0.93 s
after the word (:class:`CommitRule`; ``python -m benchmarks.early_commits --per-category
40``). The price is deciding a word with about a second of audio after it: the rules, scores
and windows tried to lower it are in benchmarks/README.md.

Pure logic: the session asks for a :class:`CommitSearch`, the driver runs it off the event
loop, and :meth:`BeamCommits.accept` takes the beam's words back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .decoding import CtcVocab, best_path, greedy_words

BeamWord = tuple[str, int, int]  # text, first frame, frame after its last letter
Agreement = Literal["none", "read", "read-or-greedy", "settled"]
AGREEMENTS: tuple[Agreement, ...] = get_args(Agreement)


@dataclass(frozen=True)
class CommitSearch:
    """One beam search for early commits: ``scores`` are the utterance's frames from ``cut``
    (the stable ones, then the current window's tentative ones)."""

    utterance_id: int
    cut: int
    stable: int  # the utterance's stable frames when the search was asked for
    scores: np.ndarray
    context: tuple[str, ...]  # the committed words before ``cut``, for the LM
    greedy: tuple[tuple[str, int], ...] = ()  # greedy words of ``scores``: text, first frame


@dataclass(frozen=True)
class CommitRule:
    """When a word of the beam commits.

    A search is due once ``min_frames`` stable frames lie past the cut and the stable frames
    grew by ``every_frames`` since the last search (12 frames: each default window). A word
    settles when ``holdback`` more words follow it in the beam (the LM has judged it in
    context) and the word after it starts in stable frames (no later window can change the
    frames it was read from), or when ``quiet_frames`` stable frames follow it before the
    next word starts (a pause: 200 ms; on the live-load session files this brings the
    simulated p95 commit from 1.02 to 0.94 s with the same finals). ``agree`` then asks for
    a second opinion: ``"read"`` commits a settled word once the previous search read it
    alike, settled or not; ``"read-or-greedy"`` also takes greedy decoding of the same
    frames spelling it alike (an opinion there at once, where the previous search's costs a
    window when the two searches differ); ``"settled"`` waits until the previous search had
    settled it too (a window later); ``"none"`` commits at once. Measured on 200
    out-of-domain sentences (``benchmarks.early_commits``): the default (holdback 1,
    ``"read-or-greedy"``) makes 0.280 word errors at commit p50 / p95 0.72 / 0.93 s,
    ``"read"`` 0.278 at 0.72 / 1.02 s, ``"settled"`` 0.276 at 0.93 / 1.13 s (0.249
    committing at the final); ``"none"`` commits within 1 s at p95 for 4 % more errors than
    ``"read"``.
    """

    holdback: int = 1
    agree: Agreement = "read-or-greedy"
    min_frames: int = 12
    every_frames: int = 12
    quiet_frames: int = 10  # 0: only a following word settles a word

    def __post_init__(self) -> None:
        if self.holdback < 1:
            raise ValueError("holdback must be at least 1: the beam's last word may go on")
        if self.quiet_frames < 0:
            raise ValueError("quiet_frames must be at least 0")
        if self.agree not in AGREEMENTS:
            raise ValueError(f"agree must be one of {', '.join(AGREEMENTS)}, not {self.agree!r}")

    @property
    def label(self) -> str:
        return f"holdback {self.holdback}, agree {self.agree}"


GREEDY_SLACK = 3  # frames: the beam and greedy decoding may start a word this far apart


class BeamCommits:
    """The LM-committed words of one utterance and where its undecided frames begin; one
    search is in flight at a time. ``vocab`` reads the frames greedily (``"read-or-greedy"``)."""

    def __init__(self, rule: CommitRule | None = None, vocab: CtcVocab | None = None) -> None:
        self.rule = rule or CommitRule()
        if self.rule.agree == "read-or-greedy" and vocab is None:
            raise ValueError("agree 'read-or-greedy' needs the vocabulary to read frames greedily")
        self.vocab = vocab
        self.cut = 0
        self.words: list[BeamWord] = []  # committed, with utterance frames
        self.in_flight = False
        self._searched_at = 0  # stable frames at the last search
        self._previous: list[str] = []  # the last search's words, for ``agree``

    @property
    def context(self) -> tuple[str, ...]:
        return tuple(word for word, _, _ in self.words)

    def due(self, stable: int) -> bool:
        return (
            not self.in_flight
            and stable - self.cut >= self.rule.min_frames
            and stable - self._searched_at >= self.rule.every_frames
        )

    def search(
        self, utterance_id: int, stable: int, scores: np.ndarray, tentative: np.ndarray
    ) -> CommitSearch:
        """The search over ``scores`` (all stable frames) from the cut, then ``tentative``."""
        self.in_flight = True
        self._searched_at = stable
        frames = np.concatenate([scores[self.cut : stable], tentative])
        greedy: tuple[tuple[str, int], ...] = ()
        if self.rule.agree == "read-or-greedy" and self.vocab is not None and frames.size:
            ids, probs = best_path(frames)
            greedy = tuple((w.text, w.start_frame) for w in greedy_words(ids, probs, self.vocab))
        return CommitSearch(utterance_id, self.cut, stable, frames, self.context, greedy)

    def failed(self) -> None:
        """The search did not run (decoder busy or failed): a later one may."""
        self.in_flight = False

    def accept(self, search: CommitSearch, beam: list[BeamWord]) -> list[BeamWord]:
        """Commit the settled words of ``search``'s beam; returns them (utterance frames)."""
        self.in_flight = False
        if search.cut != self.cut:
            return []  # the cut moved since (not expected: one search at a time)
        stable = search.stable - search.cut
        quiet = self.rule.quiet_frames
        settled = 0
        for i, (_, _, end) in enumerate(beam):
            after = beam[i + 1][1] if i + 1 < len(beam) else None
            followed = i + self.rule.holdback < len(beam) and after is not None and after < stable
            paused = quiet > 0 and end + quiet <= stable and (after is None or after >= end + quiet)
            if not (followed or paused):
                break
            settled = i + 1
        if self.rule.agree != "none":  # commit only what a second opinion agrees with
            mine = [word for word, _, _ in beam]
            greedy = {(word, start) for word, start in search.greedy}
            same = 0
            for i, (word, start, _) in enumerate(beam[:settled]):
                read = i < len(self._previous) and self._previous[i] == word
                if not read and not any(
                    (word, start + d) in greedy for d in range(-GREEDY_SLACK, GREEDY_SLACK + 1)
                ):
                    break
                same += 1
            self._previous = mine if self.rule.agree != "settled" else mine[:settled]
            settled = same
            self._previous = self._previous[settled:]
        if not settled:
            return []
        new = [(word, start + self.cut, end + self.cut) for word, start, end in beam[:settled]]
        self.words.extend(new)
        self.cut = self.cut + beam[settled][1] if settled < len(beam) else new[-1][2]
        return new
