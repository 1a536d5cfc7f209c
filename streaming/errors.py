"""Errors that travel to clients as ``{"type": "error", "code", "message"}``."""

from __future__ import annotations


class StreamError(Exception):
    """A client-visible failure with a stable machine-readable code.

    ``fatal`` errors end the session; the others reject only the offending frame.
    """

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"StreamError({self.code!r}, {self.message!r}, fatal={self.fatal})"


class ModelLoadError(Exception):
    """The configured model could not be loaded; the message says how to fix it."""
