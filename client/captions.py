"""Live captions in a terminal, or plain / JSON lines for pipes and logs.

Live mode keeps exactly one physical line for the open utterance and redraws it in place
(carriage return + clear line, one write per update, skipped when nothing changed). That line
is never wider than the terminal, so it cannot wrap and leave half-erased lines behind: when
the text is too long only its tail is shown. A finished utterance is printed on its own line.
Committed text is normal, the tentative tail (which may still change) is dim.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
from collections.abc import Callable
from typing import Any, Literal, TextIO

Mode = Literal["live", "plain", "json"]

DIM = "\x1b[2m"
RESET = "\x1b[0m"
CLEAR_LINE = "\r\x1b[2K"
ELLIPSIS = "…"

Segment = tuple[str, bool]  # (text, dim)


def choose_mode(*, plain: bool, json_lines: bool, out: TextIO) -> Mode:
    """--json wins, then --plain; a pipe, a file or a dumb terminal get plain automatically."""
    if json_lines:
        return "json"
    if plain or not _isatty(out) or os.environ.get("TERM") == "dumb":
        return "plain"
    return "live"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def sanitize(text: str) -> str:
    """Server text without control characters, so it cannot move the cursor or change
    colours; whitespace runs (tabs, newlines) become single spaces."""
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) != "Cc":
            out.append(ch)
    return " ".join("".join(out).split())


def strip_controls(text: str) -> str:
    """Like `sanitize` but keeps line breaks and indentation (for multi-line notices that
    may quote the server)."""
    return "".join(
        " " if ch == "\t" else ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc"
    )


def char_width(ch: str) -> int:
    """Terminal columns of one character: 0 for combining marks, 2 for wide East Asian."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def fit_tail(segments: list[Segment], width: int) -> list[Segment]:
    """The rightmost part of the segments that fits in `width` columns; when something was
    cut, it starts with an ellipsis (which counts in the width)."""
    total = sum(text_width(s) for s, _ in segments)
    if total <= width:
        return [s for s in segments if s[0]]
    budget = max(0, width - 1)
    kept: list[Segment] = []
    for text, dim in reversed(segments):
        if budget <= 0:
            break
        chars: list[str] = []
        for ch in reversed(text):
            w = char_width(ch)
            if w > budget:
                budget = 0
                break
            chars.append(ch)
            budget -= w
        if chars:
            kept.append(("".join(reversed(chars)), dim))
    kept.reverse()
    first_dim = kept[0][1] if kept else False
    return [(ELLIPSIS, first_dim), *kept]


def format_clock(ms: float) -> str:
    """Stream position as M:SS.s (H:MM:SS.s past an hour)."""
    tenths = round(max(0.0, ms) / 100.0)
    s, t = divmod(tenths, 10)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m}:{s:02d}.{t}"


def timestamp_prefix(start_ms: float, end_ms: float | None = None) -> str:
    if end_ms is None:
        return f"[{format_clock(start_ms)}] "
    return f"[{format_clock(start_ms)}-{format_clock(end_ms)}] "


class Captions:
    """Shows a session's messages; implements `client.connection.Listener`."""

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        mode: Mode = "live",
        *,
        timestamps: bool = False,
        color: bool | None = None,
        quiet: bool = False,
        width: Callable[[], int] | None = None,
    ) -> None:
        self.out = out
        self.err = err
        self.mode: Mode = mode
        self.timestamps = timestamps
        self.color = (os.environ.get("NO_COLOR") is None) if color is None else color
        self.quiet = quiet
        self._width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._line = ""  # what the live line shows now ("" = nothing)

    # ---- Listener --------------------------------------------------------------------

    def status(self, text: str) -> None:
        if not self.quiet:
            self._to_err(text)

    def message(self, msg: dict[str, Any], t: float) -> None:
        kind = msg.get("type")
        if kind == "error":
            self.error(msg)
        elif kind == "lag":  # the server fell behind this stream, or caught up again
            self.status(f"server: {sanitize(str(msg.get('message', '')))}")
        if self.mode == "json":
            self.out.write(json.dumps(msg, ensure_ascii=False) + "\n")
            self.out.flush()
        elif kind == "partial" and self.mode == "live":
            self._show_partial(msg)
        elif kind == "final":
            self._show_final(msg)

    # ---- output ----------------------------------------------------------------------

    def error(self, msg: dict[str, Any]) -> None:
        """A server `error` as one line on stderr."""
        fatal = " (fatal)" if msg.get("fatal") else ""
        text = sanitize(str(msg.get("message", "")))
        self._to_err(f"server error {sanitize(str(msg.get('code', '?')))}{fatal}: {text}")

    def notice(self, text: str) -> None:
        """A line for the person even in quiet mode (failures, the end summary)."""
        self._to_err(text)

    def finish(self) -> None:
        """The stream is over: keep whatever the live line shows, and move past it."""
        if self._line:
            self.out.write("\n")
            self.out.flush()
            self._line = ""

    def _to_err(self, text: str) -> None:
        shown = self._line
        if shown:
            self.out.write(CLEAR_LINE)
            self.out.flush()
        self.err.write(strip_controls(text).rstrip("\n") + "\n")
        self.err.flush()
        if shown:
            self.out.write(shown)
            self.out.flush()

    def _show_partial(self, msg: dict[str, Any]) -> None:
        committed = sanitize(str(msg.get("committed", "")))
        tentative = sanitize(str(msg.get("tentative", "")))
        prefix = timestamp_prefix(float(msg.get("start_ms", 0))) if self.timestamps else ""
        sep = " " if committed and tentative else ""
        # The timestamp stays; when the text is too wide, its start gives way.
        room = max(1, self._width() - 1 - text_width(prefix))
        fitted = fit_tail([(committed + sep, False), (tentative, True)], room)
        line = self._render([(prefix, False), *fitted])
        if line != self._line:
            self.out.write(CLEAR_LINE + line)
            self.out.flush()
            self._line = line

    def _show_final(self, msg: dict[str, Any]) -> None:
        text = sanitize(str(msg.get("text", "")))
        prefix = ""
        if self.timestamps:
            prefix = timestamp_prefix(float(msg.get("start_ms", 0)), float(msg.get("end_ms", 0)))
        if self.mode == "live":
            self.out.write(CLEAR_LINE + (prefix + text + "\n" if text else ""))
            self._line = ""
        elif text:
            self.out.write(prefix + text + "\n")
        self.out.flush()

    def _render(self, segments: list[Segment]) -> str:
        merged: list[Segment] = []
        for text, dim in segments:
            if merged and merged[-1][1] == dim:
                merged[-1] = (merged[-1][0] + text, dim)
            elif text:
                merged.append((text, dim))
        return "".join(
            f"{DIM}{text}{RESET}" if dim and self.color else text for text, dim in merged
        )
