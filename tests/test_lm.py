"""LM beam search (streaming/lm.py) and the LM build script (training/lm.py).

The decoder tests need the optional ``lm`` extra (pyctcdecode, kenlm) and are skipped
without it; the lmplz test needs a compiled lmplz (``python -m training.lm`` makes one).
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from streaming.decoding import CtcVocab, best_path, greedy_words, words_text
from streaming.lm import INSTALL_HINT, LMDecoder, arpa_unigrams

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "streaming" / "models" / "tiny-en"
VOCAB: dict[str, int] = json.loads((MODEL_DIR / "vocab.json").read_text(encoding="utf-8"))

# A hand-written bigram LM that knows "the cat sat" but not "cad".
ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-0.7\t</s>\t0
-0.7\tthe\t-0.3
-0.7\tcat\t-0.3
-0.7\tsat\t-0.3

\\2-grams:
-0.1\t<s> the
-0.1\tthe cat
-0.1\tcat sat
-0.1\tsat </s>

\\end\\
"""


SPECIALS = ("<s>", "</s>", "<unk>")


def frames(spec: list[dict[str, float]]) -> np.ndarray:
    """(frames, vocab) log-probs: each frame gives some tokens a probability, the other
    characters share what is left ("_" = blank, " " = delimiter, letters lowercase);
    like a trained CTC model, it all but never emits the special tokens."""
    names = {"_": "<pad>", " ": "|"}
    out = np.zeros((len(spec), len(VOCAB)), np.float64)
    for t, probs in enumerate(spec):
        out[t] = (1.0 - sum(probs.values())) / (len(VOCAB) - len(probs) - len(SPECIALS))
        out[t, [VOCAB[s] for s in SPECIALS]] = 1e-6
        for token, p in probs.items():
            out[t, VOCAB[names.get(token, token.upper())]] = p
    return np.log(out).astype(np.float32)


def spell(text: str) -> list[dict[str, float]]:
    """Each character confidently, separated by blanks."""
    return [f for ch in text for f in ({ch: 0.9}, {"_": 0.9})]


# "the cad sat" by a small margin: greedy writes "cad", the LM should prefer "cat".
CAD = frames([*spell("the ca"), {"d": 0.5, "t": 0.4}, {"_": 0.9}, *spell(" sat")])


def greedy(log_probs: np.ndarray) -> str:
    ids, probs = best_path(log_probs)
    return words_text(greedy_words(ids, probs, CtcVocab.from_vocab(VOCAB)))


@pytest.fixture
def arpa(tmp_path: Path) -> Path:
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA, encoding="utf-8")
    return path


def test_arpa_unigrams_plain_and_gzip(arpa: Path, tmp_path: Path) -> None:
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    assert arpa_unigrams(arpa) == arpa_unigrams(gz) == ["the", "cat", "sat"]
    (tmp_path / "bad.arpa").write_text("not an arpa file\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no unigrams"):
        arpa_unigrams(tmp_path / "bad.arpa")


def test_missing_packages_give_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyctcdecode", None)
    monkeypatch.setitem(sys.modules, "pyctcdecode.decoder", None)
    with pytest.raises(ImportError, match="pyctcdecode") as info:
        LMDecoder(CtcVocab.from_vocab(VOCAB))
    assert INSTALL_HINT in str(info.value)


@pytest.fixture
def lm_packages() -> None:
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")


@pytest.mark.usefixtures("lm_packages")
def test_lm_fixes_the_word_greedy_gets_wrong(arpa: Path) -> None:
    vocab = CtcVocab.from_vocab(VOCAB)
    assert greedy(CAD) == "the cad sat"
    assert LMDecoder(vocab).decode(CAD) == "the cad sat"  # beam search alone agrees
    assert LMDecoder(vocab, arpa).decode(CAD) == "the cat sat"


@pytest.mark.usefixtures("lm_packages")
def test_lm_does_not_override_clear_acoustics(arpa: Path) -> None:
    clear = frames(spell("the cad sat"))
    assert LMDecoder(CtcVocab.from_vocab(VOCAB), arpa).decode(clear) == "the cad sat"


@pytest.mark.usefixtures("lm_packages")
def test_special_tokens_emit_nothing_and_logits_are_accepted(arpa: Path) -> None:
    decoder = LMDecoder.from_model_dir(MODEL_DIR, arpa)
    scores = CAD.copy()
    scores[1, VOCAB["<s>"]] = 2.0  # a special token wins a blank frame
    scores[3, VOCAB["</s>"]] = 2.0
    logits = scores * 1.0 + 7.0  # unnormalised: shifted rows
    assert decoder.decode(logits) == "the cat sat"
    assert decoder.decode(np.zeros((0, len(VOCAB)), np.float32)) == ""
    with pytest.raises(ValueError, match="shape"):
        decoder.decode(np.zeros((4, len(VOCAB) - 1), np.float32))


@pytest.mark.usefixtures("lm_packages")
def test_bundled_lm_loads_and_decodes() -> None:
    if not (MODEL_DIR / "lm.arpa.gz").is_file():
        pytest.skip("no lm.arpa.gz bundled with tiny-en")
    decoder = LMDecoder.from_model_dir(MODEL_DIR)
    lhe = [{"l": 0.5, "t": 0.4}, {"_": 0.9}]  # "lhe" rather than "the"
    noisy = frames([*spell("what is "), *lhe, *spell("he problem")])
    assert greedy(noisy) == "what is lhe problem"
    assert decoder.decode(noisy) == "what is the problem"


def test_lm_text_excludes_held_out_sentences(tmp_path: Path) -> None:
    from training.lm import lm_sentences

    def write(name: str, texts: list[str]) -> None:
        rows = [json.dumps({"id": str(i), "tts": t, "text": t}) for i, t in enumerate(texts)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")

    write("train", ["a b c", "d e f"])
    write("valid", ["g h i"])
    write("test", ["j k l"])
    assert lm_sentences(tmp_path) == ["a b c", "d e f"]
    write("test", ["j k l", "d e f"])
    with pytest.raises(ValueError, match="held-out"):
        lm_sentences(tmp_path)


def _lmplz() -> Path:
    from training.lm import KENLM_DIR

    found = shutil.which("lmplz")
    built = KENLM_DIR / "build" / "bin" / "lmplz"
    if found:
        return Path(found)
    if built.is_file():
        return built
    pytest.skip("lmplz not compiled (python -m training.lm builds it)")


def test_lmplz_build_is_deterministic_and_kenlm_reads_it(tmp_path: Path) -> None:
    from training.lm import build_lm

    lmplz = _lmplz()
    sentences = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 5
    first = build_lm(sentences, tmp_path / "a.arpa.gz", order=3, lmplz=lmplz)
    second = build_lm(sentences, tmp_path / "b.arpa.gz", order=3, lmplz=lmplz)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(arpa_unigrams(first)) == sorted(set(" ".join(sentences).split()))
    kenlm = pytest.importorskip("kenlm")
    model = kenlm.Model(str(first))
    assert model.order == 3
    assert model.score("the cat sat on the mat") > model.score("the mat sat on the cat")


@pytest.mark.usefixtures("lm_packages")
def test_decoded_words_carry_their_frame_spans(arpa: Path) -> None:
    words = LMDecoder(CtcVocab.from_vocab(VOCAB), arpa).decode_words(CAD)
    assert [w for w, _, _ in words] == ["the", "cat", "sat"]
    spans = [(start, end) for _, start, end in words]
    assert all(0 <= start < end <= len(CAD) for start, end in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "in order, not overlapping"


@pytest.mark.usefixtures("lm_packages")
async def test_server_sends_lm_finals_by_default_that_beat_greedy_on_words() -> None:
    """The bundled model + its LM through the real server with the default settings
    (``--lm auto``): spoken words come back spelled as words, better than the greedy finals
    (``--lm none``) of the same audio."""
    from audio_fixtures import speech_with_pauses, to_s16
    from compat_support import cer
    from conftest import server_config
    from wsclient import of_type, stream_pcm

    from streaming.config import LmConfig
    from streaming.server import Server

    if not (MODEL_DIR / "lm.arpa.gz").is_file():
        pytest.skip("no lm.arpa.gz bundled with tiny-en")
    # Long words leave greedy misspellings for the LM to fix even as the model improves.
    sentences = [
        "it is a good day to go to the market",
        "she put the red bags into the car",
        "some people need letters of introduction",
    ]
    audio, _ = speech_with_pauses(sentences, pause_s=1.5)
    finals: dict[str, list[str]] = {}
    for lm in ("none", "default", "no-early-commits"):
        config = server_config(MODEL_DIR)
        if lm == "none":
            config = config.replace(lm=LmConfig(path="none"))
        elif lm == "no-early-commits":
            config = config.replace(lm=LmConfig(early_commits=False))
        async with Server(config) as server:
            # Three times real time: the windows (and the early-commit searches) come as live.
            pace = 0.03 if lm == "default" else 0.0
            messages, code = await stream_pcm(server.url, to_s16(audio), pace=pace)
            assert code == 1000
            finals[lm] = [str(f["text"]) for f in of_type(messages, "final")]
            health = server.health()
            if lm == "default":
                assert health["lm"] == str(MODEL_DIR / "lm.arpa.gz")
                assert health["lm_finals"] == len(sentences)
                # Early commits: words commit before their final, which starts with them.
                last: dict[object, str] = {}
                for p in of_type(messages, "partial"):
                    assert str(p["committed"]).startswith(last.get(p["utterance_id"], ""))
                    last[p["utterance_id"]] = str(p["committed"])
                assert any(last.values()), "no word committed before its final"
                for f in of_type(messages, "final"):
                    assert str(f["text"]).startswith(last.get(f["utterance_id"], ""))
            elif lm == "no-early-commits":  # the same LM finals, nothing committed before
                assert health["lm_finals"] == len(sentences)
                assert all(p["committed"] == "" for p in of_type(messages, "partial"))
            else:
                assert health["lm"] is None and health["lm_finals"] == 0

    def word_errors(texts: list[str]) -> int:  # edit distance over words (cer on lists)
        return sum(
            round(cer(h.split(), r.split()) * len(r.split())) for h, r in zip(texts, sentences)
        )

    assert len(finals["default"]) == len(sentences)
    lm_words = {w for text in finals["default"] for w in text.split()}
    assert lm_words <= set(arpa_unigrams(MODEL_DIR / "lm.arpa.gz")), "LM finals are LM words"
    assert word_errors(finals["default"]) < word_errors(finals["none"]), finals
