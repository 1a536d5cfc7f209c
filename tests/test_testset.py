"""The benchmarks' test set and random model, made from what training writes (the held-out
sentences rendered by ``python -m training.testset``, the bundled model's config) rather
than from training's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import models, testset
from streaming.model import bundled_model_path

SENTENCES = [
    ("s1", "the cat sat on the mat.", "the cat sat on the mat"),
    ("s2", "too short.", "too short"),
    ("s3", "a dog ran across the road.", "a dog ran across the road"),
    ("s4", "the sun rose over the quiet hills.", "the sun rose over the quiet hills"),
]
ESPEAK = "espeak:en-us+m3"


def _text_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "text"
    folder.mkdir()
    lines = [json.dumps({"id": i, "tts": tts, "text": text}) for i, tts, text in SENTENCES]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_held_out_sentences_are_rendered_once_in_order_with_their_manifest(
    tmp_path: Path,
) -> None:
    out, text = tmp_path / "testset", _text_dir(tmp_path)
    utts = testset.held_out_utterances(2, [ESPEAK], out_dir=out, text_dir=text)

    assert [u.text for u in utts] == ["the cat sat on the mat", "a dog ran across the road"]
    assert [u.id for u in utts] == ["s1-espeak_en_us_m3", "s3-espeak_en_us_m3"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {u.id: {"text": u.text, "voice": ESPEAK} for u in utts}
    audio = utts[0].audio()
    assert audio.dtype == np.float32 and len(audio) > testset.SAMPLE_RATE // 2
    rendered = [u.path.stat().st_mtime_ns for u in utts]

    again = testset.held_out_utterances(3, [ESPEAK], out_dir=out, text_dir=text)

    assert again[:2] == utts and [u.path.stat().st_mtime_ns for u in utts] == rendered
    assert len(json.loads((out / "manifest.json").read_text())) == 3


def test_asking_for_more_sentences_than_held_out_says_how_many_there_are(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="only 3 test sentences available, 5 asked"):
        testset.held_out_utterances(
            5, [ESPEAK], out_dir=tmp_path / "t", text_dir=_text_dir(tmp_path)
        )


SHAPE = ("hidden_size", "num_hidden_layers", "intermediate_size", "conv_dim", "vocab_size")


def _config(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "config.json").read_text())
    return data


def test_tiny_en_random_has_the_bundled_models_shape_and_is_remade_when_that_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = bundled_model_path("tiny-en")
    assert bundled is not None
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)

    bench = models.resolve_model("tiny-en-random")

    made = Path(bench.source)
    assert {k: _config(made)[k] for k in SHAPE} == {k: _config(bundled)[k] for k in SHAPE}
    assert json.loads((made / "preprocessor_config.json").read_text())["return_attention_mask"]
    assert (made / "vocab.json").read_text() == (bundled / "vocab.json").read_text()
    weights = (made / "model.safetensors").stat().st_mtime_ns
    assert models.resolve_model("tiny-en-random") == bench  # cached: not made again
    assert (made / "model.safetensors").stat().st_mtime_ns == weights

    stale = _config(made) | {"num_hidden_layers": 1}
    (made / "config.json").write_text(json.dumps(stale))
    models.resolve_model("tiny-en-random")

    assert _config(made)["num_hidden_layers"] == _config(bundled)["num_hidden_layers"]
