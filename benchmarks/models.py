"""Which weights a benchmark runs: ``--model`` names (``tiny-en``, random models of a
given shape, a folder or hub id) resolved to something ``from_pretrained`` loads, with the
fingerprint that ties a result to its weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.paths import OUT_DIR

MODELS_DIR = OUT_DIR / "models"


@dataclass(frozen=True)
class BenchModel:
    """What ``--model`` resolved to: something ``from_pretrained`` loads, and a label."""

    source: str
    label: str
    note: str = ""

    @property
    def described(self) -> str:
        """The label, and the note in brackets when there is one."""
        return self.label + (f" ({self.note})" if self.note else "")


def resolve_model(name: str) -> BenchModel:
    """Resolve a benchmark model name.

    * ``tiny-en``: the bundled model; while it is not exported yet, a snapshot of the
      training checkpoint (``benchmarks/out/models/tiny-en-snapshot``, made by
      ``python -m training.export --out …``);
    * ``tiny-en-random``: random weights in the bundled model's exact shape, read from its
      ``config.json`` (speed only);
    * ``base-random`` / ``tiny-random``: random weights in wav2vec2-base's shape / the test
      suite's toy shape (speed only);
    * anything else: a folder or hub id, passed to ``from_pretrained`` unchanged.
    """
    if name == "tiny-en":
        from streaming.model import bundled_model_path

        bundled = bundled_model_path("tiny-en")
        if bundled is not None:
            return BenchModel(str(bundled), "tiny-en")
        snapshot = MODELS_DIR / "tiny-en-snapshot"
        if (snapshot / "config.json").is_file():
            return BenchModel(
                str(snapshot),
                "tiny-en-snapshot",
                "bundled model not exported yet: a snapshot of the training checkpoint",
            )
        raise FileNotFoundError(
            f"tiny-en: no bundled model and no snapshot in {snapshot} (see training/README.md)"
        )
    if name in ("tiny-en-random", "base-random", "tiny-random"):
        return _random_model(name)
    return BenchModel(name, Path(name).name if Path(name).exists() else name)


def model_fingerprint(source: str) -> dict[str, Any]:
    """Which weights a result was measured with (the bundled model is re-exported as it
    trains): training step from MODEL_CARD.md and a hash of the weights file."""
    import hashlib

    folder = Path(source)
    out: dict[str, Any] = {"source": source}
    card = folder / "MODEL_CARD.md"
    if card.is_file():
        m = re.search(r"This checkpoint: step (\d+)", card.read_text(encoding="utf-8"))
        out["training_step"] = int(m.group(1)) if m else None
        m = re.search(r"validation CER ([0-9]+\.[0-9]+)", card.read_text(encoding="utf-8"))
        out["validation_cer"] = float(m.group(1)) if m else None
    for weights in ("model.safetensors", "pytorch_model.bin"):
        if (folder / weights).is_file():
            digest = hashlib.sha256((folder / weights).read_bytes()).hexdigest()
            out["weights_sha256"] = digest[:16]
            break
    return out


def freeze_model(bench: BenchModel) -> BenchModel:
    """Copy a local model folder under benchmarks/out/models/ so that every part of a long
    run (in-process model, HF pipeline, server subprocess) reads the same weights even if
    training re-exports the bundled model meanwhile."""
    import shutil

    folder = Path(bench.source)
    if not folder.is_dir() or folder.is_relative_to(MODELS_DIR):
        return bench
    frozen = MODELS_DIR / f"{bench.label}-frozen"
    tmp = MODELS_DIR / f".{bench.label}-frozen.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    shutil.rmtree(frozen, ignore_errors=True)
    tmp.rename(frozen)
    return BenchModel(str(frozen), bench.label, bench.note)


def _random_model(name: str) -> BenchModel:
    path = MODELS_DIR / name
    if name == "tiny-en-random":
        _make_tiny_en_random(path)
    elif not (path / "config.json").is_file():
        from streaming.random_model import make_random_model

        make_random_model(path, "base" if name == "base-random" else "tiny")
    return BenchModel(str(path), name, "random weights: speed only, its text is meaningless")


#: What makes two Wav2Vec2 configs the same shape (same compute).
_SHAPE_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "conv_dim", "conv_kernel", "conv_stride", "num_conv_pos_embeddings", "vocab_size",
)  # fmt: skip
#: The files of an exported model that are not its weights (or card, or LM).
_PROCESSOR_FILES = (
    "preprocessor_config.json", "tokenizer_config.json", "vocab.json", "special_tokens_map.json",
)  # fmt: skip


def _make_tiny_en_random(path: Path) -> None:
    """Random weights in the exact shape of the bundled model (else of the training
    snapshot): its ``config.json`` and processor files, which training's export writes,
    are read rather than training's code imported. A cached copy of another shape (the
    bundled model grew) is made again."""
    from streaming.model import bundled_model_path

    source = bundled_model_path("tiny-en") or MODELS_DIR / "tiny-en-snapshot"
    if not (source / "config.json").is_file():
        raise FileNotFoundError(
            "tiny-en-random takes its shape from the bundled model (streaming/models/tiny-en)"
            f" or {source}: neither is there"
        )
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    cached = path / "config.json"
    if cached.is_file():
        made = json.loads(cached.read_text(encoding="utf-8"))
        if all(made.get(k) == config.get(k) for k in _SHAPE_KEYS):
            return
    import shutil

    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(config))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    for name in _PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, path / name)


def load_bench_model(
    name: str, device: str = "cpu", dtype: str = "auto", threads: int | None = None
) -> tuple[Any, BenchModel]:
    """(streaming.model.LoadedModel, BenchModel) for ``name``; dtype as the server picks it."""
    from streaming.config import ModelConfig
    from streaming.model import load_model

    bench = resolve_model(name)
    loaded = load_model(ModelConfig(name=bench.source, device=device, dtype=dtype), threads=threads)
    return loaded, bench
