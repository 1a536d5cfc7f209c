"""Finals as SubRip (.srt) or WebVTT (.vtt) subtitles.

Times come from the finals themselves (stream positions), so the subtitles line up with the
audio file that was streamed. A long utterance is split at word boundaries (using the word
timings) into cues of at most two lines of 42 characters, the usual limit for readability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.captions import sanitize

MAX_LINE_CHARS = 42
MAX_LINES = 2


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def wrap(text: str, width: int = MAX_LINE_CHARS) -> list[str]:
    """Greedy word wrap; a word longer than `width` gets a line of its own."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def _fits(words: Sequence[str], width: int, max_lines: int) -> bool:
    return len(wrap(" ".join(words), width)) <= max_lines


def cues_from_finals(
    finals: Iterable[Mapping[str, Any]],
    *,
    width: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
) -> list[Cue]:
    cues: list[Cue] = []
    for final in finals:
        text = sanitize(str(final.get("text", "")))
        if not text:
            continue
        start = int(final.get("start_ms", 0))
        end = max(int(final.get("end_ms", start)), start + 1)
        words = [w for w in final.get("words") or [] if sanitize(str(w.get("word", "")))]
        if len(wrap(text, width)) <= max_lines or not words:
            cues.append(Cue(start, end, tuple(wrap(text, width))))
            continue
        group: list[Mapping[str, Any]] = []
        groups: list[list[Mapping[str, Any]]] = []
        for w in words:
            candidate = [*group, w]
            if group and not _fits([sanitize(str(x["word"])) for x in candidate], width, max_lines):
                groups.append(group)
                group = [w]
            else:
                group = candidate
        if group:
            groups.append(group)
        for i, g in enumerate(groups):
            g_start = start if i == 0 else int(g[0].get("start_ms", start))
            g_end = end if i == len(groups) - 1 else int(g[-1].get("end_ms", end))
            g_start = max(g_start, cues[-1].end_ms if cues and i > 0 else g_start)
            g_end = max(g_end, g_start + 1)
            g_text = " ".join(sanitize(str(x["word"])) for x in g)
            cues.append(Cue(g_start, g_end, tuple(wrap(g_text, width))))
    return cues


def _clock(ms: int, sep: str) -> str:
    ms = max(0, ms)
    s, milli = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


def to_srt(finals: Iterable[Mapping[str, Any]]) -> str:
    blocks = []
    for i, cue in enumerate(cues_from_finals(finals), start=1):
        times = f"{_clock(cue.start_ms, ',')} --> {_clock(cue.end_ms, ',')}"
        blocks.append(f"{i}\n{times}\n" + "\n".join(cue.lines) + "\n")
    return "\n".join(blocks)


def to_vtt(finals: Iterable[Mapping[str, Any]]) -> str:
    out = ["WEBVTT\n"]
    for cue in cues_from_finals(finals):
        times = f"{_clock(cue.start_ms, '.')} --> {_clock(cue.end_ms, '.')}"
        # "-->" may not appear in a cue's text
        lines = [line.replace("-->", "->") for line in cue.lines]
        out.append(f"{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(out)
