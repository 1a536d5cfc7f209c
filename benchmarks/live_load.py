"""Live load: N concurrent real-time streams against one server, N swept until latency breaks.

The server runs in its own process (``python -m streaming --port 0``; the ready line gives
the URL), so the load generator does not share its GIL. Each simulated client streams a
multi-utterance file of held-out test sentences at real-time pace (100 ms chunks) with the
project's own client (``client.api.stream_file``), which measures per-word partial and
commit latency and per-utterance final latency against its own send times.

Per N: p50/p90/p95/p99 partial, commit and final latency, the engine's real-time factor
(model busy seconds per second of audio), batch stats from ``/metrics``, server CPU (100 % =
one core) and RSS from psutil. Headline: the largest N with p95 commit latency ≤ 1 s.

One Python process cannot send and receive for hundreds of real-time streams on time, so
``--client-procs K`` spreads a level's streams over K spawned processes (in consecutive
blocks; start offsets and files are drawn exactly as with one process). Each
process runs its streams in its own event loop and returns plain per-stream results (each
stream's latencies are measured against its own send clock, in its own process); the parent
samples ``/health`` and aggregates. Every level records the load generator's CPU per
process; above 85 % of one core its latency figures are suspect, and a warning says so.

    python -m benchmarks.live_load                                # tiny-en, N = 1…32
    python -m benchmarks.live_load --streams 1,4,8 --model tiny-en-random
    python -m benchmarks.live_load --model base-random --device cuda --streams 8,32,64,128
    python -m benchmarks.live_load --device cuda --streams 250,500,1000 --client-procs auto \
        --ramp-s 10

Writes ``benchmarks/results/live_load-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import shlex
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from typing import Any, NamedTuple

from benchmarks import (
    cli,
    figures,
    machine,
    models,
    paths,
    prometheus,
    reporting,
    server_process,
    testset,
)
from evaluation import scoring

DEFAULT_STREAMS = (1, 2, 4, 8, 12, 16, 24, 32)
#: ``--client-procs auto``: about this many streams per client process …
STREAMS_PER_CLIENT_PROC = 200
#: … and a client process above this CPU (100 = one core) over a level makes that level's
#: latency figures suspect (the load generator itself was late).
CLIENT_CPU_WARN_PERCENT = 85.0
#: How long spawned client processes may take to import and say they are ready.
CLIENT_READY_TIMEOUT_S = 300.0


class PlannedStream(NamedTuple):
    """Stream ``number`` of a level: its file and its start offset within the ramp."""

    number: int
    path: str
    delay_s: float
    resume: bool = True  # the client asks for resume (acks and tokens), as by default


def plan_level(
    files: Sequence[testset.ComposedFile],
    n: int,
    seed: int,
    ramp_s: float = 1.0,
    resume: bool = True,
) -> list[PlannedStream]:
    """The ``n`` streams of a level: stream i streams file i mod len(files) and starts at a
    seeded random offset in [0, ramp_s) (the same draws whatever the process count)."""
    rng = random.Random(seed)
    return [
        PlannedStream(i, str(files[i % len(files)].path), rng.uniform(0.0, ramp_s), resume)
        for i in range(n)
    ]


def split_plan(plan: Sequence[PlannedStream], procs: int) -> list[list[PlannedStream]]:
    """Consecutive blocks of streams, one per process, sizes differing by at most one: as
    files cycle with the stream number, each block holds every file about equally often
    (and random start times). Every stream appears exactly once; no process is left empty."""
    procs = max(1, min(procs, len(plan)))
    base, extra = divmod(len(plan), procs)
    parts: list[list[PlannedStream]] = []
    at = 0
    for k in range(procs):
        size = base + (1 if k < extra else 0)
        parts.append(list(plan[at : at + size]))
        at += size
    return parts


def client_procs_for(n: int, setting: int, cpu_count: int | None = None) -> int:
    """Client processes for a level of ``n`` streams. ``setting`` 0 = auto: one per
    ~``STREAMS_PER_CLIENT_PROC`` streams, at most half the cores; otherwise ``setting``.
    Never more than ``n`` (at least 1)."""
    if setting <= 0:
        cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
        setting = min(math.ceil(n / STREAMS_PER_CLIENT_PROC), max(1, cores // 2))
    return max(1, min(setting, n))


def _client_procs_arg(text: str) -> int:
    if text.strip().lower() == "auto":
        return 0
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("--client-procs must be >= 0 or 'auto'")
    return value


async def _one_stream(url: str, stream: PlannedStream) -> Any:
    from client.api import stream_file

    await asyncio.sleep(stream.delay_s)
    return await stream_file(
        stream.path,
        url,
        speed=1.0,
        chunk_ms=100.0,
        retries=5,
        finish_timeout=60.0,
        resume=stream.resume,
    )


def stream_record(index: int, res: Any) -> dict[str, Any]:
    """What the aggregation needs from one stream's ``StreamResult`` (or the exception it
    raised), as plain picklable data. The latencies were computed by the stream's own
    tracker against its own send log, so they never mix clocks."""
    if isinstance(res, BaseException):
        return {"index": index, "exception": f"{type(res).__name__}: {res}"}
    tracker = res.tracker
    words = tracker.words
    return {
        "index": index,
        "exception": None,
        "source": str(res.source),
        "failure": res.failure,
        "partial_ms": [float(v) for v in tracker.partial_latencies()],
        "commit_ms": [float(v) for v in tracker.commit_latencies()],
        "final_ms": [float(v) for v in tracker.final_latencies()],
        "words_shown": len(words),
        "words_retracted": sum(1 for w in words if w.retracted),
        "errors": len(res.errors),
        "finals": len(res.finals),
        "audio_s": float(res.audio_s),
        "tail_s": None if res.tail_s is None else float(res.tail_s),
        "transcript": res.transcript,
    }


async def _run_streams(url: str, plan: Sequence[PlannedStream]) -> list[Any]:
    tasks = [_one_stream(url, s) for s in plan]
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def _client_worker(url: str, plan: list[PlannedStream], conn: Connection, start: Any) -> None:
    """A spawned client process: say ready, wait for the common start, run its streams in
    its own event loop, send back plain records and its own CPU time over the run."""
    try:
        import psutil

        me = psutil.Process()
        conn.send(("ready", os.getpid()))
        if not start.wait(CLIENT_READY_TIMEOUT_S + 60.0):
            conn.send(("error", "never told to start"))
            return
        cpu0 = me.cpu_times()
        began = time.monotonic()
        results = asyncio.run(_run_streams(url, plan))
        wall = time.monotonic() - began
        cpu1 = me.cpu_times()
        cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        records = [stream_record(s.number, r) for s, r in zip(plan, results)]
        conn.send(("done", {"records": records, "cpu_s": cpu_s, "wall_s": wall}))
    except BaseException as exc:  # report anything, even KeyboardInterrupt, then go
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def _sample_load(server: server_process.ServerProcess, loads: list[float]) -> None:
    try:
        health = server.health()
    except (OSError, ValueError):
        return
    loads.append(float(health.get("engine_load", 0.0)))


def _level_in_procs(
    server: server_process.ServerProcess,
    plan: Sequence[PlannedStream],
    procs: int,
    begin: Callable[[], None],
) -> tuple[list[dict[str, Any]], list[float], list[dict[str, Any]], float]:
    """Run ``plan`` over ``procs`` spawned client processes; sample ``/health`` every second
    meanwhile. ``begin()`` is called once all processes are ready, just before they start.
    Returns (records in stream order, engine loads, per-process CPU/wall, wall seconds)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    parts = split_plan(plan, procs)
    workers: list[tuple[Any, Connection, list[PlannedStream]]] = []
    finished = False
    try:
        for k, part in enumerate(parts):
            receiver, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_client_worker,
                args=(server.url, part, sender, start),
                name=f"live-load-client-{k}",
                daemon=True,
            )
            proc.start()
            sender.close()  # the child holds the only sending end: its exit reads as EOF
            workers.append((proc, receiver, part))
        deadline = time.monotonic() + CLIENT_READY_TIMEOUT_S
        for proc, receiver, _ in workers:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"client process {proc.name} was not ready in time")
            try:
                kind, detail = receiver.recv()
            except EOFError:
                raise RuntimeError(
                    f"client process {proc.name} exited at start (code {proc.exitcode})"
                ) from None
            if kind != "ready":
                raise RuntimeError(f"client process {proc.name} failed at start: {detail}")
        begin()
        began = time.monotonic()
        start.set()
        loads: list[float] = []
        outcome: dict[int, tuple[str, Any]] = {}
        pending = {receiver: k for k, (_, receiver, _) in enumerate(workers)}
        next_sample = began + 1.0
        while pending:
            timeout = max(0.0, next_sample - time.monotonic())
            for ready in wait_for_connections(list(pending), timeout):
                assert isinstance(ready, Connection)
                k = pending.pop(ready)
                try:
                    outcome[k] = ready.recv()
                except EOFError:
                    code = workers[k][0].exitcode
                    outcome[k] = ("error", f"client process exited (code {code})")
            if time.monotonic() >= next_sample:
                _sample_load(server, loads)
                next_sample += 1.0
        wall = time.monotonic() - began
        finished = True
    finally:
        start.set()
        for proc, receiver, _ in workers:
            proc.join(10.0 if finished else 0.0)  # interrupted or failed: stop them now
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
            receiver.close()
    records: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    for k, (_, _, part) in enumerate(workers):
        kind, detail = outcome[k]
        if kind == "done":
            records += detail["records"]
            usage.append({"cpu_s": detail["cpu_s"], "wall_s": detail["wall_s"]})
        else:
            first = str(detail).splitlines()[0] if str(detail) else "unknown"
            print(f"# client process {k} failed: {detail}", flush=True)
            records += [
                {"index": s.number, "exception": f"ClientProcessError: {first}"} for s in part
            ]
            usage.append({"cpu_s": None, "wall_s": None})
    records.sort(key=lambda r: int(r["index"]))
    return records, loads, usage, wall


async def _level(
    server: server_process.ServerProcess,
    files: list[testset.ComposedFile],
    n: int,
    seed: int,
    ramp_s: float = 1.0,
    resume: bool = True,
) -> tuple[list[Any], list[float]]:
    """Run ``n`` streams starting within ``ramp_s``; sample the engine load (``/health``)
    every second meanwhile."""
    plan = plan_level(files, n, seed, ramp_s, resume)
    loads: list[float] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            health = await asyncio.to_thread(server.health)
            loads.append(float(health.get("engine_load", 0.0)))

    sampler = asyncio.create_task(sample())
    try:
        return await _run_streams(server.url, plan), loads
    finally:
        sampler.cancel()


def run_level(
    server: server_process.ServerProcess,
    files: list[testset.ComposedFile],
    n: int,
    seed: int,
    ramp_s: float = 1.0,
    client_procs: int = 1,
    resume: bool = True,
) -> dict[str, Any]:
    """One level: ``n`` streams, in this process (``client_procs`` 1, as always) or spread
    over ``client_procs`` spawned processes (0 = auto, see :func:`client_procs_for`)."""
    import psutil

    procs = client_procs_for(n, client_procs)
    me = psutil.Process()
    marks: dict[str, Any] = {}

    def begin() -> None:  # the level starts: reset the CPU counters, note metrics and clock
        me.cpu_percent(None)
        psutil.cpu_percent(None)
        marks["before"] = server.metrics()
        marks["t0"] = server.clock

    usage: list[dict[str, Any]] = []
    if procs == 1:
        begin()
        began = time.monotonic()
        results, loads = asyncio.run(_level(server, files, n, seed, ramp_s, resume))
        wall = time.monotonic() - began
        records = [stream_record(i, res) for i, res in enumerate(results)]
    else:
        plan = plan_level(files, n, seed, ramp_s, resume)
        records, loads, usage, wall = _level_in_procs(server, plan, procs, begin)
    before, t0 = marks["before"], marks["t0"]
    t1 = server.clock
    after = server.metrics()
    own_cpu = me.cpu_percent(None)
    system_cpu = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
    if procs == 1:
        client_cpu = own_cpu
        per_proc: list[float | None] = [round(own_cpu, 1)]
    else:
        # the workers' CPU over the level (100 = one core), plus this process's sampling
        used = [u["cpu_s"] for u in usage if u["cpu_s"] is not None]
        client_cpu = own_cpu + 100.0 * sum(used) / max(wall, 1e-6)
        per_proc = [
            None
            if u["cpu_s"] is None
            else round(100.0 * u["cpu_s"] / max(u["wall_s"] or 0.0, 1e-6), 1)
            for u in usage
        ]
    busy = [p for p in per_proc if p is not None and p > CLIENT_CPU_WARN_PERCENT]
    if busy:
        print(
            f"# warning: N={n}: a client process averaged {max(busy)} % of one core "
            f"(per process: {per_proc}); the load generator was near saturation and this "
            "level's latencies are suspect (use more --client-procs)",
            flush=True,
        )
    partial: list[float] = []
    commit: list[float] = []
    final: list[float] = []
    words_shown = 0
    words_retracted = 0
    failures: list[str] = []
    errors = 0
    finals = 0
    audio_s = 0.0
    tails: list[float] = []
    counts = scoring.ErrorCounts()
    by_path = {str(f.path): f for f in files}
    for rec in records:
        if rec["exception"] is not None:
            failures.append(rec["exception"])
            continue
        if rec["failure"]:
            failures.append(rec["failure"])
        partial += rec["partial_ms"]
        commit += rec["commit_ms"]
        final += rec["final_ms"]
        words_shown += rec["words_shown"]
        words_retracted += rec["words_retracted"]
        errors += rec["errors"]
        finals += rec["finals"]
        audio_s += rec["audio_s"]
        if rec["tail_s"] is not None:
            tails.append(rec["tail_s"])
        counts.add(by_path[rec["source"]].reference, rec["transcript"])
    window = server.window(t0, t1)
    cpu = [s.cpu_percent for s in window]
    rss = [s.rss_mb for s in window] or [s.rss_mb for s in server.samples[-1:]]
    engine = prometheus.engine_delta(before, after)
    return {
        "streams": n,
        "wall_s": round(wall, 2),
        "audio_s": round(audio_s, 1),
        "partial_ms": reporting.summarize(partial),
        "commit_ms": reporting.summarize(commit),
        "final_ms": reporting.summarize(final),
        "tail_s": reporting.summarize(tails, 3),
        "engine": engine,
        "rtf": round(engine["model_busy_s"] / audio_s, 3) if audio_s else None,
        # /health engine_load: fraction of the last 5 s the model ran (admission limit 0.85)
        "engine_load": {
            "mean": round(sum(loads) / len(loads), 3) if loads else None,
            "max": round(max(loads), 3) if loads else None,
        },
        "refused_overloaded": int(
            prometheus.metric_delta(
                before, after, 'streaming_sessions_rejected_total{reason="overloaded"}'
            )
        ),
        "lag_behind": int(
            prometheus.metric_delta(before, after, 'streaming_lag_events_total{state="behind"}')
        ),
        "server_cpu_percent": {
            "mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "max": max(cpu) if cpu else None,
        },
        "server_rss_mb": {"max": round(max(rss), 1) if rss else None},
        # the load generator: all its processes together, and each client process alone
        "client_cpu_percent": round(client_cpu, 1),
        "client_procs": procs,
        "client_proc_cpu_percent": per_proc,
        "client_saturated": bool(busy),
        "system_cpu_percent": round(system_cpu, 1),
        "finals": finals,
        "utterances_sent": sum(len(by_path[str(f.path)].segments) for f in _picked(files, n)),
        "words_shown": words_shown,
        "words_retracted": words_retracted,
        "errors": errors,
        "failures": failures[:10],
        "failed_streams": len(failures),
        **{f"transcript_{k}": v for k, v in counts.to_json().items()},
    }


def _picked(files: list[testset.ComposedFile], n: int) -> list[testset.ComposedFile]:
    return [files[i % len(files)] for i in range(n)]


def _row(level: dict[str, Any]) -> dict[str, Any]:
    return {
        "N": level["streams"],
        "partial p50": level["partial_ms"]["p50"],
        "partial p90": level["partial_ms"]["p90"],
        "commit p50": level["commit_ms"]["p50"],
        "commit p95": level["commit_ms"]["p95"],
        "commit p99": level["commit_ms"]["p99"],
        "final p50": level["final_ms"]["p50"],
        "final p95": level["final_ms"]["p95"],
        "rtf": level["rtf"],
        "batch": level["engine"]["mean_batch"],
        "load": (level.get("engine_load") or {}).get("mean"),
        "refused": level.get("refused_overloaded"),
        "lagging": level.get("lag_behind"),
        "cpu%": level["server_cpu_percent"]["mean"],
        "client%": level["client_cpu_percent"],
        "rss MB": level["server_rss_mb"]["max"],
        "finals": level["finals"],
        "utts": level["utterances_sent"],
        "fail": level["failed_streams"],
        "wer": level["transcript_wer"],
    }


def headline(levels: list[dict[str, Any]], commit_ms: float, partial_ms: float) -> dict[str, Any]:
    ok = [
        lv
        for lv in levels
        if not lv["failed_streams"]
        and lv["commit_ms"]["p95"] is not None
        and lv["commit_ms"]["p95"] <= commit_ms
    ]
    best = max(ok, key=lambda lv: lv["streams"]) if ok else None
    both = [lv for lv in ok if (lv["partial_ms"]["p50"] or 0) <= partial_ms]
    best_both = max(both, key=lambda lv: lv["streams"]) if both else None
    return {
        "max_streams_p95_commit_le_1s": best["streams"] if best else 0,
        "max_streams_also_p50_partial_le_400ms": best_both["streams"] if best_both else 0,
        "at_max": _row(best) if best else None,
        "target": "≥ 12 streams with p95 commit ≤ 1 s and p50 partial ≤ 400 ms",
        "target_met": bool(best_both and best_both["streams"] >= 12),
    }


def _client_procs_label(setting: int) -> int | str:
    return "auto" if setting <= 0 else setting


def _raise_open_files_limit(wanted: int) -> None:
    """Lift the soft open-files limit (inherited by the server process, which holds one
    socket per stream) towards ``wanted``, as far as the hard limit allows."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            print(f"# could not raise the open-files limit from {soft}: {exc}")
            return
    if target < wanted:
        print(f"# warning: open-files limit {target} < {wanted}; large levels may fail")


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info(args.device)
    machine.header("live load", info)
    bench = models.resolve_model(args.model)
    print(f"# model {bench.described}")
    files = testset.session_files(args.files, per_file=args.utterances_per_file)
    print(f"# {len(files)} session files: " + ", ".join(f"{f.duration_s:.1f} s" for f in files))
    server_args = [
        "--device",
        args.device,
        "--max-sessions",
        str(max(args.streams) + 8),
        *shlex.split(args.server_args),
    ]
    if args.dtype:
        server_args += ["--dtype", args.dtype]
    levels: list[dict[str, Any]] = []
    log_path = paths.OUT_DIR / "live_load-server.log"
    procs_note = ", ".join(f"N={n}: {client_procs_for(n, args.client_procs)}" for n in args.streams)
    print(f"# client processes ({_client_procs_label(args.client_procs)}): {procs_note}")
    _raise_open_files_limit(max(args.streams) + 256)
    with server_process.ServerProcess(bench.source, server_args, log_path=log_path) as server:
        print(f"# server pid {server.pid} at {server.url} ({' '.join(server_args)})")
        idle_rss = server.samples[-1].rss_mb if server.samples else None
        for n in args.streams:
            level = run_level(
                server,
                files,
                n,
                seed=n,
                ramp_s=args.ramp_s,
                client_procs=args.client_procs,
                resume=args.client_resume == "on",
            )
            level["client_resume"] = args.client_resume
            levels.append(level)
            r = _row(level)
            print(
                f"N={n:3d}: partial p50 {r['partial p50']} ms, commit p50/p95 {r['commit p50']}/"
                f"{r['commit p95']} ms, final p50 {r['final p50']} ms, rtf {r['rtf']}, "
                f"batch {r['batch']}, server cpu {r['cpu%']}%, client cpu {r['client%']}%, "
                f"finals {r['finals']}/{r['utts']}, failed {r['fail']}"
                + (
                    f", {level['client_procs']} client procs at "
                    f"{level['client_proc_cpu_percent']}% each"
                    if level["client_procs"] > 1
                    else ""
                ),
                flush=True,
            )
            p95 = level["commit_ms"]["p95"]
            if level["failed_streams"] or p95 is None or p95 > args.break_ms:
                print(f"# latency broke at N={n} (p95 commit {p95} ms); stopping the sweep")
                break
        health = server.health()
    table = [_row(lv) for lv in levels]
    reporting.print_table(table, list(table[0]), "live load (latencies in ms)")
    head = headline(levels, 1000.0, 400.0)
    print(
        f"\nheadline: {head['max_streams_p95_commit_le_1s']} streams with p95 commit ≤ 1 s "
        f"({head['max_streams_also_p50_partial_le_400ms']} also with p50 partial ≤ 400 ms); "
        f"target {'met' if head['target_met'] else 'NOT met'}"
    )
    data = {
        **reporting.result_header(args, info, bench),
        "server_args": server_args,
        "ramp_s": args.ramp_s,
        # the --client-procs setting; each level records the count it used
        "client_procs": _client_procs_label(args.client_procs),
        "client_procs_used": [lv["client_procs"] for lv in levels],
        "files": [
            {
                "path": str(f.path.relative_to(paths.REPO)),
                "duration_s": f.duration_s,
                "utterances": len(f.segments),
            }
            for f in files
        ],
        "idle_rss_mb": idle_rss,
        "health_after": health,
        "levels": levels,
        "headline": head,
    }
    reporting.save_results(data, args, plot)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    levels = data["levels"]
    ns = [lv["streams"] for lv in levels]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, label, style in (
        ("partial_ms", "partial p50", "p50"),
        ("commit_ms", "commit p50", "p50"),
        ("commit_ms", "commit p95", "p95"),
        ("final_ms", "final p50", "p50"),
    ):
        ax.plot(ns, [lv[key][style] for lv in levels], marker="o", label=label)
    ax.axhline(1000, color="grey", ls="--", lw=0.8)
    ax.axhline(400, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{data['model']}: max {data['headline']['max_streams_p95_commit_le_1s']} "
        "streams with p95 commit ≤ 1 s",
        fontsize=10,
    )
    ax2.plot(
        ns,
        [lv["server_cpu_percent"]["mean"] for lv in levels],
        marker="o",
        label="server CPU % (100 = 1 core)",
    )
    ax2.plot(ns, [lv["client_cpu_percent"] for lv in levels], marker="s", label="load-gen CPU %")
    ax2.plot(
        ns,
        [100 * (lv["rtf"] or 0) for lv in levels],
        marker="^",
        label="engine busy per audio s (%)",
    )
    ax2.set_xlabel("concurrent real-time streams")
    ax2.grid(True, alpha=0.3)
    ax3 = ax2.twinx()
    ax3.plot(
        ns,
        [lv["engine"]["mean_batch"] or 0 for lv in levels],
        color="k",
        ls="--",
        marker="x",
        label="mean batch",
    )
    ax3.set_ylabel("mean batch size")
    ax2.legend(fontsize=8, loc="upper left")
    ax3.legend(fontsize=8, loc="lower right")
    ax2.set_title(machine.machine_label(data["machine"]), fontsize=10)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="see engine_throughput --help")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="", help="server --dtype (default: the server's auto)")
    p.add_argument(
        "--streams",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_STREAMS),
        help="N values (default: 1,2,4,…,32)",
    )
    p.add_argument("--files", type=int, default=8, help="distinct session files")
    p.add_argument("--utterances-per-file", type=int, default=3)
    p.add_argument(
        "--break-ms",
        type=float,
        default=3000.0,
        help="stop the sweep once p95 commit latency exceeds this",
    )
    p.add_argument(
        "--ramp-s",
        type=float,
        default=1.0,
        help="streams of a level start at random times within this many seconds; a longer"
        " ramp lets admission control see the load and refuse late arrivals",
    )
    p.add_argument(
        "--client-procs",
        type=_client_procs_arg,
        default=1,
        metavar="K",
        help="spread each level's streams over K spawned client processes (default 1: all"
        " in this process; 0 or 'auto': about one per 200 streams, at most half the cores)",
    )
    p.add_argument("--server-args", default="", help="extra server options, one string")
    p.add_argument(
        "--client-resume",
        choices=("on", "off"),
        default="on",
        help="clients ask for resume (acks with signed tokens), as the Python client does by "
        "default; off measures streams without it (default: %(default)s)",
    )
    cli.add_result_options(p, "added to the result file names")
    return cli.parse_benchmark_args(p, "live_load", argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
