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

import functools
import gzip
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import LmConfig
from .decoding import CtcVocab
from .hotwords import Hotword

LM_FILENAME = "lm.arpa.gz"
INSTALL_HINT = "pip install 'wav2vec2-streaming[lm]'  (or: pip install pyctcdecode kenlm)"
# Tuned for the bundled tiny-en model on its validation split (training/evaluate.py
# --tune-lm); a stronger acoustic model usually wants a smaller alpha. One source: LmConfig.
DEFAULT_ALPHA = LmConfig.alpha
DEFAULT_BETA = LmConfig.beta
DEFAULT_BEAM_WIDTH = LmConfig.beam_width
# pyctcdecode's defaults (pyctcdecode.constants), for the hotword path that calls its search
# directly: beams this far below the best are dropped; tokens this unlikely are skipped.
_PRUNE_LOGP = -10.0
_TOKEN_MIN_LOGP = -5.0
_UNK_LOGP_OFFSET = -10.0  # what pyctcdecode adds to a word its LM does not know (log10)
_MIN_LOGP = math.log(1e-15)
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


class HotwordBoost:
    """One stream's hotwords as pyctcdecode's beam search scores them: its ``HotwordScorer``
    interface (``score``, ``score_partial_token``, ``in``), with a weight per word.

    pyctcdecode's own scorer has one weight for all hotwords; a client may weight each
    phrase. A completed hotword adds its weight to a beam's score; a beam inside one
    gets the weight in proportion to the letters written so far, so the search keeps it
    until the word is complete. With an LM, a hotword the LM does not know would also pay
    the LM's unknown-word penalty, which the boost would first have to repay ("stella"
    lost to "stellabefore"): ``oov_bonus`` is added to such a word's weight to cancel it.
    Negative weights only penalize the completed word, not every word sharing its prefix.
    """

    def __init__(
        self,
        hotwords: Sequence[Hotword],
        *,
        known: frozenset[str] = frozenset(),
        oov_bonus: float = 0.0,
    ) -> None:
        weights: dict[str, float] = {}
        for item in hotwords:
            for word in item.words:
                if abs(item.weight) > abs(weights.get(word, 0.0)):
                    weights[word] = item.weight
        self._bonus = {
            word: weight + (oov_bonus if weight > 0 and word not in known else 0.0)
            for word, weight in weights.items()
        }
        # prefix -> (weight, length) of the shortest positive hotword starting with it
        self._prefixes: dict[str, tuple[float, int]] = {}
        for word, weight in sorted(weights.items(), key=lambda item: -len(item[0])):
            if weight > 0:
                for end in range(1, len(word) + 1):
                    self._prefixes[word[:end]] = (weight, len(word))

    def __contains__(self, token: str) -> bool:
        return token in self._prefixes

    def score(self, text: str) -> float:
        """Bonus for every completed hotword in a beam's text (pyctcdecode matches whole
        space-separated words with a regex; a dict look-up per word is the same, and stays
        fast with 100 hotwords: the search asks for every beam at every frame)."""
        bonus = self._bonus
        return sum(bonus.get(word, 0.0) for word in text.split())

    def score_partial_token(self, token: str) -> float:
        """Bonus for a beam inside a hotword, growing with the letters written."""
        found = self._prefixes.get(token)
        return 0.0 if found is None else found[0] * len(token) / found[1]


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
        self._alpha = alpha
        self._has_lm = lm_path is not None
        self._keep = np.array([vocab.blank_id, *others])
        self._merge = np.array(merged, dtype=np.int64)
        self._size = size
        self.beam_width = beam_width
        if lm_path is not None and unigrams is None:
            unigrams = arpa_unigrams(lm_path)
        self._known = frozenset(unigrams or ())
        self.boost = functools.lru_cache(maxsize=256)(self._boost)
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

    @property
    def has_lm(self) -> bool:
        return self._has_lm

    def _boost(self, hotwords: tuple[Hotword, ...]) -> HotwordBoost:
        """The scorer for one hotword list (cached: a stream decodes many finals with it)."""
        oov = -self._alpha * _UNK_LOGP_OFFSET / math.log10(math.e) if self._has_lm else 0.0
        return HotwordBoost(hotwords, known=self._known, oov_bonus=oov)

    def decode(self, log_probs: np.ndarray, hotwords: Sequence[Hotword] = ()) -> str:
        """Lowercase text of one utterance from its (frames, vocab) log-probs (or logits)."""
        return " ".join(word for word, _, _ in self.decode_words(log_probs, hotwords))

    def _start_state(self, context: Sequence[str]) -> Any:
        """The LM's state after the sentence start and ``context`` (None: the start alone).

        Only the last ``order - 1`` words can matter to an n-gram LM."""
        lm = self._decoder._language_model
        if not context or lm is None:
            return None
        state = lm.get_start_state()
        for word in context[-max(1, lm.order - 1) :]:
            _, state = lm.score(state, word)
        return state

    def decode_words(
        self,
        log_probs: np.ndarray,
        hotwords: Sequence[Hotword] = (),
        context: Sequence[str] = (),
    ) -> list[tuple[str, int, int]]:
        """The best beam's words with their ``[start, end)`` frames, in order; ``hotwords``
        are favoured (see :class:`HotwordBoost`). ``context``: the words already decided
        before these frames (early commits), which the LM continues from."""
        x = np.asarray(log_probs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._size:
            raise ValueError(f"expected (frames, {self._size}) scores, got shape {x.shape}")
        if x.shape[0] == 0:
            return []
        x = x - _logsumexp(x)  # logits are accepted too
        columns = x[:, self._keep]
        if self._merge.size:
            columns[:, 0] = np.logaddexp(columns[:, 0], _logsumexp(x[:, self._merge])[:, 0])
        if hotwords:
            # decode_beams takes one weight for every hotword; its search itself takes any
            # scorer (the same call decode_beams makes, after the same clipping).
            beams = self._decoder._decode_logits(
                np.clip(columns, _MIN_LOGP, 0.0),
                beam_width=self.beam_width,
                beam_prune_logp=_PRUNE_LOGP,
                token_min_logp=_TOKEN_MIN_LOGP,
                prune_history=False,
                hotword_scorer=self.boost(tuple(hotwords)),
                lm_start_state=self._start_state(context),
            )
        else:
            beams = self._decoder.decode_beams(
                columns, beam_width=self.beam_width, lm_start_state=self._start_state(context)
            )
        frames = beams[0][2] if beams else []
        return [(word, int(start), int(end)) for word, (start, end) in frames if word.strip()]
