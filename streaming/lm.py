"""Optional n-gram language-model beam search for CTC output (pyctcdecode + KenLM).

Greedy CTC decoding spells each word from the acoustics alone; a word n-gram LM in a
beam search turns near-misses ("the cad sat") into words the LM knows ("the cat sat").
It is optional: ``pip install 'wav2vec2-streaming[lm]'`` brings pyctcdecode and kenlm,
which are imported only when a decoder is built, so the server never needs them.

The LM is an ARPA file (plain or ``.arpa.gz``; KenLM binaries work too when the
unigrams are given). ``training/lm.py`` builds one from the training text; the bundled
``tiny-en`` model ships it as ``lm.arpa.gz``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .config import LmConfig
from .decoding import CtcVocab

LM_FILENAME = "lm.arpa.gz"
INSTALL_HINT = "pip install 'wav2vec2-streaming[lm]'  (or: pip install pyctcdecode kenlm)"
# Tuned for the bundled tiny-en model on its validation split (training/evaluate.py
# --tune-lm); a stronger acoustic model usually wants a smaller alpha. One source: LmConfig.
DEFAULT_ALPHA = LmConfig.alpha
DEFAULT_BETA = LmConfig.beta
DEFAULT_BEAM_WIDTH = LmConfig.beam_width
_ARPA_SPECIALS = frozenset({"<s>", "</s>", "<unk>"})


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA file (``.gz`` too), without ``<s>``, ``</s>``, ``<unk>``.

    pyctcdecode uses them to tell a word prefix from an out-of-vocabulary word; it only
    reads them itself from uncompressed ``.arpa`` files.
    """
    path = Path(path)
    opener: Any = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        inside = False
        for line in fh:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and line.startswith("\\"):
                break
            elif inside and line:
                fields = line.split("\t")
                if len(fields) >= 2 and fields[1] not in _ARPA_SPECIALS:
                    words.append(fields[1])
    if not words:
        raise ValueError(f"{path}: no unigrams found (not an ARPA file?)")
    return words


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the vocabulary axis, kept as a (frames, 1) column."""
    peak = x.max(axis=1, keepdims=True)
    out: np.ndarray = peak + np.log(np.exp(x - peak).sum(axis=1, keepdims=True))
    return out


class LMDecoder:
    """Beam-search CTC decoder with an optional word n-gram LM (shallow fusion).

    Built from the model's character vocabulary: ``<pad>`` is the blank, ``|`` the word
    delimiter; other special tokens (``<s>``, ``</s>``, ``<unk>``) emit nothing, so their
    probability is added to the blank's, just as greedy decoding drops them. Letters are
    lowercased to match the LM (and the rest of this package's output).
    """

    def __init__(
        self,
        vocab: CtcVocab,
        lm_path: str | Path | None = None,
        *,
        alpha: float = DEFAULT_ALPHA,
        beta: float = DEFAULT_BETA,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        unigrams: Iterable[str] | None = None,
    ) -> None:
        try:
            from pyctcdecode.decoder import build_ctcdecoder

            if lm_path is not None:
                import kenlm  # noqa: F401  (pyctcdecode silently skips a missing kenlm)
        except ImportError as exc:
            raise ImportError(
                f"LM decoding needs the optional packages pyctcdecode and kenlm "
                f"({exc.name} is missing): {INSTALL_HINT}"
            ) from exc
        size = len(vocab.tokens)
        merged = [
            i
            for i in range(size)
            if i != vocab.blank_id and (i in vocab.ignore_ids or not vocab.tokens[i])
        ]
        others = [i for i in range(size) if i != vocab.blank_id and i not in merged]
        labels = [""]
        for i in others:
            token = " " if i == vocab.delimiter_id else vocab.tokens[i]
            if len(token) != 1:
                raise ValueError(f"character vocabulary expected, got token {token!r}")
            labels.append(token)
        self._keep = np.array([vocab.blank_id, *others])
        self._merge = np.array(merged, dtype=np.int64)
        self._size = size
        self.beam_width = beam_width
        if lm_path is not None and unigrams is None:
            unigrams = arpa_unigrams(lm_path)
        self._decoder: Any = build_ctcdecoder(
            labels,
            kenlm_model_path=None if lm_path is None else str(lm_path),
            unigrams=None if unigrams is None else list(unigrams),
            alpha=alpha,
            beta=beta,
        )

    @classmethod
    def from_model_dir(
        cls, model_dir: str | Path, lm_path: str | Path | None = None, **options: Any
    ) -> LMDecoder:
        """Decoder for a saved model folder; ``lm_path`` defaults to its ``lm.arpa.gz``."""
        model_dir = Path(model_dir)
        vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))
        if lm_path is None:
            lm_path = model_dir / LM_FILENAME
            if not lm_path.is_file():
                raise FileNotFoundError(
                    f"{lm_path} not found: build one with python -m training.lm, or pass lm_path"
                )
        return cls(CtcVocab.from_vocab(vocab), lm_path, **options)

    def decode(self, log_probs: np.ndarray) -> str:
        """Lowercase text of one utterance from its (frames, vocab) log-probs (or logits)."""
        return " ".join(word for word, _, _ in self.decode_words(log_probs))

    def decode_words(self, log_probs: np.ndarray) -> list[tuple[str, int, int]]:
        """The best beam's words with their ``[start, end)`` frames, in order."""
        x = np.asarray(log_probs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._size:
            raise ValueError(f"expected (frames, {self._size}) scores, got shape {x.shape}")
        if x.shape[0] == 0:
            return []
        x = x - _logsumexp(x)  # logits are accepted too
        columns = x[:, self._keep]
        if self._merge.size:
            columns[:, 0] = np.logaddexp(columns[:, 0], _logsumexp(x[:, self._merge])[:, 0])
        beams = self._decoder.decode_beams(columns, beam_width=self.beam_width)
        frames = beams[0][2] if beams else []
        return [(word, int(start), int(end)) for word, (start, end) in frames if word.strip()]
