"""The cost of a new input shape: cuDNN on vs off.

A streaming engine sees an ever-changing mix of (batch size, window length) shapes: batches
hold whatever windows were due, and an utterance's first and last windows have lengths of
their own. With cuDNN, the first call of every new shape builds an execution plan for each
convolution; PyTorch's own CUDA kernels ("off") have no per-shape cost but may be slower
per call. For each mode this times the first call of new random shapes, a second call of
the same shapes, and a fixed shape called over and over, and says which mode costs less
for new shapes (``recommended``; ``--cudnn`` of the server).

    python -m benchmarks.shape_cost --model base-random --device cuda --dtype fp16

Writes ``benchmarks/results/shape_cost[-<tag>]-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from benchmarks import cli, figures, machine, models, reporting

FRAME = 320  # samples per model frame: window lengths are whole frames


def _time_call(model: Any, batch: int, samples: int, rng: np.random.Generator) -> float:
    x = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    began = time.perf_counter()
    model.infer(x)
    return time.perf_counter() - began


def measure_mode(
    model: Any, shapes: list[tuple[int, int]], fixed: tuple[int, int], budget_s: float
) -> dict[str, Any]:
    """First and second call of each new shape (until ``budget_s`` is spent), then the
    median of a fixed shape called repeatedly."""
    rng = np.random.default_rng(0)
    first: list[float] = []
    second: list[float] = []
    audio = 0.0
    began = time.perf_counter()
    for batch, samples in shapes:
        if time.perf_counter() - began > budget_s and first:
            break
        first.append(_time_call(model, batch, samples, rng))
        second.append(_time_call(model, batch, samples, rng))
        audio += batch * samples / 16000
    _time_call(model, *fixed, rng)
    repeat = [_time_call(model, *fixed, rng) for _ in range(10)]
    ms = [1000 * t for t in first]
    return {
        "new_shapes": len(first),
        "first_call_ms": {"mean": round(statistics.mean(ms), 1), "max": round(max(ms), 1)},
        "second_call_ms": round(1000 * statistics.mean(second), 1),
        "new_shape_audio_s_per_s": round(audio / sum(first), 1),
        "fixed_shape": {"batch": fixed[0], "samples": fixed[1]},
        "fixed_shape_ms": round(1000 * statistics.median(repeat), 2),
    }


def measure_split(
    model: Any, base: tuple[int, int], batches: list[int], lengths: list[int]
) -> dict[str, float]:
    """First-call ms when only the batch size is new (length ``base[1]``, seen before), and
    when only the length is new (batch ``base[0]``): which part of a shape costs."""
    rng = np.random.default_rng(2)
    _time_call(model, *base, rng)
    new_batch = [_time_call(model, b, base[1], rng) for b in batches]
    new_length = [_time_call(model, base[0], n, rng) for n in lengths]
    return {
        "new_batch_only_ms": round(1000 * statistics.mean(new_batch), 1),
        "new_length_only_ms": round(1000 * statistics.mean(new_length), 1),
    }


def profile_new_shape(model: Any, shape: tuple[int, int], rows: int) -> str:
    """torch.profiler's table (by self CPU time) for one call of a never-seen shape."""
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(3)
    activities = [ProfilerActivity.CPU]
    if str(model.device).startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        _time_call(model, *shape, rng)
    table: str = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return table


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    info = machine.machine_info(args.device)
    machine.header("shape cost (cuDNN on vs off)", info)
    model, bench = models.load_bench_model(args.model, args.device, args.dtype)
    rng = np.random.default_rng(1)
    fixed = (args.fixed_batch, args.fixed_ms * 16)
    modes: dict[str, Any] = {}
    for index, mode in enumerate(args.modes):
        torch.backends.cudnn.enabled = mode == "on"
        # Shapes of their own per mode, so that no plan built for an earlier mode helps.
        shapes = sorted(
            {
                (int(rng.integers(1, args.max_batch + 1)), FRAME * int(rng.integers(25, 170)))
                for _ in range(args.shapes * (index + 2))
            },
            key=lambda _: rng.random(),
        )[: args.shapes]
        modes[mode] = measure_mode(model, shapes, fixed, args.budget_s)
        # Near the fixed shape, so the compute is alike: batch sizes just above it, and
        # lengths a few ms longer (not whole frames, which every random shape is).
        offset = 1 + index * args.split
        fresh_b = [fixed[0] + offset + k for k in range(args.split)]
        fresh_n = [fixed[1] + 16 * (offset + k) for k in range(args.split)]
        modes[mode].update(measure_split(model, fixed, fresh_b, fresh_n))
        if args.profile:
            shape = (fixed[0] + offset + args.split, fixed[1] + 16 * (offset + args.split))
            table = profile_new_shape(model, shape, args.profile)
            modes[mode]["profile_new_shape"] = table
            print(f"-- profile of one new shape {shape}, cudnn {mode}:\n{table}", flush=True)
        row = modes[mode]
        print(
            f"cudnn {mode:3}: {row['new_shapes']} new shapes, first call "
            f"{row['first_call_ms']['mean']} ms (max {row['first_call_ms']['max']}), second "
            f"{row['second_call_ms']} ms; fixed batch {fixed[0]} × {args.fixed_ms} ms: "
            f"{row['fixed_shape_ms']} ms; only the batch new {row['new_batch_only_ms']} ms, "
            f"only the length new {row['new_length_only_ms']} ms",
            flush=True,
        )
    torch.backends.cudnn.enabled = True
    recommended = min(modes, key=lambda m: modes[m]["first_call_ms"]["mean"])
    print(f"recommended for streaming (new shapes cost least): --cudnn {recommended}")
    data = {
        **reporting.result_header(args, info, bench),
        "dtype": args.dtype,
        "modes": modes,
        "recommended": recommended,
    }
    reporting.save_results(data, args, plot)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    modes = list(data["modes"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = ["new shape, 1st call", "same shape, 2nd call", "fixed shape (median)"]
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        row = data["modes"][mode]
        values = [row["first_call_ms"]["mean"], row["second_call_ms"], row["fixed_shape_ms"]]
        ax.bar([x + i * width for x in range(3)], values, width, label=f"cuDNN {mode}")
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(3)], labels, fontsize=8)
    ax.set_ylabel("ms per model call")
    ax.set_title(f"{data['model']} {data['dtype']} on {machine.machine_label(data['machine'])}")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="base-random", help="as for engine_throughput")
    p.add_argument("--device", default="cuda", help="cuda or cpu (default: %(default)s)")
    p.add_argument("--dtype", default="fp16", help="fp16, bf16 or fp32 (default: %(default)s)")
    p.add_argument(
        "--modes",
        default=["on", "off"],
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        help="cuDNN modes to compare, comma-separated (default: on,off)",
    )
    p.add_argument("--shapes", type=int, default=24, help="new shapes per mode")
    p.add_argument("--max-batch", type=int, default=128, help="largest random batch")
    p.add_argument("--budget-s", type=float, default=25.0, help="seconds per mode at most")
    p.add_argument("--fixed-batch", type=int, default=64, help="batch of the fixed shape")
    p.add_argument("--fixed-ms", type=int, default=2160, help="window of the fixed shape")
    p.add_argument("--split", type=int, default=6, help="calls with only the batch (length) new")
    p.add_argument(
        "--profile", type=int, default=0, metavar="ROWS", help="profile one new shape per mode"
    )
    cli.add_result_options(
        p, "added to the result file names", "where results go (default: benchmarks/results)"
    )
    return cli.parse_benchmark_args(p, "shape_cost", argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
