"""Who may open a stream now, and if not, why (a reason code for metrics and a message).

A new stream is refused while the server shuts down, at the session limit, while the
engine is so busy that one more stream would make every stream fall behind, and while
streams already are behind real time (the engine's busy fraction alone misses a CPU
saturated by something else). The protocol decides how a refusal is spelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import ServerConfig
from .engine import LOAD_WINDOW_S


@dataclass(frozen=True)
class Decision:
    """``reason``: "admitted", "shutting_down", "full" or "overloaded"."""

    reason: str
    message: str = ""

    @property
    def admitted(self) -> bool:
        return self.reason == "admitted"


ADMITTED = Decision("admitted")


class Admission:
    """Decides from the live numbers it is given; holds no state of its own."""

    def __init__(self, config: ServerConfig) -> None:
        self.max_sessions = config.max_sessions
        self.max_engine_load = config.max_engine_load
        self.lag_warning_s = config.lag_warning_s

    def decide(
        self,
        *,
        sessions: int,
        engine_load: Callable[[], float],
        behind: Iterable[bool],
        shutting_down: bool = False,
    ) -> Decision:
        """``sessions`` open now, the engine's busy fraction (read only when the limit is
        on), and for each open stream whether it is behind real time."""
        if shutting_down:
            return Decision("shutting_down", "server shutting down")
        return self.capacity(sessions=sessions, engine_load=engine_load, behind=behind)

    def capacity(
        self, *, sessions: int, engine_load: Callable[[], float], behind: Iterable[bool]
    ) -> Decision:
        """Whether there is room for one more stream (shutting down aside)."""
        if sessions >= self.max_sessions:
            return Decision("full", f"server full: {self.max_sessions} sessions in use")
        limit = self.max_engine_load
        load = engine_load() if limit < 1 else 0.0
        if load >= limit:
            return Decision(
                "overloaded",
                f"server overloaded: the model was busy {load:.0%} of the last "
                f"{LOAD_WINDOW_S:.0f} s (limit {limit:.0%}); try again later",
            )
        late = sum(1 for stream_behind in behind if stream_behind)
        if late:
            return Decision(
                "overloaded",
                f"server overloaded: {late} of {sessions} streams are more than "
                f"{self.lag_warning_s:g} s behind real time; try again later",
            )
        return ADMITTED
