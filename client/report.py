"""Summaries for people (a small table) and for programs (`--report FILE.json`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from client.connection import StreamResult
from client.latency import Stats

REPORT_VERSION = 1
_ROWS = (("partial", "partial (word)"), ("commit", "commit (word)"), ("final", "final (utterance)"))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def latency_table(latency: Mapping[str, Any], indent: str = "  ") -> list[str]:
    lines = [f"{indent}{'latency (ms)':<18} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"]
    for key, label in _ROWS:
        s = Stats.from_json(latency.get(key) or {"count": 0})
        lines.append(
            f"{indent}{label:<18} {s.count:>5} {_ms(s.p50):>7} {_ms(s.p90):>7}"
            f" {_ms(s.p99):>7} {_ms(s.max):>7}"
        )
    return lines


def format_summary(summary: Mapping[str, Any], title: str | None = None) -> str:
    """The end-of-stream summary of `StreamResult.summary()` or `overall_summary()`."""
    head = title if title is not None else str(summary.get("source", "stream"))
    audio, wall = float(summary.get("audio_s") or 0), float(summary.get("wall_s") or 0)
    speed = summary.get("speed_x_realtime")
    speed_txt = f" ({speed:.2f}× real time)" if speed else ""
    n_utt = summary.get("utterances", 0)
    lines = [
        f"{head}: {n_utt} utterance{'s' if n_utt != 1 else ''},"
        f" {audio:.1f} s of audio sent in {wall:.1f} s{speed_txt}"
    ]
    lat = summary.get("latency_ms") or {}
    lines.extend(latency_table(lat))
    if lat.get("words_shown"):
        lines.append(
            f"  words: {lat['words_shown']} shown, {lat['words_committed']} kept,"
            f" {lat['words_retracted']} revised away"
        )
    tail = summary.get("tail_s")
    if tail is not None:
        lines.append(f"  session closed {tail:.2f} s after the last audio was sent")
    if summary.get("dropped_blocks"):
        lines.append(
            f"  DROPPED {summary['dropped_blocks']} audio block(s)"
            f" ({float(summary.get('dropped_ms', 0)) / 1000:.1f} s): the network was too slow"
        )
    if summary.get("input_overflows"):
        lines.append(f"  {summary['input_overflows']} audio input overflow(s)")
    if summary.get("errors"):
        lines.append(f"  {summary['errors']} server error message(s)")
    if summary.get("interrupted"):
        lines.append("  stopped on request (Ctrl-C)")
    if summary.get("failure"):
        lines.append(f"  FAILED: {summary['failure']}")
    return "\n".join(lines)


def overall_summary(results: Sequence[StreamResult]) -> dict[str, Any]:
    """All sessions together: latency percentiles over every word and utterance."""
    audio = sum(r.audio_s for r in results)
    wall = sum(r.wall_s for r in results)
    partial = [v for r in results for v in r.tracker.partial_latencies()]
    commit = [v for r in results for v in r.tracker.commit_latencies()]
    final = [v for r in results for v in r.tracker.final_latencies()]
    words = [w for r in results for w in r.tracker.words]
    failed = [r for r in results if not r.ok]
    return {
        "source": f"{len(results)} session{'s' if len(results) != 1 else ''}",
        "sessions": len(results),
        "failed": len(failed),
        "ok": not failed,
        "failure": f"{len(failed)} of {len(results)} failed" if failed else None,
        "interrupted": any(r.interrupted for r in results),
        "utterances": sum(len(r.finals) for r in results),
        "partials": sum(r.partials for r in results),
        "errors": sum(len(r.errors) for r in results),
        "audio_s": round(audio, 3),
        "wall_s": round(wall, 3),
        "speed_x_realtime": round(audio / wall, 3) if wall > 0 else None,
        "dropped_blocks": sum(r.dropped_blocks for r in results),
        "dropped_ms": round(sum(r.dropped_ms for r in results), 1),
        "input_overflows": sum(r.input_overflows for r in results),
        "latency_ms": {
            "partial": Stats.of(partial).to_json(),
            "commit": Stats.of(commit).to_json(),
            "final": Stats.of(final).to_json(),
            "words_shown": len(words),
            "words_committed": sum(1 for w in words if not w.retracted),
            "words_retracted": sum(1 for w in words if w.retracted),
        },
    }


def build_report(
    results: Sequence[StreamResult], settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Summary plus the raw per-word / per-utterance records of every session."""
    return {
        "version": REPORT_VERSION,
        "settings": dict(settings or {}),
        "overall": overall_summary(results),
        "sessions": [r.to_json() for r in results],
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    p = Path(path)
    if p.parent != Path():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
