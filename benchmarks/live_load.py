"""Live load: N concurrent real-time streams against one server, N swept until latency breaks.

The server runs in its own process (``python -m streaming --port 0``; the ready line gives
the URL), so the load generator does not share its GIL. Each simulated client streams a
multi-utterance file of held-out test sentences at real-time pace (100 ms chunks) with the
project's own client (``client.api.stream_file``), which measures per-word partial and
commit latency and per-utterance final latency against its own send times.

Per N: p50/p90/p95/p99 partial, commit and final latency, the engine's real-time factor
(model busy seconds per second of audio), batch stats from ``/metrics``, server CPU (100 % =
one core) and RSS from psutil. Headline: the largest N with p95 commit latency ≤ 1 s.

    python -m benchmarks.live_load                                # tiny-en, N = 1…32
    python -m benchmarks.live_load --streams 1,4,8 --model tiny-en-random
    python -m benchmarks.live_load --model base-random --device cuda --streams 8,32,64,128

Writes ``benchmarks/results/live_load-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import time
from typing import Any

from benchmarks import common

DEFAULT_STREAMS = (1, 2, 4, 8, 12, 16, 24, 32)


async def _one_stream(url: str, path: str, delay: float) -> Any:
    from client.api import stream_file

    await asyncio.sleep(delay)
    return await stream_file(path, url, speed=1.0, chunk_ms=100.0, retries=5, finish_timeout=60.0)


async def _level(
    server: common.ServerProcess,
    files: list[common.ComposedFile],
    n: int,
    seed: int,
    ramp_s: float = 1.0,
) -> tuple[list[Any], list[float]]:
    """Run ``n`` streams starting within ``ramp_s``; sample the engine load (``/health``)
    every second meanwhile."""
    rng = random.Random(seed)
    tasks = [
        _one_stream(server.url, str(files[i % len(files)].path), rng.uniform(0.0, ramp_s))
        for i in range(n)
    ]
    loads: list[float] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            health = await asyncio.to_thread(server.health)
            loads.append(float(health.get("engine_load", 0.0)))

    sampler = asyncio.create_task(sample())
    try:
        return list(await asyncio.gather(*tasks, return_exceptions=True)), loads
    finally:
        sampler.cancel()


def run_level(
    server: common.ServerProcess,
    files: list[common.ComposedFile],
    n: int,
    seed: int,
    ramp_s: float = 1.0,
) -> dict[str, Any]:
    import psutil

    me = psutil.Process()
    me.cpu_percent(None)
    psutil.cpu_percent(None)
    before = server.metrics()
    t0 = server.clock
    began = time.monotonic()
    results, loads = asyncio.run(_level(server, files, n, seed, ramp_s))
    wall = time.monotonic() - began
    t1 = server.clock
    after = server.metrics()
    client_cpu = me.cpu_percent(None)
    system_cpu = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
    trackers: list[Any] = []
    failures: list[str] = []
    errors = 0
    finals = 0
    audio_s = 0.0
    tails: list[float] = []
    counts = common.ErrorCounts()
    by_path = {str(f.path): f for f in files}
    for res in results:
        if isinstance(res, BaseException):
            failures.append(f"{type(res).__name__}: {res}")
            continue
        if res.failure:
            failures.append(res.failure)
        trackers.append(res.tracker)
        errors += len(res.errors)
        finals += len(res.finals)
        audio_s += res.audio_s
        if res.tail_s is not None:
            tails.append(res.tail_s)
        counts.add(by_path[res.source].reference, res.transcript)
    window = server.window(t0, t1)
    cpu = [s.cpu_percent for s in window]
    rss = [s.rss_mb for s in window] or [s.rss_mb for s in server.samples[-1:]]
    engine = common.engine_delta(before, after)
    return {
        "streams": n,
        "wall_s": round(wall, 2),
        "audio_s": round(audio_s, 1),
        **common.latency_summary(trackers),
        "tail_s": common.summarize(tails, 3),
        "engine": engine,
        "rtf": round(engine["model_busy_s"] / audio_s, 3) if audio_s else None,
        # /health engine_load: fraction of the last 5 s the model ran (admission limit 0.85)
        "engine_load": {
            "mean": round(sum(loads) / len(loads), 3) if loads else None,
            "max": round(max(loads), 3) if loads else None,
        },
        "refused_overloaded": int(
            common.metric_delta(
                before, after, 'streaming_sessions_rejected_total{reason="overloaded"}'
            )
        ),
        "lag_behind": int(
            common.metric_delta(before, after, 'streaming_lag_events_total{state="behind"}')
        ),
        "server_cpu_percent": {
            "mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "max": max(cpu) if cpu else None,
        },
        "server_rss_mb": {"max": round(max(rss), 1) if rss else None},
        "client_cpu_percent": round(client_cpu, 1),
        "system_cpu_percent": round(system_cpu, 1),
        "finals": finals,
        "utterances_sent": sum(len(by_path[str(f.path)].segments) for f in _picked(files, n)),
        **common.word_counts(trackers),
        "errors": errors,
        "failures": failures[:10],
        "failed_streams": len(failures),
        **{f"transcript_{k}": v for k, v in counts.to_json().items()},
    }


def _picked(files: list[common.ComposedFile], n: int) -> list[common.ComposedFile]:
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = common.machine_info(args.device)
    common.header("live load", info)
    bench = common.resolve_model(args.model)
    print(f"# model {bench.described}")
    files = common.session_files(args.files, per_file=args.utterances_per_file)
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
    log_path = common.OUT_DIR / "live_load-server.log"
    with common.ServerProcess(bench.source, server_args, log_path=log_path) as server:
        print(f"# server pid {server.pid} at {server.url} ({' '.join(server_args)})")
        idle_rss = server.samples[-1].rss_mb if server.samples else None
        for n in args.streams:
            level = run_level(server, files, n, seed=n, ramp_s=args.ramp_s)
            levels.append(level)
            r = _row(level)
            print(
                f"N={n:3d}: partial p50 {r['partial p50']} ms, commit p50/p95 {r['commit p50']}/"
                f"{r['commit p95']} ms, final p50 {r['final p50']} ms, rtf {r['rtf']}, "
                f"batch {r['batch']}, server cpu {r['cpu%']}%, client cpu {r['client%']}%, "
                f"finals {r['finals']}/{r['utts']}, failed {r['fail']}",
                flush=True,
            )
            p95 = level["commit_ms"]["p95"]
            if level["failed_streams"] or p95 is None or p95 > args.break_ms:
                print(f"# latency broke at N={n} (p95 commit {p95} ms); stopping the sweep")
                break
        health = server.health()
    table = [_row(lv) for lv in levels]
    common.print_table(table, list(table[0]), "live load (latencies in ms)")
    head = headline(levels, 1000.0, 400.0)
    print(
        f"\nheadline: {head['max_streams_p95_commit_le_1s']} streams with p95 commit ≤ 1 s "
        f"({head['max_streams_also_p50_partial_le_400ms']} also with p50 partial ≤ 400 ms); "
        f"target {'met' if head['target_met'] else 'NOT met'}"
    )
    data = {
        **common.result_header(args, info, bench),
        "server_args": server_args,
        "files": [
            {
                "path": str(f.path.relative_to(common.REPO)),
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
    common.save_results(data, args, plot)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = common.pyplot()
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
    ax2.set_title(common.machine_label(data["machine"]), fontsize=10)
    return common.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = common.arg_parser(__doc__)
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
    p.add_argument("--server-args", default="", help="extra server options, one string")
    common.add_result_options(p, "added to the result file names")
    return common.parse_benchmark_args(p, "live_load", argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
