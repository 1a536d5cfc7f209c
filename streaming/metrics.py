"""Prometheus metrics for one server, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric the server exports; safe to update from the inference thread."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, worker: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Under --workers each process answers /metrics for itself; this says which one,
        # so a scraper can collect every worker's page and add them up.
        Gauge("streaming_worker", "Index of the server process (--workers)", registry=r).set(worker)
        self.sessions_active = Gauge(
            "streaming_sessions_active", "Open streaming sessions", ["endpoint"], registry=r
        )
        self.sessions = Counter("streaming_sessions", "Sessions accepted", ["endpoint"], registry=r)
        self.rejected = Counter(
            "streaming_sessions_rejected", "Connections refused", ["reason"], registry=r
        )
        self.audio_seconds = Counter(
            "streaming_audio_seconds", "Seconds of audio received", registry=r
        )
        self.partials = Counter("streaming_partials", "Partial results sent", registry=r)
        self.finals = Counter("streaming_finals", "Final results sent", registry=r)
        self.errors = Counter(
            "streaming_errors", "Error messages sent to clients", ["code"], registry=r
        )
        self.resumes = Counter(
            "streaming_resumes",
            "Native streams resumed here, refused a resume, or told to move (drain)",
            ["outcome"],
            registry=r,
        )
        self.lag_events = Counter(
            "streaming_lag_events",
            "Sessions that fell behind real time / caught up again",
            ["state"],
            registry=r,
        )
        self.engine_load = Gauge(
            "streaming_engine_load", "Fraction of the last 5 s the model was busy", registry=r
        )
        # Under --shared-engine a worker counts its windows' share of each model call
        # (1/batch), so the sum over workers is the inference process's total.
        self.batches = Counter("streaming_engine_batches", "Model calls", registry=r)
        self.windows = Counter("streaming_engine_windows", "Windows through the model", registry=r)
        self.busy_seconds = Counter(
            "streaming_engine_busy_seconds", "Seconds the model ran", registry=r
        )
        self.batch_size = Histogram(
            "streaming_engine_batch_size",
            "Windows per model call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "streaming_engine_batch_seconds",
            "Model call duration",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.window_seconds = Histogram(
            "streaming_window_latency_seconds",
            "Window queued → result ready (queue wait + model)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "streaming_engine_queue_depth", "Windows waiting for the model", registry=r
        )
        self.failed_windows = Counter(
            "streaming_engine_failed_windows", "Windows whose batch raised", registry=r
        )

    def observe_batch(self, size: int, seconds: float, waits: list[float]) -> None:
        """Called by the engine's worker thread after every model call."""
        self.batches.inc()
        self.windows.inc(size)
        self.busy_seconds.inc(seconds)
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for wait in waits:
            self.window_seconds.observe(wait)

    def observe_shared(self, size: int, seconds: float, wait: float) -> None:
        """A window served by the shared inference process in a call of ``size`` windows.

        The batch histograms then count windows, each with the size and duration of the
        call that served it; the counters add this window's share of the call.
        """
        self.batches.inc(1 / size)
        self.windows.inc()
        self.busy_seconds.inc(seconds / size)
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.window_seconds.observe(wait)

    def render(self) -> bytes:
        return generate_latest(self.registry)
