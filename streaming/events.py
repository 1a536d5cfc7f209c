"""What a session tells its client; the protocol module turns these into JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_ms: int
    end_ms: int
    conf: float
    committed: bool


@dataclass(frozen=True)
class Partial:
    utterance_id: int
    committed: str
    tentative: str
    start_ms: int
    audio_ms: int
    words: tuple[WordTiming, ...]

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.committed, self.tentative) if t)


@dataclass(frozen=True)
class Final:
    utterance_id: int
    text: str
    start_ms: int
    end_ms: int
    audio_ms: int
    words: tuple[WordTiming, ...]
    reason: str


@dataclass(frozen=True)
class ErrorEvent:
    code: str
    message: str
    fatal: bool = False


Event = Partial | Final | ErrorEvent
