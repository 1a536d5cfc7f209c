"""The PNG beside each result file, drawn with matplotlib when it is installed (a GPU
machine often has none: ``python -m benchmarks.plots FOLDER`` draws them later from the
JSON). matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.paths import result_path


def save_figure(fig: Any, name: str, slug: str, results_dir: Path | None = None) -> Path:
    path = result_path(name, slug, ".png", results_dir)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def maybe_plot(
    plot: Any, data: dict[str, Any], name: str, slug: str, results_dir: Path | None
) -> Path | None:
    """Draw the PNG when matplotlib is installed (else say so: ``python -m
    benchmarks.plots FOLDER`` draws it later from the JSON)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no PNG (python -m benchmarks.plots draws it later)")
        return None
    path: Path = plot(data, name, slug, results_dir)
    print(f"wrote {path}")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot with a non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
