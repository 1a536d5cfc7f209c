"""Engine tiers, same run: in-process vs the shared engine vs Triton (issue 34, point 3).

N simulated streams in steady state, each sending one window of real speech (the bundled
demo recording, at the steady window length) every chunk period, the next only after the
previous one's answer, as a session does. The same streams go through each tier's Engine:

* ``local``: :class:`~streaming.engine.InferenceEngine` in this process (``streaming-server``);
* ``shared``: :class:`~streaming.shared_engine.SharedEngineClient` to the shared inference
  process (``--shared-engine``), started here as a child process;
* ``triton``: :class:`~streaming.triton_engine.TritonEngine` to ``python -m
  streaming.triton_server``, started here on loopback.

Per tier and N: per-window latency (submit → log-probabilities) p50/p95/p99, the share of
windows answered later than one chunk period (the stream falls behind real time), CPU per
stream (% of one core: this process and the model's processes, over the level) and the mean
batch. Headline per tier: the largest N whose p95 window latency stays within the chunk
period ("held": every stream keeps up). The sessions' own work (VAD, stable text) is the same
for every tier and is left out; for commit latency through the websocket path, run
``benchmarks.live_load --server-args "--engine triton://HOST:PORT"`` per tier.

    python -m benchmarks.engine_tiers                          # tiny-en, CPU fp32, N = 1…24
    python -m benchmarks.engine_tiers --tiers local,triton --streams 4,8 --seconds 10

Writes ``benchmarks/results/engine_tiers-<machine>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks import cli, machine, models, reporting
from benchmarks.server_process import process_cpu_seconds
from streaming.config import MODEL_SAMPLE_RATE, EngineConfig, ModelConfig, ServerConfig
from streaming.engine import Engine, InferenceEngine
from streaming.model import load_model
from streaming.windowing import WindowPlanner

TIERS = ("local", "shared", "triton")
DEFAULT_STREAMS = (1, 2, 4, 8, 12, 16, 24)
READY_TIMEOUT_S = 300.0


def speech_windows(source: str) -> tuple[list[np.ndarray], float]:
    """Steady-length windows of the demo recording, and the chunk period in seconds."""
    from transformers import AutoConfig

    from streaming.config import WindowConfig
    from streaming.geometry import FrameGeometry

    path = Path(str(resources.files("streaming") / "assets" / "demo.wav"))
    audio, rate = sf.read(path, dtype="float32")
    assert rate == MODEL_SAMPLE_RATE
    window = WindowConfig()
    config = AutoConfig.from_pretrained(source)
    geometry = FrameGeometry(tuple(config.conv_kernel), tuple(config.conv_stride))
    planner = WindowPlanner(window, geometry, MODEL_SAMPLE_RATE)
    length, step = planner.steady_length, planner.chunk
    windows = [audio[i : i + length].copy() for i in range(0, audio.size - length, step)]
    return windows, window.chunk_ms / 1000


async def run_level(
    engine: Engine, windows: list[np.ndarray], streams: int, seconds: float, period: float
) -> dict[str, Any]:
    """``streams`` streams for ``seconds``; latency, lateness and CPU of the level."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    late = 0
    rng = random.Random(streams)
    began = loop.time()
    end = began + seconds

    async def stream(index: int) -> None:
        nonlocal late
        due = began + rng.random() * period
        sent = index * 7
        while due < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            t0 = loop.time()
            await asyncio.wrap_future(engine.submit(windows[sent % len(windows)]))
            latencies.append(loop.time() - t0)
            sent += 1
            due += period
            if loop.time() > due:
                late += 1
                due = loop.time()

    requests, batches = engine.stats.requests, engine.stats.batches
    cpu0, wall0 = process_cpu_seconds(os.getpid()), time.perf_counter()
    await asyncio.gather(*(stream(i) for i in range(streams)))
    cpu1, wall = process_cpu_seconds(os.getpid()), time.perf_counter() - wall0
    ms = [1000 * v for v in latencies]
    summary = reporting.summarize(ms)
    served = engine.stats.requests - requests
    return {
        "streams": streams,
        "windows": len(ms),
        "window_ms": summary,
        "late_share": round(late / max(len(ms), 1), 3),
        "held": summary["p95"] is not None and summary["p95"] <= 1000 * period,
        "cpu_per_stream_pct": (
            round(100 * (cpu1 - cpu0) / wall / streams, 1) if cpu0 and cpu1 else None
        ),
        "mean_batch": round(served / max(engine.stats.batches - batches, 1e-9), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _host_main(config: ServerConfig, address: str) -> None:
    """The shared inference process (a child): serve until terminated."""
    from streaming.engines import host_engine

    async def serve() -> None:
        await host_engine(config, address)
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def tier(name: str, args: argparse.Namespace, source: str) -> AsyncIterator[Engine]:
    """A started engine of tier ``name`` (and its model process), stopped afterwards."""
    model = ModelConfig(name=source, device=args.device, dtype=args.dtype)
    if name == "local":
        loaded = await asyncio.to_thread(load_model, model, threads=args.threads)
        local = InferenceEngine(loaded, EngineConfig())
        await local.start()
        try:
            yield local
        finally:
            await local.stop()
        return
    if name == "shared":
        from streaming.shared_engine import SharedEngineClient

        folder = tempfile.mkdtemp(prefix="engine-tiers-")
        address = str(Path(folder) / "engine.sock")
        config = ServerConfig(model=model, engine=EngineConfig(threads=args.threads))
        process = multiprocessing.get_context("spawn").Process(
            target=_host_main, args=(config, address), daemon=True
        )
        process.start()
        client = SharedEngineClient(address, EngineConfig(), connect_timeout_s=READY_TIMEOUT_S)
        try:
            await client.start()
            yield client
        finally:
            await client.stop()
            process.terminate()
            process.join(10)
        return
    from streaming.triton_engine import TritonEngine

    grpc, http, metrics = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "streaming.triton_server", "--model", source,
        "--device", args.device, "--dtype", args.dtype, "--host", "127.0.0.1",
        "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    log = open(Path(tempfile.gettempdir()) / "engine-tiers-triton.log", "wb")  # noqa: SIM115
    # A child of this process (with Triton and its stubs below it): its CPU is counted.
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        await asyncio.to_thread(_await_ready, server, http)
        engine = TritonEngine(f"127.0.0.1:{grpc}", EngineConfig())
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _await_ready(server: subprocess.Popen[bytes], http: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            url = f"http://127.0.0.1:{http}/v2/models/wav2vec2/ready"
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("Triton did not become ready (see engine-tiers-triton.log in the temp dir)")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info(args.device)
    machine.header("engine tiers", info)
    bench = models.resolve_model(args.model)
    windows, period = speech_windows(bench.source)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.tiers:
        async with tier(name, args, bench.source) as engine:
            await asyncio.wrap_future(engine.submit(windows[0]))  # warm
            rows = results.setdefault(name, [])
            for n in args.streams:
                row = await run_level(engine, windows, n, args.seconds, period)
                rows.append(row)
                p = row["window_ms"]
                print(
                    f"{name:7s} N={n:4d}  window p50 {p['p50']} p95 {p['p95']} p99 {p['p99']} ms"
                    f"  late {row['late_share']:.0%}  CPU/stream {row['cpu_per_stream_pct']} %"
                    f"  batch {row['mean_batch']}"
                )
                if not row["held"] and args.stop_when_broken:
                    break
    held = {
        name: max((r["streams"] for r in rows if r["held"]), default=0)
        for name, rows in results.items()
    }
    return {
        **reporting.result_header(args, info, bench),
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "chunk_period_s": period,
        "seconds_per_level": args.seconds,
        "streams_held": held,
        "tiers": results,
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="see engine_throughput --help")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=None, help="model threads, every tier")
    p.add_argument(
        "--tiers", type=lambda s: s.split(","), default=list(TIERS), help="local,shared,triton"
    )
    p.add_argument(
        "--streams",
        type=lambda s: [int(n) for n in s.split(",")],
        default=list(DEFAULT_STREAMS),
        help="stream counts, in order (default: 1,2,4,8,12,16,24)",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="per level")
    p.add_argument(
        "--keep-going", dest="stop_when_broken", action="store_false", help="past a broken level"
    )
    cli.add_result_options(p)
    args = cli.parse_benchmark_args(p, "engine_tiers", argv)
    if unknown := set(args.tiers) - set(TIERS):
        p.error(f"unknown tiers: {', '.join(sorted(unknown))}")
    data = asyncio.run(run(args))
    print("streams held (p95 window latency within the chunk period):", data["streams_held"])
    reporting.save_results(data, args)


if __name__ == "__main__":
    main()
