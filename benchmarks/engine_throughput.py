"""Engine throughput: seconds of audio per second vs batch size and window length.

Calls ``LoadedModel.infer`` (exactly what the engine's worker thread runs) on random
audio, for each window length × batch size, and reports the median over repeats. Also
measures offline inference speed (× real time) at batch 1 on a 4 s input, the issue #5
target (≥ 50× for the bundled model on the 2-core CPU).

    python -m benchmarks.engine_throughput                                  # tiny-en, CPU fp32
    python -m benchmarks.engine_throughput --model base-random --batches 1,2,4,8
    python -m benchmarks.engine_throughput --model base-random --device cuda --dtype fp16

Writes ``benchmarks/results/engine_throughput-<machine>.json/.png`` (``--tag`` is added to
the name when given).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from benchmarks import cli, figures, machine, models, reporting, testset

DEFAULT_WINDOWS_MS = (800, 1760, 2880)  # first window, default steady window, long context
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)


def measure(
    model: Any, batch: int, samples: int, min_time: float, min_reps: int
) -> tuple[float, float]:
    """(median, min) seconds per ``infer`` call on a (batch, samples) input, after a warm-up."""
    rng = np.random.default_rng(batch * 100003 + samples)
    x = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    model.infer(x)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - began < min_time:
        t0 = time.perf_counter()
        model.infer(x)
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return statistics.median(times), min(times)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    info = machine.machine_info(args.device)
    machine.header("engine throughput", info)
    bench = models.resolve_model(args.model)  # once: the bundled model may be re-exported
    results: list[dict[str, Any]] = []
    offline: list[dict[str, Any]] = []
    parameters = 0
    for dtype in args.dtypes:
        model, _ = models.load_bench_model(bench.source, args.device, dtype)
        parameters = model.parameters
        print(
            f"# model {bench.label} ({parameters / 1e6:.1f} M parameters) "
            f"{model.device}/{model.dtype}" + (f"; {bench.note}" if bench.note else "")
        )
        for threads in args.threads:
            torch.set_num_threads(threads)
            common_row = {"model": bench.label, "dtype": dtype, "threads": threads}
            secs, best = measure(model, 1, int(args.offline_s * testset.SAMPLE_RATE), 2.0, 5)
            offline.append(
                {
                    **common_row,
                    "input_s": args.offline_s,
                    "seconds": round(secs, 5),
                    "x_realtime": round(args.offline_s / secs, 1),
                    "x_realtime_best": round(args.offline_s / best, 1),
                }
            )
            print(
                f"{dtype} threads {threads}: offline batch 1, {args.offline_s:g} s input: "
                f"{secs * 1000:.1f} ms = {args.offline_s / secs:.1f}x real time "
                f"(best {args.offline_s / best:.1f}x)",
                flush=True,
            )
            for window_ms in args.windows:
                samples = window_ms * testset.SAMPLE_RATE // 1000
                for batch in args.batches:
                    secs, best = measure(model, batch, samples, args.min_time, args.min_reps)
                    audio = batch * window_ms / 1000
                    results.append(
                        {
                            **common_row,
                            "window_ms": window_ms,
                            "batch": batch,
                            "seconds": round(secs, 5),
                            "seconds_min": round(best, 5),
                            "audio_s_per_s": round(audio / secs, 1),
                            "audio_s_per_s_best": round(audio / best, 1),
                            "ms_per_window": round(1000 * secs / batch, 2),
                        }
                    )
                    print(
                        f"  window {window_ms} ms batch {batch:3d}: {secs * 1000:8.1f} ms/call "
                        f"{audio / secs:8.1f} audio s/s (best {audio / best:.1f})",
                        flush=True,
                    )
        del model
    reporting.print_table(
        results,
        [
            "model",
            "dtype",
            "threads",
            "window_ms",
            "batch",
            "seconds",
            "audio_s_per_s",
            "audio_s_per_s_best",
            "ms_per_window",
        ],
        "engine throughput (median per call; best = fastest call)",
    )
    reporting.print_table(
        offline,
        ["model", "dtype", "threads", "input_s", "seconds", "x_realtime", "x_realtime_best"],
        "offline inference, batch 1",
    )
    best_row = max(results, key=lambda r: r["audio_s_per_s"])
    best_offline = max(offline, key=lambda r: r["x_realtime"])
    data = {
        **reporting.result_header(args, info, bench),
        "parameters": parameters,
        "settings": {
            "windows_ms": args.windows,
            "batches": args.batches,
            "min_time_s": args.min_time,
            "threads": args.threads,
            "input": "random noise, 0.1 std",
        },
        "offline": offline,
        "results": results,
        "headline": {
            "offline_x_realtime_batch1_4s": best_offline["x_realtime"],
            "offline_at": {k: best_offline[k] for k in ("dtype", "threads")},
            "best_audio_s_per_s": best_row["audio_s_per_s"],
            "best_at": {k: best_row[k] for k in ("dtype", "threads", "window_ms", "batch")},
        },
    }
    reporting.save_results(data, args, plot, lead="\n")
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    rows = data["results"]
    threads = list(dict.fromkeys(r.get("threads") for r in rows))
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.5), squeeze=False)
    where = machine.machine_label(data["machine"])
    for ax, th in zip(axes[0], threads):
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            for window_ms in dict.fromkeys(r["window_ms"] for r in rows):
                sel = [
                    r
                    for r in rows
                    if r["dtype"] == dtype
                    and r["window_ms"] == window_ms
                    and r.get("threads") == th
                ]
                if sel:
                    ax.plot(
                        [r["batch"] for r in sel],
                        [r["audio_s_per_s"] for r in sel],
                        marker="o",
                        label=f"{dtype}, window {window_ms} ms",
                    )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (windows per model call)")
        ax.set_ylabel("seconds of audio per second (median)")
        off = [o for o in data["offline"] if o.get("threads") == th]
        offline = ", ".join(f"{o['dtype']} {o['x_realtime']:.0f}x" for o in off)
        label = f"{th} torch thread(s)" if th else "default threads"
        ax.set_title(f"{data['model']} on {where}, {label}\noffline b=1 4 s: {offline}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument(
        "--model",
        default="tiny-en",
        help="tiny-en, tiny-en-random, base-random, tiny-random, a folder or hub id "
        "(default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument(
        "--dtype",
        dest="dtypes",
        default="fp32",
        type=lambda s: [d.strip() for d in s.split(",") if d.strip()],
        help="comma-separated: fp32, fp16, bf16 (default: %(default)s)",
    )
    p.add_argument(
        "--windows",
        type=_ints,
        default=list(DEFAULT_WINDOWS_MS),
        help="window lengths in ms, comma-separated (default: 800,1760,2880)",
    )
    p.add_argument(
        "--batches",
        type=_ints,
        default=list(DEFAULT_BATCHES),
        help="batch sizes, comma-separated (default: 1,2,4,8,16,32)",
    )
    p.add_argument("--offline-s", type=float, default=4.0, help="offline input length (s)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    p.add_argument("--min-reps", type=int, default=3, help="repeats per measurement")
    p.add_argument(
        "--threads",
        type=_ints,
        default=None,
        help="torch CPU thread counts to measure, comma-separated (default: 1,2 on "
        "the CPU, torch's default on CUDA)",
    )
    cli.add_result_options(
        p, "added to the result file names", "where results go (default: benchmarks/results)"
    )
    args = cli.parse_benchmark_args(p, "engine_throughput", argv)
    args.dtypes = args.dtypes if isinstance(args.dtypes, list) else [args.dtypes]
    if args.threads is None:
        import torch

        args.threads = [1, 2] if args.device == "cpu" else [torch.get_num_threads()]
    return args


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
