"""Soak: many concurrent real-time streams for a long time; nothing lost, nothing leaks.

N simulated clients (one asyncio process) stream multi-utterance files of held-out test
sentences at real-time pace to one server in its own process, session after session,
until the duration is over (a session is only started if it ends in time). Checks:

* every utterance spoken gets exactly one ``final`` (utterances per file are known from
  the composition and confirmed by one pass through the pure Session);
* no errors, no failed sessions;
* server RSS does not grow: the median over the last 10 % of the run is within 10 % of
  the median over the 10 % after the first minute (or after the first 20 % in short runs);
* afterwards no session is left open (``/health`` sessions == 0, the active-sessions gauge
  is 0).

Exit status 1 when a check fails.

    python -m benchmarks.soak                                # 200 streams, 10 min, tiny-random
    python -m benchmarks.soak --streams 20 --minutes 0.5     # the CI-sized run (< 60 s)
    python -m benchmarks.soak --model tiny-en --streams 16 --minutes 3

Writes ``benchmarks/results/soak-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class StreamTally:
    sessions: int = 0
    utterances: int = 0
    expected_finals: int = 0
    finals: int = 0
    empty_finals: int = 0
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def _stream_loop(
    url: str,
    files: list[testset.ComposedFile],
    expected: dict[str, int],
    index: int,
    deadline: float,
    tally: StreamTally,
    stagger: float,
) -> None:
    from client.api import stream_file

    rng = random.Random(index)
    await asyncio.sleep(rng.uniform(0.0, stagger))
    k = index
    while True:
        f = files[k % len(files)]
        k += 1
        if tally.sessions and time.monotonic() + f.duration_s > deadline:
            return
        tally.sessions += 1
        tally.utterances += len(f.segments)
        tally.expected_finals += expected[str(f.path)]
        try:
            res = await stream_file(str(f.path), url, speed=1.0, retries=5, finish_timeout=60.0)
        except Exception as exc:  # a connect failure is a soak failure, not a crash
            tally.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        tally.finals += len(res.finals)
        tally.empty_finals += sum(1 for m in res.finals if not m.get("text"))
        tally.errors += [str(e.get("code")) for e in res.errors]
        if res.failure:
            tally.failures.append(res.failure)
        if len(res.finals) != expected[str(f.path)]:
            tally.missing.append(
                f"{f.path.name}: {len(res.finals)} finals, {expected[str(f.path)]} expected"
            )
        if time.monotonic() >= deadline:
            return


async def _soak(
    url: str,
    files: list[testset.ComposedFile],
    expected: dict[str, int],
    streams: int,
    seconds: float,
    stagger: float,
) -> list[StreamTally]:
    deadline = time.monotonic() + seconds
    tallies = [StreamTally() for _ in range(streams)]
    await asyncio.gather(
        *(
            _stream_loop(url, files, expected, i, deadline, tallies[i], stagger)
            for i in range(streams)
        )
    )
    return tallies


def vad_utterances(files: list[testset.ComposedFile]) -> dict[str, int]:
    """Utterances the server's VAD gate finds in each file (= finals a session must send)."""
    import soundfile as sf

    from streaming.config import VadConfig
    from streaming.vad import SpeechStart, VadGate

    out = {}
    for f in files:
        audio, rate = sf.read(str(f.path), dtype="float32")
        assert rate == testset.SAMPLE_RATE, f"{f.path}: {rate} Hz"
        gate = VadGate(VadConfig())
        events = []
        step = testset.SAMPLE_RATE // 10
        for pos in range(0, len(audio), step):
            events += gate.process(audio[pos : pos + step])
        events += gate.flush("end")
        out[str(f.path)] = sum(1 for e in events if isinstance(e, SpeechStart))
    return out


class HealthPoller:
    """GET /health every ``interval`` s in a thread: sessions and queue depth over time."""

    def __init__(self, server: server_process.ServerProcess, interval: float = 2.0) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                h = self.server.health()
            except OSError:
                continue
            self.samples.append(
                {
                    "t": round(time.monotonic() - self._t0, 1),
                    "sessions": h.get("sessions"),
                    "queue_depth": h.get("queue_depth"),
                }
            )


def memory_growth(samples: list[server_process.ResourceSample], seconds: float) -> dict[str, Any]:
    import statistics

    if len(samples) < 10:
        return {"ok": False, "reason": "too few memory samples"}
    settle = 60.0 if seconds >= 300 else 0.2 * seconds
    span = max(seconds * 0.1, 2.0)
    t_end = samples[-1].t
    early = [s.rss_mb for s in samples if settle <= s.t <= settle + span]
    late = [s.rss_mb for s in samples if s.t >= t_end - span]
    if not early or not late:
        return {"ok": False, "reason": "no samples in a comparison window"}
    a, b = statistics.median(early), statistics.median(late)
    growth = (b - a) / a
    return {
        "early_mb": round(a, 1),
        "late_mb": round(b, 1),
        "growth": round(growth, 4),
        "max_mb": round(max(s.rss_mb for s in samples), 1),
        "ok": growth <= 0.10,
        "rule": f"median RSS of the last {span:.0f} s ≤ 1.10 × median of {span:.0f} s "
        f"from t = {settle:.0f} s",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info("cpu")
    machine.header(f"soak: {args.streams} streams, {args.minutes:g} min", info)
    bench = models.resolve_model(args.model)
    print(f"# model {bench.described}", flush=True)
    if args.audio == "samples":
        files = testset.sample_files()
    else:
        files = testset.session_files(args.files, per_file=args.utterances_per_file, offset=200)
    expected = vad_utterances(files)
    spoken = {str(f.path): len(f.segments) for f in files}
    print(
        f"# {len(files)} files ({', '.join(f'{f.duration_s:.1f} s' for f in files)}); "
        f"VAD utterances per file {list(expected.values())}, spoken {list(spoken.values())}"
    )
    seconds = args.minutes * 60
    server_args = ["--max-sessions", str(args.streams + 8), *args.server_args.split()]
    with server_process.ServerProcess(
        bench.source,
        server_args,
        log_path=paths.OUT_DIR / "soak-server.log",
        interval=0.5 if seconds < 120 else 2.0,
    ) as server:
        before = server.metrics()
        began = time.monotonic()
        with HealthPoller(server, 1.0 if seconds < 120 else 5.0) as poller:
            tallies = asyncio.run(
                _soak(server.url, files, expected, args.streams, seconds, args.stagger)
            )
        wall = time.monotonic() - began
        open_sessions = None
        for _ in range(20):
            open_sessions = server.health().get("sessions")
            if open_sessions == 0:
                break
            time.sleep(0.5)
        after = server.metrics()
        samples = list(server.samples)
    gauge = sum(v for k, v in after.items() if k.startswith("streaming_sessions_active"))
    server_errors = {
        k.split('code="')[1].split('"')[0]: int(after[k] - before.get(k, 0.0))
        for k in after
        if k.startswith("streaming_errors_total{")
    }
    total = StreamTally()
    for t in tallies:
        total.sessions += t.sessions
        total.utterances += t.utterances
        total.expected_finals += t.expected_finals
        total.finals += t.finals
        total.empty_finals += t.empty_finals
        total.errors += t.errors
        total.failures += t.failures
        total.missing += t.missing
    memory = memory_growth(samples, wall)
    vad_matches = expected == spoken
    checks = {
        "finals_equal_utterances": total.finals == total.utterances,
        "finals_equal_vad_utterances": total.finals == total.expected_finals,
        "no_errors": not total.errors and not any(server_errors.values()),
        "no_failed_sessions": not total.failures,
        "memory_growth_le_10pct": bool(memory.get("ok")),
        "no_session_left_open": open_sessions == 0 and gauge == 0,
    }
    passed = (
        all(checks.values())
        if vad_matches
        else all(v for k, v in checks.items() if k != "finals_equal_utterances")
    )
    cpu = [s.cpu_percent for s in samples]
    data = {
        **reporting.result_header(args, info, bench, model_source=False),
        "streams": args.streams,
        "minutes": args.minutes,
        "wall_s": round(wall, 1),
        "sessions": total.sessions,
        "utterances_spoken": total.utterances,
        "utterances_vad": total.expected_finals,
        "vad_count_matches_spoken": vad_matches,
        "finals": total.finals,
        "empty_finals": total.empty_finals,
        "client_errors": len(total.errors),
        "client_error_codes": sorted(set(total.errors)),
        "server_errors": server_errors,
        "failed_sessions": len(total.failures),
        "failures": total.failures[:20],
        "missing": total.missing[:20],
        "open_sessions_after": open_sessions,
        "sessions_active_gauge_after": gauge,
        "memory": memory,
        "server_cpu_percent_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "engine": prometheus.engine_delta(before, after),
        "checks": checks,
        "passed": passed,
        "rss_series": [
            (round(s.t, 1), round(s.rss_mb, 1), round(s.cpu_percent, 1)) for s in samples
        ],
        "health_series": poller.samples,
    }
    print(
        f"sessions {total.sessions}, utterances spoken {total.utterances}, finals "
        f"{total.finals} ({total.empty_finals} empty), errors {len(total.errors)}, failed "
        f"sessions {len(total.failures)}, open after {open_sessions}; RSS "
        f"{memory.get('early_mb')} → {memory.get('late_mb')} MB "
        f"(growth {memory.get('growth')}); server CPU {data['server_cpu_percent_mean']} %"
    )
    for k, v in checks.items():
        print(f"  {'PASS' if v else 'FAIL'} {k}")
    print("soak " + ("PASSED" if passed else "FAILED"))
    reporting.save_results(data, args, plot if args.plot else None)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = data["rss_series"]
    ax.plot([s[0] / 60 for s in series], [s[1] for s in series], label="server RSS (MB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(0, max([s[1] for s in series] + [1]) * 1.2)
    ax2 = ax.twinx()
    ax2.plot(
        [s[0] / 60 for s in series],
        [s[2] for s in series],
        color="tab:orange",
        alpha=0.5,
        lw=0.8,
        label="server CPU %",
    )
    hs = data["health_series"]
    ax2.plot(
        [h["t"] / 60 for h in hs],
        [h["sessions"] for h in hs],
        color="tab:green",
        label="open sessions",
    )
    ax2.set_ylabel("CPU % / open sessions")
    ax.legend(loc="lower left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    verdict = "PASSED" if data["passed"] else "FAILED"
    ax.set_title(
        f"soak {verdict}: {data['streams']} streams × {data['minutes']:g} min, "
        f"{data['model']}; {data['finals']}/{data['utterances_spoken']} finals, "
        f"RSS growth {data['memory'].get('growth')}",
        fontsize=10,
    )
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument(
        "--model",
        default="tiny-random",
        help="tiny-random carries 200 streams on 2 cores; tiny-en does not (default: %(default)s)",
    )
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--files", type=int, default=6, help="distinct session files")
    p.add_argument("--utterances-per-file", type=int, default=2)
    p.add_argument(
        "--audio",
        choices=("testset", "samples"),
        default="testset",
        help="testset: files composed of held-out sentences (synthesized once); "
        "samples: the committed training/samples/*.wav (no TTS needed)",
    )
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    p.add_argument("--stagger", type=float, default=3.0, help="spread of stream start times (s)")
    p.add_argument("--server-args", default="", help="extra server options, one string")
    cli.add_result_options(p)
    return cli.parse_benchmark_args(p, "soak", argv)


def main(argv: list[str] | None = None) -> int:
    return 0 if run(parse_args(argv))["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
