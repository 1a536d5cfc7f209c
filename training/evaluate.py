"""Evaluate the tiny model: greedy CER/WER per test voice and inference speed.

Test sets are held-out sentences (never trained on) read by every training
voice, plus the unseen flite ``rms`` voice.  Results are printed as a table and
written to ``training/results/eval.json`` (which ``training.export`` puts into
the model card).

Usage::

    python -m training.evaluate                                  # best checkpoint
    python -m training.evaluate --model-dir streaming/models/tiny-en
    python -m training.evaluate --export                          # then re-export with scores

The speed figure is only meaningful on an otherwise idle machine (pause the
training run with ``kill -STOP``/``kill -CONT`` while measuring).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import load_manifests, read_audio
from training.model import error_rates, greedy_decode
from training.synth import UNSEEN_ENGINES
from training.train import RESULTS_DIR, transcribe

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = HERE / "work" / "run" / "best.pt"


def load_model(checkpoint: Path | None, model_dir: Path | None) -> tuple[Any, int | None]:
    """Load from an exported directory or a training checkpoint; return (model, step)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    if model_dir is not None:
        loaded: Any = Wav2Vec2ForCTC.from_pretrained(model_dir)
        return loaded.eval(), None
    assert checkpoint is not None
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model: Any = Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), int(state["progress"]["step"])


def score_test_sets(model: Any, show: int = 0) -> dict[str, dict[str, Any]]:
    """CER/WER of every test set (one per engine) present in the corpus."""
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for record in load_manifests("test"):
        by_engine.setdefault(record["engine"], []).append(record)
    results: dict[str, dict[str, Any]] = {}
    for engine, records in sorted(
        by_engine.items(), key=lambda kv: (kv[0] in UNSEEN_ENGINES, kv[0])
    ):
        hyps = transcribe(model, [read_audio(r) for r in records])
        pairs = [(r["text"], h) for r, h in zip(records, hyps, strict=True)]
        cer, wer = error_rates(pairs)
        hours = sum(r["seconds"] for r in records) / 3600
        results[engine] = {
            "n": len(records),
            "hours": round(hours, 3),
            "cer": cer,
            "wer": wer,
            "unseen": engine in UNSEEN_ENGINES,
            "examples": pairs[:show],
        }
    return results


def measure_speed(
    model: Any, model_dir: Path | None, seconds: float = 4.0, runs: int = 20
) -> float:
    """Median real-time factor of the whole offline path, batch 1.

    Timed: processor (normalization) + model forward + greedy decoding.
    """
    from transformers import Wav2Vec2Processor

    from training.model import build_processor

    processor = Wav2Vec2Processor.from_pretrained(model_dir) if model_dir else build_processor()
    audio = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(
        np.float32
    )
    timings = []
    with torch.inference_mode():
        for i in range(runs + 3):
            start = time.perf_counter()
            inputs = processor(audio, sampling_rate=16000, return_tensors="pt")
            logits = model(inputs.input_values, attention_mask=inputs.get("attention_mask")).logits
            greedy_decode(logits[0].argmax(-1).numpy())
            if i >= 3:  # warm-up runs excluded
                timings.append(time.perf_counter() - start)
    return seconds / statistics.median(timings)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Human-readable summary."""
    print(f"{'test set':<10} {'voice':<14} {'n':>5} {'hours':>6} {'CER':>7} {'WER':>7}")
    for engine, row in results.items():
        kind = "UNSEEN" if row["unseen"] else "train voice"
        print(
            f"{engine:<10} {kind:<14} {row['n']:>5} {row['hours']:>6.2f} "
            f"{row['cer']:>7.3f} {row['wer']:>7.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    """Score, print, write ``eval.json``; optionally measure speed and re-export."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="evaluate an exported model instead"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--speed", action="store_true", help="also measure inference speed (idle machine!)"
    )
    parser.add_argument("--show", type=int, default=3, help="example transcripts per set")
    parser.add_argument(
        "--export", action="store_true", help="re-export the checkpoint with these scores"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "eval.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, step = load_model(args.checkpoint, args.model_dir)
    results = score_test_sets(model, args.show)
    print_table(results)
    for engine, row in results.items():
        for ref, hyp in row["examples"]:
            print(f"  [{engine}] {ref}\n  {'':>{len(engine) + 2}} {hyp}")
    report: dict[str, Any] = {
        "step": step,
        "source": str(args.model_dir or args.checkpoint),
        "decoding": "greedy CTC, no language model",
        "sets": results,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.speed:
        report["speed_x_realtime"] = measure_speed(model, args.model_dir)
        report["speed_setup"] = (
            f"batch 1, 4 s input, {args.threads} CPU threads, fp32, processor+model+greedy decode"
        )
        print(f"speed: {report['speed_x_realtime']:.1f}x real time ({report['speed_setup']})")
    elif args.out.exists():  # keep the last speed measurement
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        for key in ("speed_x_realtime", "speed_setup"):
            if key in previous:
                report[key] = previous[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.export and args.model_dir is None:
        from training.export import export

        export(args.checkpoint)


if __name__ == "__main__":
    main()
