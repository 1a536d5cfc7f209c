"""Plot the training log (loss and validation CER against audio hours seen)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_log(log_path: Path, out_path: Path) -> None:
    """Write a two-panel PNG: training loss and validation CER per voice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        json.loads(line)
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    train = [r for r in rows if r.get("event") == "train"]
    valid = [r for r in rows if r.get("event") == "valid"]
    fig, (ax_loss, ax_cer) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["train_hours"] for r in train], [r["loss"] for r in train], lw=0.8)
    ax_loss.set(
        xlabel="training wall-clock hours (2 CPU cores)",
        ylabel="CTC loss",
        yscale="log",
        title="train loss",
    )
    hours = [r["train_hours"] for r in valid]
    ax_cer.plot(hours, [r["cer"] for r in valid], "k-o", ms=3, label="all")
    engines = sorted({k for r in valid for k, v in r.items() if isinstance(v, dict) and "cer" in v})
    for engine in engines:
        ax_cer.plot(
            hours, [r.get(engine, {}).get("cer") for r in valid], "-o", ms=2, lw=0.8, label=engine
        )
    ax_cer.set(
        xlabel="training wall-clock hours (2 CPU cores)",
        ylabel="CER",
        ylim=(0, 1),
        title="validation CER",
    )
    ax_cer.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
