"""Does ``torch.compile`` pay for itself on the engine's windows? (issue: keep what helps)

Times ``LoadedModel.infer`` eagerly and after ``torch.compile(dynamic=False)`` for the
default steady-state window at a few batch sizes, and how long compiling each shape takes.
The engine sees every batch size from 1 to ``--max-batch`` and one window length per
left-context step, so a fixed-shape compile pays its compile time for each of them.

    python -m benchmarks.compile_check                 # tiny-en, batches 1,4,16

Writes ``benchmarks/results/compile_check-<machine>.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks import cli, machine, models, reporting


def _time_ms(fn: Any, batch: np.ndarray, repeats: int) -> float:
    for _ in range(3):
        fn(batch)
    began = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return round((time.perf_counter() - began) / repeats * 1000, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from streaming.config import ModelConfig, WindowConfig
    from streaming.model import load_model

    bench = models.resolve_model(args.model)
    info = machine.machine_info("cpu")
    model = load_model(ModelConfig(name=bench.source), threads=args.threads)
    window = WindowConfig()
    length = 16 * (window.left_context_ms + window.chunk_ms + window.right_context_ms)
    rng = np.random.default_rng(0)
    batches = {b: (rng.standard_normal((b, length)) * 0.1).astype(np.float32) for b in args.batches}
    eager = {b: _time_ms(model.infer, x, args.repeats) for b, x in batches.items()}
    model.model = torch.compile(model.model, dynamic=args.dynamic)
    rows = []
    for b, x in batches.items():
        began = time.perf_counter()
        model.infer(x)  # the first call compiles this shape
        compile_s = round(time.perf_counter() - began, 1)
        compiled = _time_ms(model.infer, x, args.repeats)
        rows.append(
            {
                "batch": b,
                "window_ms": length // 16,
                "eager_ms": eager[b],
                "compiled_ms": compiled,
                "speedup": round(eager[b] / compiled, 3),
                "compile_s": compile_s,
            }
        )
    reporting.print_table(rows, list(rows[0]), "torch.compile vs eager (ms per model call)")
    return {
        **reporting.result_header(args, info, bench),
        "threads": args.threads,
        "dynamic": args.dynamic,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="see engine_throughput --help")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="one graph for every batch size and length (torch.compile(dynamic=True))",
    )
    cli.add_result_options(p, "added to the result file name")
    args = cli.parse_benchmark_args(p, "compile_check", argv)
    reporting.save_results(run(args), args, lead="\n")


if __name__ == "__main__":
    main()
