"""The training schedule and the warm start from a shipped model (training/train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.train import TrainConfig, _schedule, card_progress, lr_factor

MODEL_DIR = Path(__file__).resolve().parent.parent / "streaming" / "models" / "tiny-en"


def test_fresh_schedule_warms_up_then_decays_without_an_end() -> None:
    cfg = TrainConfig()
    assert lr_factor(0, cfg) == pytest.approx(1 / cfg.warmup_steps)
    assert lr_factor(cfg.warmup_steps, cfg) == pytest.approx(1.0)
    later = [lr_factor(s, cfg) for s in (1000, 5000, 50_000, 10**7)]
    assert later == sorted(later, reverse=True) and later[-1] == cfg.min_lr_ratio


def test_warm_start_rewarms_to_where_the_schedule_stood_then_cools_down() -> None:
    cfg = TrainConfig(init_step=3773, rewarm_steps=200, cooldown_steps=1000)
    assert lr_factor(0, cfg) < 0.1 * _schedule(3773, cfg)  # fresh optimizer: start low
    # Re-warmed: the schedule's value at that step, scaled by the cool-down so far.
    assert lr_factor(199, cfg) == pytest.approx(_schedule(3972, cfg) * (1 - 199 / 1000))
    assert lr_factor(1000, cfg) == cfg.min_lr_ratio  # cooled down to the floor, and stays
    assert lr_factor(5000, cfg) == cfg.min_lr_ratio
    plain = TrainConfig(init_step=3773)
    assert lr_factor(400, plain) == pytest.approx(_schedule(4173, plain))  # no cool-down


def test_warm_start_reads_step_and_progress_from_the_shipped_model_card() -> None:
    progress = card_progress(MODEL_DIR)
    assert progress.step > 0
    assert progress.train_seconds > 0 and progress.audio_seconds > progress.train_seconds
    assert 0 < progress.exported_cer < 1


def test_model_card_without_a_step_is_refused(tmp_path: Path) -> None:
    (tmp_path / "MODEL_CARD.md").write_text("# some model\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="which step"):
        card_progress(tmp_path)
