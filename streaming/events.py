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


@dataclass(frozen=True)
class Lag:
    """The server fell behind this stream's audio (``behind``) or caught up again.

    Past saturation the server takes larger steps through the audio rather than
    falling further behind in silence; this event makes that visible to the client.
    """

    behind: bool
    lag_ms: int
    audio_ms: int

    @property
    def message(self) -> str:
        if self.behind:
            return (
                f"server is {self.lag_ms / 1000:.1f} s behind this stream's audio; "
                "it now processes larger steps to catch up"
            )
        return f"server has caught up with this stream ({self.lag_ms / 1000:.1f} s behind)"


Event = Partial | Final | ErrorEvent | Lag
