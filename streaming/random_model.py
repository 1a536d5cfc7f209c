"""Randomly initialised Wav2Vec2ForCTC checkpoints, saved like real ones.

Tests use a tiny one so the real ``from_pretrained`` loading path runs without network;
speed benchmarks use one with ``facebook/wav2vec2-base-960h``'s shape (same compute, no
download).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The 32-token character vocabulary of facebook/wav2vec2-base-960h.
BASE_960H_VOCAB: dict[str, int] = {
    "<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8,
    "N": 9, "I": 10, "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18,
    "C": 19, "F": 20, "G": 21, "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28,
    "J": 29, "Q": 30, "Z": 31,
}  # fmt: skip

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (16, 16, 16, 16, 16, 16, 32),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
    },
    "base": {},  # transformers' defaults are wav2vec2-base's shape
}


def save_processor(path: Path) -> None:
    """Write base-960h-compatible tokenizer and feature-extractor files into ``path``."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.json"
    vocab_file.write_text(json.dumps(BASE_960H_VOCAB))
    tokenizer = Wav2Vec2CTCTokenizer(  # type: ignore[no-untyped-call]
        str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    extractor = Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    processor = Wav2Vec2Processor(  # type: ignore[no-untyped-call]
        feature_extractor=extractor, tokenizer=tokenizer
    )
    processor.save_pretrained(str(path))
    # transformers 5 bundles both into processor_config.json; 4.x reads these two files.
    extractor.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def make_random_model(path: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Create and ``save_pretrained`` a random CTC model of the given size."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        vocab_size=len(BASE_960H_VOCAB),
        pad_token_id=0,
        ctc_loss_reduction="mean",
        **SIZES[size],
    )
    model = Wav2Vec2ForCTC(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    save_processor(path)
    return path
