"""The audio benchmarks stream: held-out sentences read by training voices, alone or
joined into multi-utterance session files, else the committed demo WAVs.

The sentences and voices are training's (``python -m training.testset`` renders them);
this module runs that command and reads the files it writes, so the benchmarks never
import ``training``. Everything is cached under ``benchmarks/out/testset/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.paths import OUT_DIR, REPO

SAMPLE_RATE = 16000

TESTSET_DIR = OUT_DIR / "testset"


@dataclass
class HeldOutUtterance:
    id: str
    text: str
    voice: str
    path: Path

    def audio(self) -> np.ndarray:
        import soundfile as sf

        data, rate = sf.read(str(self.path), dtype="float32")
        assert rate == SAMPLE_RATE
        return np.asarray(data, dtype=np.float32)


def held_out_utterances(
    count: int,
    voices: Sequence[str] | None = None,
    min_words: int = 4,
    max_words: int = 14,
    *,
    out_dir: Path = TESTSET_DIR,
    text_dir: Path | None = None,
) -> list[HeldOutUtterance]:
    """``count`` held-out sentences, voices round-robin (training's test voices unless
    ``voices``); rendered once by ``python -m training.testset`` into ``out_dir``, then
    cached. ``text_dir``: where training's ``test.jsonl`` is, when not in its default."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "selection.json"
        command = [
            sys.executable, "-m", "training.testset", "--count", str(count),
            "--min-words", str(min_words), "--max-words", str(max_words),
            "--out", str(out_dir), "--list", str(listing),
        ]  # fmt: skip
        if voices is not None:
            command += ["--voices", *voices]
        if text_dir is not None:
            command += ["--text", str(text_dir)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ValueError(f"python -m training.testset failed: {tail[0]}")
        selection = json.loads(listing.read_text(encoding="utf-8"))
    return [
        HeldOutUtterance(item["id"], item["text"], item["voice"], Path(item["path"]))
        for item in selection
    ]


@dataclass
class ComposedFile:
    """Several utterances separated by silence, written as one WAV."""

    path: Path
    duration_s: float
    segments: list[dict[str, Any]] = field(default_factory=list)  # text, voice, start, end (s)

    @property
    def reference(self) -> str:
        return " ".join(s["text"] for s in self.segments)


def compose_file(
    name: str,
    utterances: Sequence[HeldOutUtterance],
    gaps_s: Sequence[float] = (1.2,),
    lead_s: float = 0.5,
    tail_s: float = 1.0,
) -> ComposedFile:
    """Write ``benchmarks/out/testset/sessions/<name>.wav``: lead, utt, gap, utt, …, tail."""
    import soundfile as sf

    pieces = [np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)]
    cursor = len(pieces[0])
    segments = []
    for i, utt in enumerate(utterances):
        audio = utt.audio()
        segments.append(
            {
                "text": utt.text,
                "voice": utt.voice,
                "start": cursor / SAMPLE_RATE,
                "end": (cursor + len(audio)) / SAMPLE_RATE,
            }
        )
        gap = tail_s if i == len(utterances) - 1 else gaps_s[i % len(gaps_s)]
        silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
        pieces += [audio, silence]
        cursor += len(audio) + len(silence)
    path = TESTSET_DIR / "sessions" / f"{name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.concatenate(pieces), SAMPLE_RATE, subtype="PCM_16")
    return ComposedFile(path, cursor / SAMPLE_RATE, segments)


def session_files(count: int, per_file: int = 3, offset: int = 0) -> list[ComposedFile]:
    """``count`` multi-utterance files from the test set (gaps 1.0–1.5 s).

    Where the test set cannot be rendered (no training text or no TTS engines, e.g. on a
    GPU box), falls back to the committed ``training/samples/*.wav``.
    """
    try:
        utts = held_out_utterances(offset + count * per_file)[offset:]
    except (ImportError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"[bench] test set unavailable ({exc}); using training/samples/", file=sys.stderr)
        return sample_files()
    files = []
    for i in range(count):
        chunk = utts[i * per_file : (i + 1) * per_file]
        files.append(compose_file(f"s{offset}-{i}-{per_file}", chunk, gaps_s=(1.2, 1.5, 1.0)))
    return files


def sample_files() -> list[ComposedFile]:
    """The committed demo WAVs with their transcripts (``training/samples/samples.json``)."""
    folder = REPO / "training" / "samples"
    manifest = json.loads((folder / "samples.json").read_text())
    return [
        ComposedFile(folder / name, float(entry["duration"]), list(entry["sentences"]))
        for name, entry in manifest.items()
        if not name.startswith("_")
    ]
