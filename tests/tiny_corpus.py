"""A tiny corpus on disk in the layout of ``training/work/corpus`` (``split/engine.jsonl``
manifests whose paths are relative to the corpus folder, FLAC files at 16 kHz), and a
tiny random CTC model to run over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from training.model import ModelSize, build_config

RATE = 16000
WORDS = ["the", "cat", "sat", "on", "a", "red", "mat", "and", "she", "ran", "home", "fast"]


def tone(seconds: float, index: int) -> np.ndarray:
    """A distinct tone per utterance with a little noise (what an utterance sounds like
    does not matter here, only that it is recognisably itself)."""
    rng = np.random.default_rng(index)
    t = np.arange(round(seconds * RATE)) / RATE
    audio = 0.3 * np.sin(2 * np.pi * (200 + 37 * index) * t) + 0.01 * rng.standard_normal(len(t))
    return audio.astype(np.float32)


def write_corpus(
    root: Path, train: dict[str, list[float]], valid: dict[str, list[float]]
) -> dict[str, list[dict[str, Any]]]:
    """Write one utterance per length given (``{engine: [seconds, ...]}`` per split);
    returns the manifest records by split."""
    written: dict[str, list[dict[str, Any]]] = {}
    index = 0
    for split, per_engine in (("train", train), ("valid", valid)):
        written[split] = []
        (root / split).mkdir(parents=True, exist_ok=True)
        for engine, lengths in per_engine.items():
            lines = []
            for i, seconds in enumerate(lengths):
                index += 1
                uid = f"{engine}-{split}{i:03d}-0"
                rel = f"{split}/{engine}/{uid}.flac"
                (root / split / engine).mkdir(exist_ok=True)
                audio = tone(seconds, index)
                sf.write(str(root / rel), audio, RATE)
                text = " ".join(WORDS[(index + k) % len(WORDS)] for k in range(2 + i % 3))
                record = {
                    "id": uid,
                    "path": rel,
                    "text": text,
                    "engine": engine,
                    "split": split,
                    "seconds": round(len(audio) / RATE, 3),
                    "voice": f"test-{engine}",
                }
                lines.append(json.dumps(record))
                written[split].append(record)
            (root / split / f"{engine}.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return written


def tiny_ctc_model() -> Any:
    """A one-layer Wav2Vec2ForCTC with the project's vocabulary, seeded, in eval mode."""
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    size = ModelSize(
        hidden=32,
        layers=1,
        heads=2,
        ffn=64,
        conv_dim=(16,) * 7,
        pos_conv_kernel=16,
        pos_conv_groups=4,
    )
    model = Wav2Vec2ForCTC(build_config(size))
    model.train(False)  # eval mode; newer transformers leave PreTrainedModel.eval untyped
    return model
