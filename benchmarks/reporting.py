"""Result files and console tables: latency summaries, the JSON every benchmark writes
(``<benchmark>[-<tag>]-<machine>.json`` with the same first keys) and aligned text tables.

Percentiles are nearest-rank, the rule of :func:`client.latency.percentile` (used here, so
the client's own latency report and the benchmarks agree to the millisecond).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import figures
from benchmarks.machine import machine_slug
from benchmarks.models import BenchModel, model_fingerprint
from benchmarks.paths import result_path
from client.latency import percentile


def summarize(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """count, p50, p90, p95, p99, mean, max (None when there are no values)."""
    vals = [float(v) for v in values]
    if not vals:
        return {
            "count": 0,
            "p50": None,
            "p90": None,
            "p95": None,
            "p99": None,
            "mean": None,
            "max": None,
        }
    out: dict[str, Any] = {"count": len(vals)}
    for p in (50, 90, 95, 99):
        out[f"p{p}"] = round(float(percentile(vals, p)), digits)
    out["mean"] = round(sum(vals) / len(vals), digits)
    out["max"] = round(max(vals), digits)
    return out


def latency_summary(trackers: Iterable[Any], final: bool = True) -> dict[str, Any]:
    """``partial_ms``, ``commit_ms`` (and ``final_ms``): :func:`summarize` over every word
    (utterance) of some ``client.latency.LatencyTracker`` s, in their order."""
    trackers = list(trackers)
    out = {
        "partial_ms": summarize([v for t in trackers for v in t.partial_latencies()]),
        "commit_ms": summarize([v for t in trackers for v in t.commit_latencies()]),
    }
    if final:
        out["final_ms"] = summarize([v for t in trackers for v in t.final_latencies()])
    return out


def word_counts(trackers: Iterable[Any]) -> dict[str, int]:
    """``words_shown`` and ``words_retracted`` (shown, never committed) of some trackers."""
    words = [w for t in trackers for w in t.words]
    return {"words_shown": len(words), "words_retracted": sum(1 for w in words if w.retracted)}


def write_json(name: str, slug: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    path = result_path(name, slug, ".json", results_dir)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: object) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def result_header(
    args: argparse.Namespace,
    info: dict[str, Any],
    bench: BenchModel,
    *,
    model_source: bool = True,
) -> dict[str, Any]:
    """The first keys of every result file: benchmark, command, machine and model
    (label, source unless ``model_source=False``, note, fingerprint)."""
    head: dict[str, Any] = {
        "benchmark": args.benchmark,
        "command": args.command_line,
        "machine": info,
        "model": bench.label,
    }
    if model_source:
        head["model_source"] = bench.source
    head["model_note"] = bench.note
    head["model_fingerprint"] = model_fingerprint(bench.source)
    return head


def save_results(
    data: dict[str, Any],
    args: argparse.Namespace,
    plot: Callable[..., Any] | None = None,
    lead: str = "",
) -> tuple[str, str]:
    """Write ``<benchmark>[-<tag>]-<machine>.json`` to ``args.results_dir`` and say so
    (after ``lead``), then its PNG when ``plot`` is given; returns (name, machine slug)."""
    slug = machine_slug(data["machine"])
    name = str(data["benchmark"]) + (f"-{args.tag}" if args.tag else "")
    print(f"{lead}wrote {write_json(name, slug, data, args.results_dir)}")
    if plot is not None:
        figures.maybe_plot(plot, data, name, slug, args.results_dir)
    return name, slug


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """A plain aligned text table (None prints as '-')."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()
