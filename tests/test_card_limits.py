"""The model card's limits quote the benchmarks run on that very model, with default settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import export


def _ood(step: int, command: str, wer: float) -> dict[str, object]:
    def one(voices: str, streaming: float, whole: float) -> dict[str, object]:
        return {
            "set": "out-of-domain",
            "voices": voices,
            "utterances": 350,
            "streaming": {"wer": streaming},
            "whole": {"wer": whole},
        }

    sets = [one("training", wer, wer - 0.03), one("held-out", 0.9, 0.88)]
    return {
        "command": command,
        "model_fingerprint": {"training_step": step},
        "settings": [{"sets": sets}],
    }


def _noise(step: int) -> dict[str, object]:
    def row(condition: str, ours: float, peer: float) -> dict[str, object]:
        return {"condition": condition, "streaming": {"wer": ours}, "whisper": {"wer": peer}}

    rows = [row("clean", 0.3, 0.2), row("pink 10 dB", 0.5, 0.33), row("babble 10 dB", 0.9, 0.4)]
    return {
        "command": "python -m benchmarks.noise --tag step7",
        "model_fingerprint": {"training_step": step},
        "utterances": 60,
        "rows": rows,
    }


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(export, "BENCHMARK_RESULTS", tmp_path)
    return tmp_path


def test_card_limits_quote_default_runs_of_this_step_only(results: Path) -> None:
    files = {
        "accuracy_ood-step7-cpu.json": _ood(
            7, "python -m benchmarks.accuracy_ood --tag step7", 0.41
        ),
        "accuracy_ood-levers-cpu.json": _ood(
            7, "python -m benchmarks.accuracy_ood --voices training --tag levers", 0.11
        ),
        "accuracy_ood-cpu.json": _ood(6, "python -m benchmarks.accuracy_ood ", 0.22),
        "noise-step7-cpu.json": _noise(7),
    }
    for name, data in files.items():
        (results / name).write_text(json.dumps(data), encoding="utf-8")
    text = export._robustness_lines(7)
    assert "streaming WER 0.41 (0.38 decoding whole utterances), its held-out voices 0.90" in text
    assert "accuracy_ood-step7-cpu.json" in text and "0.11" not in text and "0.22" not in text
    assert "0.30 clean, 0.50 pink 10 dB, 0.90 babble 10 dB (Whisper tiny.en: 0.20, 0.33, 0.40)" in (
        text
    )


def test_card_limits_say_how_to_measure_a_step_not_yet_benchmarked(results: Path) -> None:
    text = export._robustness_lines(9)
    assert "not measured for this step yet" in text
    assert "benchmarks.accuracy_ood --tag step9" in text and "benchmarks.noise --tag step9" in text
