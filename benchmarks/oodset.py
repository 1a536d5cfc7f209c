"""The out-of-domain evaluation sets (and in-domain sentences read by the same voices), as
the benchmarks see them.

Which sentences and voices make the sets is training's knowledge (``python -m training.ood``:
sentences from sources the training text never drew from, read by training voices and by
voices held out from training); this module runs its ``render`` command and reads the list
it writes, so the benchmarks never import ``training``. Audio is cached under
``benchmarks/out/ood/`` (git-ignored).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.paths import OUT_DIR, REPO
from benchmarks.testset import SAMPLE_RATE

OOD_DIR = OUT_DIR / "ood"
IN_DOMAIN = "in-domain"


@dataclass(frozen=True)
class SetUtterance:
    """One rendered sentence: its label, voice, voice group and category."""

    id: str
    text: str
    voice: str
    group: str  # "training" (voices trained on) or "held-out" (never trained on)
    category: str  # "in-domain" or an out-of-domain category ("docs", "names", ...)
    path: Path

    @property
    def domain(self) -> str:
        return IN_DOMAIN if self.category == IN_DOMAIN else "out-of-domain"

    def audio(self) -> np.ndarray:
        import soundfile as sf

        data, rate = sf.read(str(self.path), dtype="float32")
        assert rate == SAMPLE_RATE
        return np.asarray(data, dtype=np.float32)


def ood_utterances(
    in_domain: int, per_category: int | None = None, *, out_dir: Path = OOD_DIR
) -> list[SetUtterance]:
    """``in_domain`` in-domain test sentences and the out-of-domain sentences (the first
    ``per_category`` of each category, else all), each read once by a training voice and
    once by a held-out voice; rendered on first use by ``python -m training.ood render``."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "selection.json"
        command = [
            sys.executable, "-m", "training.ood", "render", "--out", str(out_dir.resolve()),
            "--in-domain", str(in_domain), "--list", str(listing),
        ]  # fmt: skip
        if per_category is not None:
            command += ["--per-category", str(per_category)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ValueError(f"python -m training.ood render failed: {tail[0]}")
        selection = json.loads(listing.read_text(encoding="utf-8"))
    return [
        SetUtterance(
            item["id"],
            item["text"],
            item["voice"],
            item["group"],
            item["category"],
            Path(item["path"]),
        )
        for item in selection
    ]
