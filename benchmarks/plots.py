"""Redraw the PNG of every benchmark JSON in a folder (e.g. results brought back from a GPU
machine that had no matplotlib).

    python -m benchmarks.plots benchmarks/results/gpu-h100
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import cli, figures, machine, paths


def plotter(benchmark: str) -> Any:
    from benchmarks import accuracy, engine_throughput, live_load, noise, peer, shape_cost, soak

    return {
        "engine_throughput": engine_throughput.plot,
        "live_load": live_load.plot,
        "accuracy": accuracy.plot,
        "peer": peer.plot,
        "noise": noise.plot,
        "soak": soak.plot,
        "shape_cost": shape_cost.plot,
    }[benchmark]


def main(argv: list[str] | None = None) -> None:
    p = cli.arg_parser(__doc__)
    p.add_argument("folder", type=Path, nargs="?", default=paths.RESULTS_DIR)
    args = p.parse_args(argv)
    for path in sorted(args.folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "benchmark" not in data:
            continue
        slug = machine.machine_slug(data["machine"])
        name = path.stem.partition("-" + slug)[0]
        try:
            figures.maybe_plot(plotter(data["benchmark"]), data, name, slug, args.folder)
        except (KeyError, TypeError, ValueError) as exc:  # e.g. peer JSON keeps no samples
            print(f"{path.name}: cannot redraw from the JSON alone ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
