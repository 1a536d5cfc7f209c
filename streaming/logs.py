"""Logging set-up of the server's processes (the CLI, each worker, the shared engine).

Its own module so that ``__main__`` and ``workers`` both use it without importing each
other, and so that a spawned worker can import it by name.
"""

from __future__ import annotations

import logging


class SessionFormatter(logging.Formatter):
    """Adds ``[session]`` to every line logged inside a session."""

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session", None)
        record.sid = f" [{session}]" if session else ""
        return super().format(record)


def quiet_transformers() -> None:
    """No progress bars from transformers while loading weights: this is a server log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def setup_logging(level: str, prefix: str = "") -> None:
    """Log to stderr; ``prefix`` (e.g. ``[worker 1] ``) starts every message."""
    handler = logging.StreamHandler()
    prefix = prefix.replace("%", "%%")
    handler.setFormatter(
        SessionFormatter(f"%(asctime)s %(levelname)s {prefix}%(name)s%(sid)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(max(logging.getLevelName(level), logging.WARNING))
    quiet_transformers()
