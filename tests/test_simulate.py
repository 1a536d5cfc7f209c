"""benchmarks.simulate: one stream through the real Session in simulated real time (the
accuracy and peer benchmarks' algorithmic latency), with a real tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from benchmarks import models, simulate, testset
from streaming.config import WindowConfig

DEMO = Path(__file__).resolve().parent.parent / "training" / "samples" / "demo.wav"


def test_every_utterance_ends_in_one_final_stamped_in_stream_time(tiny_model_dir: Path) -> None:
    model, bench = models.load_bench_model(str(tiny_model_dir), threads=1)
    audio, rate = sf.read(str(DEMO), dtype="float32")
    assert rate == testset.SAMPLE_RATE and bench.source == str(tiny_model_dir)

    run = simulate.simulate_session(model, audio, WindowConfig(), compute="zero")

    assert run.audio_s == len(audio) / rate and run.windows > 0
    finals = [msg for _, msg in run.messages if msg["type"] == "final"]
    assert finals == run.finals and len({f["utterance_id"] for f in finals}) == len(finals)
    times = [t for t, _ in run.messages]
    assert times == sorted(times) and times[-1] <= run.audio_s  # zero compute: no lag


def test_with_lm_finals_early_commits_commit_words_that_lead_each_final() -> None:
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    from streaming.lm import LMDecoder

    model, bench = models.load_bench_model("tiny-en", threads=1)
    lm = LMDecoder.from_model_dir(bench.source)
    audio, _ = sf.read(str(DEMO), dtype="float32")
    runs = {
        early: simulate.simulate_session(
            model,
            audio,
            WindowConfig(),
            compute="zero",
            rescore=lm.decode_words,
            early_commits=early,
        )
        for early in (True, False)
    }
    assert runs[True].searches > 0 and runs[False].searches == 0
    assert runs[True].final_decode_s > 0 and runs[True].search_s > 0
    committed: dict[object, str] = {}
    for _, msg in runs[True].messages:
        if msg["type"] == "partial":
            committed[msg["utterance_id"]] = str(msg["committed"])
        elif msg["type"] == "final":
            assert str(msg["text"]).startswith(committed.get(msg["utterance_id"], ""))
    assert any(committed.values()), "no word committed before its final"
    held = [m for _, m in runs[False].messages if m["type"] == "partial" and m["committed"]]
    assert held == [], "--no-early-commits: words wait for the final"
