"""Model definition, vocabulary, processor and greedy CTC decoding.

The vocabulary and processor files match ``facebook/wav2vec2-base-960h``
exactly (UPPERCASE letters, ``|`` word delimiter, ``<pad>`` = blank = id 0),
so the server can swap this tiny model for a real checkpoint without any
change.  The conv front end keeps the standard strides and kernels (20 ms /
320-sample frames, which the streaming server relies on) but uses far fewer
channels: the raw-waveform convolutions dominate CPU cost at 16 kHz.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streaming.random_model import BASE_960H_VOCAB

if TYPE_CHECKING:
    from transformers import Wav2Vec2Config, Wav2Vec2Processor

SAMPLE_RATE = 16000
VOCAB: dict[str, int] = dict(BASE_960H_VOCAB)  # the server swaps in a real checkpoint as is
ID_TO_CHAR = {i: c for c, i in VOCAB.items()}
BLANK_ID = VOCAB["<pad>"]
DELIMITER_ID = VOCAB["|"]
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)


@dataclass
class ModelSize:
    """The knobs that set model size and speed (everything else is fixed)."""

    hidden: int = 256
    layers: int = 6
    heads: int = 4
    ffn: int = 1024
    conv_dim: tuple[int, ...] = (32, 64, 64, 128, 128, 256, 256)
    pos_conv_kernel: int = 64
    pos_conv_groups: int = 16


def size_of(config: Any) -> ModelSize:
    """The ``ModelSize`` of an existing ``Wav2Vec2Config`` (the inverse of ``build_config``).

    A warm start (``--init-from``) or a grown model has its own size, not the default one;
    the run's config and log must say what is really trained.
    """
    return ModelSize(
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        ffn=config.intermediate_size,
        conv_dim=tuple(config.conv_dim),
        pos_conv_kernel=config.num_conv_pos_embeddings,
        pos_conv_groups=config.num_conv_pos_embedding_groups,
    )


def build_config(size: ModelSize, mask_time_prob: float = 0.05) -> Wav2Vec2Config:
    """Return the ``Wav2Vec2Config`` of a small from-scratch CTC model.

    Pre-LayerNorm (``do_stable_layer_norm``) with ``feat_extract_norm="layer"``
    trains stably at the high learning rates a small from-scratch model needs;
    dropout and layerdrop are off because the model sees each utterance only
    a few times (under-fitting, not over-fitting, is the risk).
    """
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=size.ffn,
        conv_dim=list(size.conv_dim),
        conv_stride=list(CONV_STRIDE),
        conv_kernel=list(CONV_KERNEL),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=size.pos_conv_kernel,
        num_conv_pos_embedding_groups=size.pos_conv_groups,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=mask_time_prob,
        mask_time_length=5,
        mask_feature_prob=0.0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        pad_token_id=VOCAB["<pad>"],
        bos_token_id=VOCAB["<s>"],
        eos_token_id=VOCAB["</s>"],
        architectures=["Wav2Vec2ForCTC"],
    )


def build_processor() -> Wav2Vec2Processor:
    """Return a processor configured exactly like ``facebook/wav2vec2-base-960h``'s,
    except ``return_attention_mask=True`` (required with ``feat_extract_norm="layer"``)."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(VOCAB), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(  # type: ignore[no-untyped-call]
            str(vocab_file),
            unk_token="<unk>",
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            word_delimiter_token="|",
            do_lower_case=False,
        )
    extractor = Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]


def encode_text(text: str) -> list[int]:
    """Label ids for a lowercase transcript (space -> ``|``, letters uppercased)."""
    return [DELIMITER_ID if ch == " " else VOCAB[ch.upper()] for ch in text]


def normalize_audio(audio: np.ndarray) -> np.ndarray:
    """Zero-mean / unit-variance, exactly as ``Wav2Vec2FeatureExtractor`` does it."""
    audio = audio.astype(np.float32)
    normed: np.ndarray = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    return normed


def greedy_decode(ids: np.ndarray) -> str:
    """Collapse repeats, drop blanks, map to lowercase text (ids: 1-D frame argmax)."""
    chars = []
    previous = -1
    for idx in ids.tolist():
        if idx != previous and idx != BLANK_ID:
            chars.append(ID_TO_CHAR.get(idx, ""))
        previous = idx
    text = "".join(c for c in chars if len(c) == 1).replace("|", " ")
    return " ".join(text.lower().split())
