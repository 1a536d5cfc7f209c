"""Growing a trained model (training/grow.py) and the fp16-stored export (training/export.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_corpus import tiny_ctc_model

from training.config import TrainConfig
from training.export import card_history, card_progress, model_card, save_model_dir
from training.grow import grow_layers
from training.grow import main as grow_main
from training.model import build_processor

CARD = """# a model

This checkpoint: step 7, 0.10 h of training-step wall time,
1.0 h of (augmented) audio seen; validation CER 0.500.
"""


def _logits(model: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(audio).logits  # type: ignore[no-any-return]


def test_grown_model_has_more_layers_and_gives_the_same_logits() -> None:
    model = tiny_ctc_model()
    audio = torch.randn(2, 8000)
    before = _logits(model, audio)
    grow_layers(model, [0, 0])
    assert model.config.num_hidden_layers == len(model.wav2vec2.encoder.layers) == 3
    assert torch.equal(_logits(model, audio), before)
    # the new layers are trainable copies, not shared modules
    first, added = model.wav2vec2.encoder.layers[0], model.wav2vec2.encoder.layers[1]
    assert added.attention.q_proj.weight is not first.attention.q_proj.weight
    assert torch.count_nonzero(added.feed_forward.output_dense.weight) == 0


def test_growing_a_post_layer_norm_encoder_is_refused() -> None:
    model = tiny_ctc_model()
    model.config.do_stable_layer_norm = False
    with pytest.raises(ValueError, match="pre-layer-norm"):
        grow_layers(model, [0])


def test_growing_after_a_layer_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.0"):
        grow_layers(tiny_ctc_model(), [1])


def test_grow_cli_writes_a_model_dir_whose_card_records_the_growth(tmp_path: Path) -> None:
    source, out = tmp_path / "src", tmp_path / "grown"
    tiny_ctc_model().save_pretrained(source)
    build_processor().save_pretrained(source)
    (source / "MODEL_CARD.md").write_text(CARD, encoding="utf-8")

    grow_main(["--from", str(source), "--out", str(out), "--after", "0"])

    from transformers import Wav2Vec2ForCTC

    assert Wav2Vec2ForCTC.from_pretrained(out).config.num_hidden_layers == 2
    assert card_progress(out).step == 7  # ``train --init-from`` continues from the same step
    [line] = card_history(out)
    assert line.startswith("Grown at step 7 from 1 to 2 transformer layers")
    # the next export's card keeps the line, so a later growth appends to the history
    state = {
        "model_config": Wav2Vec2ForCTC.from_pretrained(out).config.to_dict(),
        "train_config": dataclasses.asdict(TrainConfig(init_step=7, history=[line])),
        "progress": {"step": 9, "train_seconds": 400.0, "audio_seconds": 4000.0, "best_cer": 0.4},
    }
    assert line in model_card(state, 1000, 2000, machines="a CPU")


def test_exported_weights_are_stored_as_fp16_and_load_as_fp32(tmp_path: Path) -> None:
    model = tiny_ctc_model()
    state = {"model_config": model.config.to_dict(), "model": model.state_dict()}
    save_model_dir(state, tmp_path)

    stored = load_file(tmp_path / "model.safetensors")
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    from transformers import Wav2Vec2ForCTC

    loaded = Wav2Vec2ForCTC.from_pretrained(tmp_path).eval()  # no dtype: the config's
    assert next(loaded.parameters()).dtype == torch.float32
    audio = torch.randn(1, 8000)
    assert torch.allclose(_logits(loaded, audio), _logits(model, audio), atol=1e-2)
