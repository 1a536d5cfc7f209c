"""Where the benchmarks read and write, named once.

``results/`` holds what is committed (JSON and PNG per benchmark and machine); ``out/`` is
git-ignored scratch: server logs, frozen model copies, the rendered test set.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
OUT_DIR = BENCH_DIR / "out"
RESULTS_DIR = BENCH_DIR / "results"


def result_path(name: str, slug: str, suffix: str, results_dir: Path | None = None) -> Path:
    """``<results_dir>/<name>-<slug><suffix>`` (default folder: ``benchmarks/results``)."""
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{slug}{suffix}"
