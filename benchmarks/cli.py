"""The command line every benchmark shares: its docstring as ``--help``, ``--tag`` and
``--results-dir``, and the command that started it (kept in the result file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def arg_parser(description: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring, kept as written, is the ``--help`` text."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_result_options(
    p: argparse.ArgumentParser, tag_help: str | None = None, dir_help: str | None = None
) -> None:
    """``--tag`` (added to the result file names) and ``--results-dir``."""
    p.add_argument("--tag", default="", help=tag_help)
    p.add_argument("--results-dir", type=Path, default=None, help=dir_help)


def parse_benchmark_args(
    p: argparse.ArgumentParser, benchmark: str, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``p.parse_args(argv)`` plus ``benchmark`` and ``command_line`` (how it was started,
    for the result file)."""
    args = p.parse_args(argv)
    args.benchmark = benchmark
    args.command_line = f"python -m benchmarks.{benchmark} " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    return args
