"""Terminal captions: styling, in-place updates, width handling, plain and JSON modes."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from client.captions import (
    CLEAR_LINE,
    DIM,
    RESET,
    Captions,
    choose_mode,
    fit_tail,
    format_clock,
    sanitize,
    text_width,
)

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def partial(committed: str, tentative: str, start_ms: int = 0) -> dict[str, Any]:
    return {
        "type": "partial",
        "utterance_id": 0,
        "committed": committed,
        "tentative": tentative,
        "text": f"{committed} {tentative}".strip(),
        "start_ms": start_ms,
        "audio_ms": 1000,
        "words": [],
    }


def final(text: str, start_ms: int = 0, end_ms: int = 1000) -> dict[str, Any]:
    return {
        "type": "final",
        "utterance_id": 0,
        "text": text,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "audio_ms": end_ms + 500,
        "words": [],
        "reason": "vad",
    }


def live(width: int = 80, **kw: Any) -> tuple[Captions, io.StringIO, io.StringIO]:
    out, err = Tty(), io.StringIO()
    return Captions(out, err, "live", width=lambda: width, color=True, **kw), out, err


def screen(raw: str) -> list[str]:
    """What a terminal shows after `raw` (CR: column 0, ESC[2K: clear line, other escape
    sequences: no visible text)."""
    lines: list[list[str]] = [[]]
    col = 0
    for part in re.split(r"(\r|\n|\x1b\[2K)", raw):
        if part == "\n":
            lines.append([])
            col = 0
        elif part == "\r":
            col = 0
        elif part == "\x1b[2K":
            lines[-1] = []
        else:
            text = ANSI.sub("", part)
            line = lines[-1]
            line.extend(" " * (col - len(line)))
            line[col : col + len(text)] = list(text)
            col += len(text)
    return ["".join(line) for line in lines]


def test_committed_normal_tentative_dim_updated_in_place() -> None:
    ui, out, _ = live()
    ui.message(partial("hello", "wor"), 0.0)
    ui.message(partial("hello world", "how"), 0.1)
    raw = out.getvalue()
    assert raw == (f"{CLEAR_LINE}hello {DIM}wor{RESET}{CLEAR_LINE}hello world {DIM}how{RESET}")
    assert "\n" not in raw  # no scrolling while the utterance is open
    assert screen(raw) == ["hello world how"]


def test_identical_update_is_not_redrawn() -> None:
    ui, out, _ = live()
    ui.message(partial("a", "b"), 0.0)
    before = out.getvalue()
    ui.message(partial("a", "b"), 0.1)
    assert out.getvalue() == before


def test_final_replaces_live_line_and_ends_it() -> None:
    ui, out, _ = live()
    ui.message(partial("good", "mornin"), 0.0)
    ui.message(final("good morning"), 0.2)
    ui.message(partial("", "next"), 0.3)
    assert screen(out.getvalue()) == ["good morning", "next"]
    assert out.getvalue().count("\n") == 1


def test_empty_final_only_clears_the_line() -> None:
    ui, out, _ = live()
    ui.message(partial("", "uh"), 0.0)
    ui.message(final(""), 0.1)
    assert screen(out.getvalue()) == [""]


def test_long_line_shows_only_the_tail_that_fits() -> None:
    ui, out, _ = live(width=20)
    ui.message(partial("one two three four five six", "seven eight"), 0.0)
    (shown,) = screen(out.getvalue())
    assert shown.startswith("…") and shown.endswith("seven eight")
    assert text_width(shown) <= 19  # never the last column: no auto-wrap
    raw = out.getvalue()
    assert f"{DIM}seven eight{RESET}" in raw


def test_tail_inside_tentative_stays_dim() -> None:
    ui, out, _ = live(width=10)
    ui.message(partial("abc", "defghijklmnop"), 0.0)
    raw = out.getvalue()
    assert raw == f"{CLEAR_LINE}{DIM}…ijklmnop{RESET}"


def test_fit_tail_wide_characters() -> None:
    segs = fit_tail([("日本語のテキスト", False)], 7)
    text = "".join(s for s, _ in segs)
    assert text_width(text) <= 7 and text.startswith("…") and text.endswith("スト")
    assert fit_tail([("short", False)], 10) == [("short", False)]


def test_timestamps_on_live_line_and_finals() -> None:
    ui, out, _ = live(timestamps=True)
    ui.message(partial("hi", "", start_ms=61_250), 0.0)
    ui.message(final("hi there", 61_250, 63_000), 0.1)
    assert screen(out.getvalue()) == ["[1:01.2-1:03.0] hi there", ""]
    assert "[1:01.2] hi" in out.getvalue()


def test_plain_mode_prints_only_finals_one_per_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    ui = Captions(out, err, "plain", timestamps=False)
    ui.message({"type": "ready", "session_id": "s"}, 0.0)
    ui.message(partial("a", "b"), 0.0)
    ui.message(final("first one"), 0.1)
    ui.message(final(""), 0.2)  # nothing heard: no empty line
    ui.message(final("second"), 0.3)
    assert out.getvalue() == "first one\nsecond\n"
    assert "\x1b" not in out.getvalue()


def test_plain_mode_with_timestamps() -> None:
    out = io.StringIO()
    ui = Captions(out, io.StringIO(), "plain", timestamps=True)
    ui.message(final("x", 1500, 2250), 0.0)
    assert out.getvalue() == "[0:01.5-0:02.2] x\n" or out.getvalue() == "[0:01.5-0:02.3] x\n"


def test_json_mode_prints_every_message() -> None:
    out = io.StringIO()
    ui = Captions(out, io.StringIO(), "json")
    msgs = [{"type": "ready", "session_id": "s"}, partial("a", "b"), final("ä")]
    for m in msgs:
        ui.message(m, 0.0)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == msgs
    assert "ä" in lines[2]


def test_server_error_is_one_line_on_stderr_and_live_line_is_restored() -> None:
    ui, out, err = live()
    ui.message(partial("keep", "this"), 0.0)
    ui.message(
        {
            "type": "error",
            "code": "frame_too_large",
            "message": "frame of 9 MB\ndropped",
            "fatal": False,
        },
        0.1,
    )
    assert err.getvalue() == "server error frame_too_large: frame of 9 MB dropped\n"
    assert screen(out.getvalue()) == ["keep this"]


def test_fatal_error_is_marked() -> None:
    out, err = io.StringIO(), io.StringIO()
    Captions(out, err, "plain").message(
        {"type": "error", "code": "idle_timeout", "message": "no audio", "fatal": True}, 0.0
    )
    assert err.getvalue() == "server error idle_timeout (fatal): no audio\n"
    assert out.getvalue() == ""


def test_quiet_hides_status_but_not_errors() -> None:
    out, err = io.StringIO(), io.StringIO()
    ui = Captions(out, err, "plain", quiet=True)
    ui.status("connecting …")
    ui.notice("error: boom")
    assert err.getvalue() == "error: boom\n"


def test_finish_keeps_unfinished_text() -> None:
    ui, out, _ = live()
    ui.message(partial("cut", "off"), 0.0)
    ui.finish()
    ui.finish()
    assert screen(out.getvalue()) == ["cut off", ""]


def test_no_color() -> None:
    out = Tty()
    ui = Captions(out, io.StringIO(), "live", color=False, width=lambda: 80)
    ui.message(partial("a", "b"), 0.0)
    assert "\x1b[2m" not in out.getvalue()


def test_control_characters_from_the_server_are_removed() -> None:
    assert sanitize("a\x1b[31mred\x07\tb\nc") == "a[31mred b c"
    ui, out, _ = live()
    ui.message(partial("\x1b]0;title\x07x", ""), 0.0)
    assert "\x1b]" not in out.getvalue() and "\x07" not in out.getvalue()


@pytest.mark.parametrize(
    ("plain", "json_lines", "tty", "expected"),
    [
        (False, False, True, "live"),
        (True, False, True, "plain"),
        (False, False, False, "plain"),
        (False, True, True, "json"),
        (False, True, False, "json"),
    ],
)
def test_choose_mode(
    plain: bool, json_lines: bool, tty: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    out = Tty() if tty else io.StringIO()
    assert choose_mode(plain=plain, json_lines=json_lines, out=out) == expected


def test_dumb_terminal_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert choose_mode(plain=False, json_lines=False, out=Tty()) == "plain"


def test_format_clock() -> None:
    assert format_clock(0) == "0:00.0"
    assert format_clock(1234) == "0:01.2"
    assert format_clock(59_960) == "1:00.0"
    assert format_clock(3_723_400) == "1:02:03.4"
    assert format_clock(-5) == "0:00.0"


def test_timestamp_stays_when_the_text_is_cut() -> None:
    ui, out, _ = live(width=30, timestamps=True)
    ui.message(partial("a" * 40, "b" * 5, start_ms=2500), 0.0)
    (shown,) = screen(out.getvalue())
    assert shown == "[0:02.5] …" + "a" * 13 + " " + "b" * 5
    assert text_width(shown) == 29


def test_notices_keep_layout_but_lose_control_characters() -> None:
    err = io.StringIO()
    ui = Captions(io.StringIO(), err, "plain")
    ui.notice("error: x: server error boom: \x1b[2Jgone\n  indented\tline")
    assert err.getvalue() == "error: x: server error boom: [2Jgone\n  indented line\n"
