"""End-to-end latency bookkeeping, measured without clock synchronisation.

Every result the server sends names positions in the stream's own audio (ms from the first
sample). The sender remembers *when* it sent the audio up to each position (`SendLog`); the
receiver notes *when* each word / utterance first showed up (`LatencyTracker`). The difference
is the latency a person watching the captions experiences, network and server included.

Pure logic: no I/O, no clocks of its own (callers pass monotonic times in seconds), so every
number can be unit-tested against hand-computed values.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: How far (ms) a word's end may move between two results and still be "the same word".
DEFAULT_TOLERANCE_MS = 100.0


class SendLog:
    """When the audio up to each stream position was handed to the network.

    `record(t, end_ms)` is called after each chunk is sent: at time `t` the stream had been
    sent up to `end_ms`. Positions must not go backwards.
    """

    def __init__(self) -> None:
        self._ends: list[float] = []
        self._times: list[float] = []

    def record(self, t: float, end_ms: float) -> None:
        if self._ends and end_ms < self._ends[-1]:
            raise ValueError(f"stream position went backwards: {end_ms} < {self._ends[-1]}")
        self._ends.append(float(end_ms))
        self._times.append(float(t))

    def time_at(self, position_ms: float) -> float | None:
        """Time the audio up to `position_ms` had been sent (the chunk holding its last
        sample), or None if that audio was never sent."""
        i = bisect.bisect_left(self._ends, position_ms)
        if i >= len(self._ends):
            return None
        return self._times[i]

    @property
    def sent_ms(self) -> float:
        """Stream position sent so far."""
        return self._ends[-1] if self._ends else 0.0

    @property
    def first_time(self) -> float | None:
        return self._times[0] if self._times else None

    @property
    def last_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def __len__(self) -> int:
        return len(self._ends)


@dataclass
class WordRecord:
    """One word as it was seen across partials and the final of its utterance."""

    utterance_id: int
    word: str
    start_ms: float
    end_ms: float  # latest position reported for it
    first_shown_at: float
    shown_end_ms: float  # end_ms when first shown (what partial latency is measured against)
    shown_sent_at: float | None
    committed_at: float | None = None
    committed_end_ms: float | None = None
    committed_sent_at: float | None = None
    in_final: bool = False

    @property
    def partial_latency_ms(self) -> float | None:
        if self.shown_sent_at is None:
            return None
        return (self.first_shown_at - self.shown_sent_at) * 1000.0

    @property
    def commit_latency_ms(self) -> float | None:
        if self.committed_at is None or self.committed_sent_at is None:
            return None
        return (self.committed_at - self.committed_sent_at) * 1000.0

    @property
    def retracted(self) -> bool:
        """Shown as tentative, then revised away: it never became part of the transcript."""
        return self.committed_at is None

    def to_json(self, t0: float = 0.0) -> dict[str, Any]:
        """Times as seconds since `t0` (the start of the stream), latencies in ms."""
        return {
            "utterance_id": self.utterance_id,
            "word": self.word,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "in_final": self.in_final,
            "retracted": self.retracted,
            "partial_latency_ms": _round(self.partial_latency_ms),
            "commit_latency_ms": _round(self.commit_latency_ms),
            "shown_at_s": _since(self.first_shown_at, t0),
            "shown_end_ms": self.shown_end_ms,
            "shown_sent_at_s": _since(self.shown_sent_at, t0),
            "committed_at_s": _since(self.committed_at, t0),
            "committed_end_ms": self.committed_end_ms,
            "committed_sent_at_s": _since(self.committed_sent_at, t0),
        }


@dataclass
class UtteranceRecord:
    """One `final`, with the latency from the end of its speech to its arrival."""

    utterance_id: int
    text: str
    start_ms: float
    end_ms: float
    audio_ms: float
    reason: str
    arrived_at: float
    end_sent_at: float | None

    @property
    def final_latency_ms(self) -> float | None:
        if self.end_sent_at is None:
            return None
        return (self.arrived_at - self.end_sent_at) * 1000.0

    def to_json(self, t0: float = 0.0) -> dict[str, Any]:
        """Times as seconds since `t0` (the start of the stream), latencies in ms."""
        return {
            "utterance_id": self.utterance_id,
            "text": self.text,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "audio_ms": self.audio_ms,
            "reason": self.reason,
            "final_latency_ms": _round(self.final_latency_ms),
            "arrived_at_s": _since(self.arrived_at, t0),
            "end_sent_at_s": _since(self.end_sent_at, t0),
        }


class LatencyTracker:
    """Turns timestamped `partial` / `final` messages into per-word and per-utterance latency.

    A word in a new message is the same word as one seen before when it is in the same
    utterance, has the same text, and its `end_ms` is within `tolerance_ms` of the earlier
    one (word boundaries move a little as the model hears more context).
    """

    def __init__(self, send_log: SendLog, tolerance_ms: float = DEFAULT_TOLERANCE_MS) -> None:
        self.send_log = send_log
        self.tolerance_ms = tolerance_ms
        self.words: list[WordRecord] = []
        self.utterances: list[UtteranceRecord] = []
        self._by_utt: dict[int, list[WordRecord]] = {}

    def on_message(self, msg: Mapping[str, Any], t: float) -> None:
        kind = msg.get("type")
        if kind == "partial":
            self.on_partial(msg, t)
        elif kind == "final":
            self.on_final(msg, t)

    def on_partial(self, msg: Mapping[str, Any], t: float) -> None:
        utt = int(msg.get("utterance_id", 0))
        self._observe_words(utt, msg.get("words") or [], t, final=False)

    def on_final(self, msg: Mapping[str, Any], t: float) -> None:
        utt = int(msg.get("utterance_id", 0))
        self._observe_words(utt, msg.get("words") or [], t, final=True)
        end_ms = float(msg.get("end_ms", 0))
        self.utterances.append(
            UtteranceRecord(
                utterance_id=utt,
                text=str(msg.get("text", "")),
                start_ms=float(msg.get("start_ms", 0)),
                end_ms=end_ms,
                audio_ms=float(msg.get("audio_ms", 0)),
                reason=str(msg.get("reason", "")),
                arrived_at=t,
                end_sent_at=self.send_log.time_at(end_ms),
            )
        )

    def _observe_words(
        self, utt: int, words: Iterable[Mapping[str, Any]], t: float, *, final: bool
    ) -> None:
        known = self._by_utt.setdefault(utt, [])
        matched: set[int] = set()  # ids of records already claimed by this message
        for w in words:
            text = str(w.get("word", ""))
            start = float(w.get("start_ms", 0))
            end = float(w.get("end_ms", start))
            rec = self._match(known, text, end, matched)
            if rec is None:
                rec = WordRecord(
                    utterance_id=utt,
                    word=text,
                    start_ms=start,
                    end_ms=end,
                    first_shown_at=t,
                    shown_end_ms=end,
                    shown_sent_at=self.send_log.time_at(end),
                )
                known.append(rec)
                self.words.append(rec)
            matched.add(id(rec))
            rec.start_ms, rec.end_ms = start, end
            committed = final or bool(w.get("committed", False))
            if committed and rec.committed_at is None:
                rec.committed_at = t
                rec.committed_end_ms = end
                rec.committed_sent_at = self.send_log.time_at(end)
            if final:
                rec.in_final = True

    def _match(
        self, known: Sequence[WordRecord], text: str, end: float, taken: set[int]
    ) -> WordRecord | None:
        best: WordRecord | None = None
        best_d = math.inf
        for rec in known:
            if rec.word != text or id(rec) in taken:
                continue
            d = abs(rec.end_ms - end)
            if d <= self.tolerance_ms and d < best_d:
                best, best_d = rec, d
        return best

    # ---- summaries -------------------------------------------------------------------

    def partial_latencies(self) -> list[float]:
        """First-shown latency of the words that made it into the transcript."""
        return [
            v for r in self.words if not r.retracted and (v := r.partial_latency_ms) is not None
        ]

    def commit_latencies(self) -> list[float]:
        return [v for r in self.words if (v := r.commit_latency_ms) is not None]

    def final_latencies(self) -> list[float]:
        return [v for u in self.utterances if (v := u.final_latency_ms) is not None]

    def summary(self) -> dict[str, Any]:
        return {
            "partial": Stats.of(self.partial_latencies()).to_json(),
            "commit": Stats.of(self.commit_latencies()).to_json(),
            "final": Stats.of(self.final_latencies()).to_json(),
            "words_shown": len(self.words),
            "words_committed": sum(1 for r in self.words if not r.retracted),
            "words_retracted": sum(1 for r in self.words if r.retracted),
        }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: always one of the observed values (no invented numbers,
    and p99 of 10 samples is honestly the max)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            return cls(count=0)
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=max(values),
            mean=sum(values) / len(values),
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Stats:
        def num(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(
            count=int(d.get("count") or 0),
            p50=num("p50"),
            p90=num("p90"),
            p99=num("p99"),
            max=num("max"),
            mean=num("mean"),
        )

    def to_json(self) -> dict[str, Any]:
        return {k: _round(v) if k != "count" else v for k, v in asdict(self).items()}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 4)
