"""Model soups (training.average): the weights, the summed progress and the model card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from training.average import average_weights, summed_progress
from training.config import Progress
from training.export import _training_line


def _state(scale: float, step: int) -> dict:
    return {
        "model": {"w": torch.full((2, 3), scale), "n": torch.tensor(7)},
        "progress": {"step": step, "train_seconds": 100.0 + step, "audio_seconds": 10.0 * step},
    }


def test_float_weights_are_averaged_and_integer_buffers_kept() -> None:
    out = average_weights([_state(1.0, 0), _state(3.0, 0)])
    assert torch.equal(out["w"], torch.full((2, 3), 2.0))
    assert int(out["n"]) == 7


def test_checkpoints_of_different_shapes_are_refused() -> None:
    other = _state(1.0, 0)
    other["model"]["w"] = torch.zeros(3, 3)
    with pytest.raises(SystemExit, match="same architecture"):
        average_weights([_state(1.0, 0), other])


def test_progress_adds_up_what_each_run_did_after_the_base() -> None:
    base = Progress(step=10, train_seconds=110.0, audio_seconds=100.0)
    prog = summed_progress(base, [_state(1.0, 15), _state(1.0, 30)], cer=0.2)
    assert prog.step == 10 + 5 + 20
    assert prog.train_seconds == pytest.approx(110.0 + 5 + 20)
    assert prog.audio_seconds == pytest.approx(100.0 + 50 + 200)
    assert prog.best_cer == prog.exported_cer == 0.2


def test_the_card_names_every_run_of_an_average_and_where_it_ran() -> None:
    state = {
        "base_step": 7431,
        "average_of": [
            {"label": "whole corpus", "device": "AMD EPYC", "batch_seconds": 40.0,
             "step": 8193, "valid_cer": 0.221},
            {"label": "Opus slice", "device": "NVIDIA H200", "batch_seconds": 320.0,
             "step": 8910, "valid_cer": 0.219},
        ],
    }  # fmt: skip
    line = _training_line(state, {"lr": 0.002, "batch_seconds": 40.0}, "AMD EPYC")
    assert "NVIDIA H200" in line and "AMD EPYC" in line
    assert "step 8910" in line and "0.219" in line and "average" in line
    single = _training_line({}, {"lr": 0.002, "batch_seconds": 40.0}, "AMD EPYC")
    assert "2 CPU cores (AMD EPYC), no GPU" in single  # what training_machines() parses


def test_an_average_with_its_base_model_names_the_base_as_a_member_not_a_run() -> None:
    state = {
        "base_step": 68014,
        "average_of": [
            {"label": "joe's new sentences", "device": "AMD EPYC", "batch_seconds": 40.0,
             "step": 72191, "valid_cer": 0.0931},
            {"label": "the base model", "device": "the exported base model",
             "batch_seconds": 40.0, "step": 68014, "valid_cer": 0.0886},
        ],
    }  # fmt: skip
    line = _training_line(state, {"lr": 0.004, "batch_seconds": 40.0}, "Intel Xeon")
    assert "up to step 68014; then 1 run continued from it" in line
    assert "to step 72191 (validation CER 0.093)" in line
    assert "2. the step-68014 model itself (validation CER 0.089)" in line
    assert re.search(r"2 CPU cores \(Intel Xeon\)\.$", line, re.MULTILINE)  # still parsed


def test_a_run_continued_from_an_average_names_the_gpu_run_in_its_history(tmp_path) -> None:
    from training.export import training_machines

    machines = training_machines(
        {"train_config": {"init_step": 10045}}, _card_naming_a_gpu(tmp_path)
    )
    assert "NVIDIA H200" in machines and "10045" in machines
    line = _training_line({}, {"lr": 0.002, "batch_seconds": 40.0}, machines)
    assert "no GPU" not in line


def test_a_second_continuation_keeps_the_gpu_run_in_its_history(tmp_path: Path) -> None:
    from training.export import cpu_description, training_machines

    here = cpu_description()
    first = training_machines({"train_config": {"init_step": 10045}}, _card_naming_a_gpu(tmp_path))
    previous = tmp_path / "MODEL_CARD.md"
    previous.write_text(
        "## Training\n\n"
        + _training_line({}, {"lr": 0.002, "batch_seconds": 40.0}, first)
        + "\nThis checkpoint: step 12159\n",
        encoding="utf-8",
    )
    machines = training_machines({"train_config": {"init_step": 12159}}, previous)
    assert machines == f"{here}; up to step 10045 also one run on an NVIDIA H200"


def _previous_card(tmp_path: Path, machines: str) -> Path:
    """The card a single run on ``machines`` left behind, for training_machines() to read."""
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(
        "## Training\n\n" + _training_line({}, {"lr": 0.002, "batch_seconds": 40.0}, machines),
        encoding="utf-8",
    )
    return card


def _card_naming_a_gpu(tmp_path: Path) -> Path:
    card = tmp_path / "average-card.md"
    card.write_text(
        "  2. 4.1 h Opus slice, on NVIDIA H200, batches of ~320 s, to step 8910 (...);\n",
        encoding="utf-8",
    )
    return card


def test_a_warm_start_card_states_the_cycles_learning_rate_not_a_from_scratch_peak() -> None:
    import dataclasses

    from training.config import TrainConfig, lr_factor
    from training.export import _warm_start_note

    cfg = TrainConfig(lr=3e-3, init_step=34616, cooldown_steps=5000)
    tc = dataclasses.asdict(cfg)
    note = _warm_start_note(tc, 36000)
    trainer_peak = cfg.lr * lr_factor(cfg.rewarm_steps - 1, cfg)
    assert f"base lr {cfg.lr}" in note
    assert f"{trainer_peak:.1e}" in note  # the value the trainer really reached
    assert "1384 steps into it" in note
    line = _training_line({}, tc, "AMD EPYC")
    assert "peak lr" not in line  # 0.003 is this cycle's, not the from-scratch run's


def test_a_continuation_on_another_cpu_names_each_machine_with_its_steps(tmp_path: Path) -> None:
    from training.export import cpu_description, training_machines

    here = cpu_description()
    history = "Old CPU A up to step 30000, Old CPU B after; up to step 10045 also one run on an GPU"
    previous = _previous_card(tmp_path, history)

    machines = training_machines({"train_config": {"init_step": 52627}}, previous)

    assert machines == (
        f"Old CPU A up to step 30000, Old CPU B up to step 52627, {here} after; "
        "up to step 10045 also one run on an GPU"
    )


def test_a_continuation_on_the_machine_of_the_last_steps_keeps_the_history(tmp_path: Path) -> None:
    from training.export import cpu_description, training_machines

    here = cpu_description()
    history = f"Old CPU A up to step 52627, {here} after; up to step 10045 also one run on an GPU"
    previous = _previous_card(tmp_path, history)

    machines = training_machines({"train_config": {"init_step": 56020}}, previous)

    assert machines == history


def test_a_return_to_the_first_machine_adds_it_again_after_the_second(tmp_path: Path) -> None:
    from training.export import cpu_description, training_machines

    here = cpu_description()
    history = f"{here} up to step 52627, Old CPU B after; up to step 10045 also one run on an GPU"
    previous = _previous_card(tmp_path, history)

    machines = training_machines({"train_config": {"init_step": 68014}}, previous)

    assert machines == (
        f"{here} up to step 52627, Old CPU B up to step 68014, {here} after; "
        "up to step 10045 also one run on an GPU"
    )
