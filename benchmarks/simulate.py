"""One stream through the pure :class:`streaming.session.Session` in simulated real time:
no network, no server, each window's measured model time pushed onto the clock. It gives
the algorithmic latency of a setting apart from the machine's load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.testset import SAMPLE_RATE


@dataclass
class SimulatedRun:
    """One stream through a Session in simulated real time.

    ``clock`` = audio fed so far, pushed later by the measured model time of every window
    (one stream alone on the machine, windows run as soon as they are due).
    """

    finals: list[dict[str, Any]]
    messages: list[tuple[float, dict[str, Any]]]  # (simulated arrival s, message)
    tracker: Any  # client.latency.LatencyTracker
    model_seconds: float
    windows: int
    audio_s: float
    searches: int = 0  # early-commit beam searches
    search_s: float = 0.0  # their decoding time
    final_decode_s: float = 0.0  # the finals' beam searches

    @property
    def transcript(self) -> str:
        return " ".join(t for f in self.finals if (t := str(f.get("text", ""))))


def simulate_session(
    model: Any,
    audio: np.ndarray,
    window: Any,
    vad: Any | None = None,
    *,
    chunk_ms: int = 100,
    compute: str = "measured",
    tolerance_ms: float = 100.0,
    rescore: Callable[..., list[tuple[str, int, int]]] | None = None,
    early_commits: bool = True,
    commit_rule: Any = None,
) -> SimulatedRun:
    """Feed ``audio`` (float32, 16 kHz) to a Session in ``chunk_ms`` pieces, run each due
    window at once with ``model.infer`` and time-stamp every event in simulated time.
    Windows reuse their stream's front-end features where the server's engine would
    (``--reuse-features auto``: a frame-wise feature extractor on the CPU).

    ``compute="measured"`` adds each window's measured model time to the clock;
    ``"zero"`` gives the algorithmic latency alone. ``rescore`` (an LM decoder's
    ``decode_words``) decodes the finals, and with ``early_commits`` the early-commit
    searches (by ``commit_rule``, a ``streaming.beam_commit.CommitRule``; None: the
    server's), as the server's ``--lm`` does; each search runs at once, and with
    ``"measured"`` its time goes on the clock too.
    """
    from client.latency import LatencyTracker, SendLog
    from streaming.beam_commit import CommitSearch
    from streaming.codecs.native_format import event_message
    from streaming.config import EngineConfig, VadConfig
    from streaming.engine import reuses_features
    from streaming.feature_cache import FeatureCache
    from streaming.session import PendingFinal, Session

    framewise = bool(getattr(model, "framewise_features", False))
    cache = FeatureCache() if reuses_features(EngineConfig(), model.device, framewise) else None

    session = Session(
        model.vocab,
        model.geometry,
        vad or VadConfig(),
        window,
        rescore_finals=rescore is not None,
        early_commits=early_commits,
        commit_rule=commit_rule,
    )
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    step = SAMPLE_RATE * chunk_ms // 1000
    send_log = SendLog()
    tracker = LatencyTracker(send_log, tolerance_ms)
    messages: list[tuple[float, dict[str, Any]]] = []
    finals: list[dict[str, Any]] = []
    clock = 0.0
    model_s = 0.0
    windows = 0
    searches = 0
    search_s = final_s = 0.0

    def emit(events: Sequence[Any], delay: float = 0.0) -> None:
        nonlocal searches, search_s, final_s
        for event in events:
            if isinstance(event, CommitSearch):  # the server runs it beside the windows
                assert rescore is not None
                began = time.perf_counter()
                words = rescore(event.scores, context=event.context)
                spent = time.perf_counter() - began
                searches += 1
                search_s += spent
                emit(session.beam_committed(event, words), delay + (compute == "measured") * spent)
                continue
            if isinstance(event, PendingFinal):
                assert rescore is not None
                began = time.perf_counter()
                event = event.resolve(rescore(event.scores, context=event.context))
                final_s += time.perf_counter() - began
            msg = event_message(event)
            messages.append((clock + delay, msg))
            tracker.on_message(msg, clock + delay)
            if msg["type"] == "final":
                finals.append(msg)

    def drain() -> None:
        nonlocal clock, model_s, windows
        while (request := session.next_request()) is not None:
            began = time.perf_counter()
            if cache is not None:
                logprobs = model.infer_reusing([request.samples], [request.key], cache)[0]
            else:
                logprobs = model.infer(request.samples[None, :])[0]
            spent = time.perf_counter() - began
            model_s += spent
            windows += 1
            if compute == "measured":
                clock += spent
            emit(session.complete(request, logprobs))

    for pos in range(0, len(pcm), step):
        piece = pcm[pos : pos + step]
        end = pos + len(piece)
        clock = max(clock, end / SAMPLE_RATE)
        send_log.record(end / SAMPLE_RATE, end * 1000.0 / SAMPLE_RATE)
        emit(session.feed(piece.tobytes()))
        drain()
    emit(session.end())
    drain()
    return SimulatedRun(
        finals,
        messages,
        tracker,
        model_s,
        windows,
        len(pcm) / SAMPLE_RATE,
        searches,
        search_s,
        final_s,
    )
