"""Window distillation (training): windows cut on frame boundaries, frames aligned to the
whole utterance's, and the loss is zero exactly when the window reads like the whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")
pytest.importorskip("soxr")

from training.data import FRAME, WindowCrops, window_crops
from training.model import normalize_audio
from training.train import window_distillation

RATE = 16000


def test_windows_start_on_frame_boundaries_inside_their_utterance() -> None:
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(n).astype(np.float32) for n in (8000, 30000, 52000, 41000)]
    cut = window_crops(audios, WindowCrops(fraction=0.5, seconds=(1.0, 2.32)), rng)
    assert cut is not None
    assert len(cut["crop_rows"]) == 2
    for k, row in enumerate(cut["crop_rows"].tolist()):
        size = int(cut["crop_mask"][k].sum())
        start = int(cut["crop_offsets"][k]) * FRAME
        assert size % FRAME == 0 and RATE <= size <= 2.32 * RATE
        assert start + size <= len(audios[row])
        expected = normalize_audio(audios[row][start : start + size])
        np.testing.assert_allclose(cut["crop_values"][k, :size].numpy(), expected, atol=1e-5)
    assert 0 not in cut["crop_rows"].tolist()  # 0.5 s: too short for a window


def test_no_window_when_every_utterance_is_too_short() -> None:
    rng = np.random.default_rng(0)
    spec = WindowCrops(fraction=0.25, seconds=(1.0, 2.32))
    assert window_crops([np.zeros(9000, np.float32)], spec, rng) is None


class FrameLocalModel(torch.nn.Module):
    """Logits of each 320-sample frame depend on that frame's samples only: a window's
    frames then equal the whole utterance's, wherever the window is cut."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(FRAME, 5)

    def forward(self, values: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        frames = values[:, : values.shape[1] // FRAME * FRAME].reshape(values.shape[0], -1, FRAME)
        return type("Out", (), {"logits": self.proj(frames)})()

    def _get_feat_extract_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // FRAME


def _batch(offset_error: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(3)
    whole = torch.from_numpy(rng.standard_normal((2, 40 * FRAME)).astype(np.float32))
    starts, sizes = [7, 12], [20, 25]
    crops = torch.zeros(2, 25 * FRAME)
    mask = torch.zeros(2, 25 * FRAME, dtype=torch.int64)
    for k, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        crops[k, : size * FRAME] = whole[k, start * FRAME : (start + size) * FRAME]
        mask[k, : size * FRAME] = 1
    return {
        "input_values": whole,
        "attention_mask": torch.ones_like(whole, dtype=torch.int64),
        "crop_values": crops,
        "crop_mask": mask,
        "crop_rows": torch.tensor([0, 1]),
        "crop_offsets": torch.tensor(starts) + offset_error,
    }


def test_distillation_is_zero_when_windows_read_like_the_whole_utterance() -> None:
    torch.manual_seed(0)
    model = FrameLocalModel()
    loss = window_distillation(model, _batch(0), torch.device("cpu"), bf16=False)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert model.training  # the teacher pass leaves the model in training mode


def test_distillation_penalizes_frames_that_differ_and_has_a_gradient() -> None:
    torch.manual_seed(0)
    model = FrameLocalModel()
    loss = window_distillation(model, _batch(1), torch.device("cpu"), bf16=False)
    assert loss.item() > 0.01
    loss.backward()
    assert model.proj.weight.grad is not None and model.proj.weight.grad.abs().sum() > 0
