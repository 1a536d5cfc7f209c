"""A client display stand-in that keeps the status lines the client shows."""

from __future__ import annotations

from typing import Any


class StatusRecorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.lines.append(text)

    def message(self, msg: dict[str, Any], t: float) -> None:
        pass
