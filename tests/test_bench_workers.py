"""benchmarks.server_process and .prometheus against a ``--workers 2`` server: /metrics
summed over the workers, CPU and RSS counted over the worker processes (the tiny random
model, a real server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from wsclient import of_type, stream_pcm

from benchmarks import prometheus, server_process, testset

REPO = Path(__file__).resolve().parent.parent
SESSIONS = 6


def test_workers_are_read_from_the_server_command() -> None:
    def workers(*args: str) -> int:
        return server_process.ServerProcess("tiny", args).workers

    assert workers() == 1
    assert workers("--max-batch", "8", "--threads", "2") == 1
    assert workers("--workers", "3") == 3
    assert workers("--max-batch", "64", "--workers=8", "--threads", "2") == 8
    assert workers("--workers") == 1  # no value (the server itself would refuse it)


@pytest.fixture(scope="module")
def pool(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[server_process.ServerProcess]:
    log = tmp_path_factory.mktemp("bench-workers") / "server.log"
    args = ["--workers", "2", "--threads", "1", "--max-sessions", "16"]
    with server_process.ServerProcess(
        str(tiny_model_dir), args, log_path=log, interval=0.2
    ) as server:
        yield server


def worker_pages(
    server: server_process.ServerProcess, tries: int = 300
) -> dict[int, dict[str, float]]:
    """Each worker's own /metrics page (a new connection per request, until both answered)."""
    pages: dict[int, dict[str, float]] = {}
    for _ in range(tries):
        page = prometheus.parse_prometheus(server.get("/metrics"))
        pages[int(page["streaming_worker"])] = page
        if len(pages) == 2:
            break
    assert sorted(pages) == [0, 1], f"only worker(s) {sorted(pages)} answered"
    return pages


def sessions_total(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("streaming_sessions_total"))


async def test_metrics_are_the_sum_over_both_workers(pool: server_process.ServerProcess) -> None:
    assert pool.workers == 2
    before = await asyncio.to_thread(pool.metrics)
    assert "streaming_worker" not in before  # a worker's index is no quantity
    # a per-process constant: each worker's registry creation time, counted twice
    pages = await asyncio.to_thread(worker_pages, pool)
    created = "streaming_engine_batches_created"
    assert before[created] == pytest.approx(pages[0][created] + pages[1][created])
    assert before[created] > 1.9 * max(pages[0][created], pages[1][created])

    # two seconds of speech from the committed demo recording, so windows reach the model
    audio, rate = sf.read(str(REPO / "training" / "samples" / "demo.wav"), dtype="int16")
    assert rate == testset.SAMPLE_RATE
    pcm = np.asarray(audio[: 2 * rate]).astype("<i2").tobytes()
    results = await asyncio.gather(*(stream_pcm(pool.url, pcm) for _ in range(SESSIONS)))
    for messages, code in results:
        assert code == 1000 and len(of_type(messages, "ready")) == 1

    after = await asyncio.to_thread(pool.metrics)
    assert sessions_total(after) - sessions_total(before) == SESSIONS
    audio = prometheus.metric_delta(before, after, "streaming_audio_seconds_total")
    assert audio == pytest.approx(SESSIONS * 2.0, abs=0.01)
    assert prometheus.metric_delta(before, after, "streaming_engine_batches_total") > 0
    # nothing streams now: the sum is exactly what the two pages say
    pages = await asyncio.to_thread(worker_pages, pool)
    for name in ("streaming_audio_seconds_total", "streaming_engine_batches_total"):
        assert after[name] == pytest.approx(pages[0][name] + pages[1][name]), name
    assert sessions_total(after) == sessions_total(pages[0]) + sessions_total(pages[1])


def test_cpu_and_rss_count_the_worker_processes(pool: server_process.ServerProcess) -> None:
    psutil = pytest.importorskip("psutil")
    parent = psutil.Process(pool.pid)
    children = parent.children(recursive=True)
    assert len(children) >= 2
    own_cpu = sum(parent.cpu_times()[:2])
    children_cpu = sum(sum(c.cpu_times()[:2]) for c in children)
    own_rss = parent.memory_info().rss / 2**20
    children_rss = sum(c.memory_info().rss for c in children) / 2**20

    cpu = server_process.process_cpu_seconds(pool.pid)
    rss = server_process.process_rss_mb(pool.pid)
    assert cpu is not None and rss is not None
    # CPU time only grows: at least what parent and workers had used a moment before,
    # and each worker loaded a model, which the supervisor alone never does
    assert cpu >= own_cpu + children_cpu - 0.02
    assert cpu > own_cpu + 0.5
    # an idle server's memory hardly moves between two readings
    assert rss == pytest.approx(own_rss + children_rss, rel=0.1)
    assert rss > 2 * own_rss
    # and the sampler of the benchmark reports the same totals
    deadline = time.monotonic() + 10
    while not pool.samples and time.monotonic() < deadline:
        time.sleep(0.05)
    sample = pool.samples[-1]
    assert sample.rss_mb == pytest.approx(rss, rel=0.1)
