"""The server's Prometheus page read as numbers, and what changed between two scrapes
(engine batches, windows, busy seconds): the server's own account of a run.
"""

from __future__ import annotations

import contextlib
from typing import Any


def parse_prometheus(text: str) -> dict[str, float]:
    """``name{labels}`` → value, for every sample line of a Prometheus text page."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def metric_delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def engine_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches, windows, mean batch size and model-busy seconds between two scrapes."""
    batches = metric_delta(before, after, "streaming_engine_batches_total")
    # The counters are exact under --shared-engine too (the histograms then count windows);
    # the histogram sums serve servers older than the counters.
    if "streaming_engine_windows_total" in after:
        windows = metric_delta(before, after, "streaming_engine_windows_total")
        busy = metric_delta(before, after, "streaming_engine_busy_seconds_total")
    else:
        windows = metric_delta(before, after, "streaming_engine_batch_size_sum")
        busy = metric_delta(before, after, "streaming_engine_batch_seconds_sum")
    waits = metric_delta(before, after, "streaming_window_latency_seconds_sum")
    return {
        "batches": round(batches),
        "windows": int(windows),
        "mean_batch": round(windows / batches, 2) if batches else None,
        "model_busy_s": round(busy, 2),
        "mean_window_latency_ms": round(1000 * waits / windows, 1) if windows else None,
    }
