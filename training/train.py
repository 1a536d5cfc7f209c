"""Train the tiny Wav2Vec2 CTC model on the synthetic corpus, resumably.

Designed to run for hours in the background on a small shared CPU and to be
killed at any moment: a checkpoint (model, optimizer, scheduler, step, RNG
states and the exact batch plan of the current epoch with the position in it)
is written atomically every ``--checkpoint-minutes``; starting the same
command again resumes from it.  New audio synthesized meanwhile joins at the
next epoch (each epoch plans its batches from the manifests present then).

Outputs under ``training/work/run/`` (git-ignored): ``last.pt``, ``best.pt``,
``log.jsonl``; a copy of the log and a loss/CER plot go to
``training/results/``.  When validation CER improves notably the best model is
exported to ``streaming/models/tiny-en/``.

Start or resume (from the repository root)::

    nohup nice -n 19 python -m training.train > training/work/train.log 2>&1 &
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Shared, oversubscribed CPU: OpenMP threads that spin-wait for work burn the
# cores other processes need (measured here: 3x slower training next to the
# synthesis jobs).  Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from evaluation.scoring import error_rates
from training.config import Progress, TrainConfig, load_train_config, lr_factor
from training.data import (
    Augment,
    BatchDataset,
    WindowCrops,
    corpus_hours,
    load_manifests,
    log_probs,
    make_batches,
    preload,
    read_audio,
    records_by_engine,
)
from training.export import RESULTS_DIR, card_history, card_progress, cpu_description, export
from training.malloc import preloaded, reexec_under_tcmalloc
from training.model import build_config, greedy_decode, size_of
from training.synth import CORPUS_DIR

HERE = Path(__file__).resolve().parent
RUN_DIR = HERE / "work" / "run"


def limit_heap_fragmentation() -> None:
    """Make glibc return freed activation memory to the OS.

    Batches have a different shape at every step; with glibc's adaptive mmap
    threshold the large activation buffers end up on the heap and fragment it
    (RSS grew ~1 GB per 10 minutes here).  A fixed mmap threshold serves them
    with mmap/munmap instead, and ``malloc_trim`` (see :func:`trim_heap`)
    releases what remains.  No-op where glibc is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 1 << 20)


def trim_heap() -> None:
    """Release free heap pages to the OS (glibc only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def seed_everything(seed: int) -> None:
    """Fix every RNG so a fresh run is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Snapshot of the global RNGs (SpecAugment masks use numpy/torch)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file then rename, so a kill never leaves a torn file."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plan_epoch(
    progress: Progress, cfg: TrainConfig, corpus: Path = CORPUS_DIR, passes: int = 1
) -> dict[str, dict[str, Any]]:
    """Plan the batches of ``progress.epoch`` from the manifests present now.

    ``passes`` > 1 plans that many shuffled passes over the data as one epoch: a small
    corpus on a fast GPU would otherwise restart the data-loader processes every few
    seconds. Only a run from scratch starts with the short-to-long curriculum; a warm
    start (``--init-from``) is shuffled from its first batch, or a short fine-tune would
    see only the short utterances.
    """
    records = [
        r for r in load_manifests("train", corpus=corpus) if r["seconds"] <= cfg.max_utt_seconds
    ]
    voices = {r["engine"] for r in records}
    if unknown := sorted(set(cfg.oversample) - voices):
        # A typo (``Joe=2``) would otherwise train a whole cycle without the intended boost.
        raise SystemExit(
            f"--oversample: no training utterances of {', '.join(unknown)}; "
            f"voices in the corpus: {', '.join(sorted(voices))}"
        )
    planned = [r for r in records for _ in range(cfg.oversample.get(r["engine"], 1))]
    rng = random.Random(cfg.seed * 1000 + progress.epoch)
    progress.batches = [
        batch
        for n in range(passes)
        for batch in make_batches(
            planned,
            cfg.batch_seconds,
            rng,
            shuffle=progress.epoch > 0 or n > 0 or cfg.init_step > 0,
        )
    ]
    progress.batch_pos = 0
    hours = sum(r["seconds"] for r in planned) / 3600
    copies = f" ({len(planned) - len(records)} oversampled copies)" if cfg.oversample else ""
    print(
        f"epoch {progress.epoch}: {len(records)} utterances{copies}, {hours:.2f} h, "
        f"{len(progress.batches)} batches"
    )
    return {r["id"]: r for r in records}


def valid_set(cfg: TrainConfig, corpus: Path = CORPUS_DIR) -> list[dict[str, Any]]:
    """A fixed subset of the validation split: ``valid_per_engine`` per voice."""
    groups = records_by_engine("valid", corpus)
    return [r for rs in groups.values() for r in rs[: cfg.valid_per_engine]]


@torch.inference_mode()
def transcribe(model: Any, audios: list[np.ndarray], batch_seconds: float = 60.0) -> list[str]:
    """Greedy transcripts, batched by length (attention mask handles padding)."""
    return [greedy_decode(lp.argmax(-1)) for lp in log_probs(model, audios, batch_seconds)]


def evaluate(
    model: Any, records: list[dict[str, Any]], corpus: Path = CORPUS_DIR
) -> dict[str, Any]:
    """CER/WER overall and per engine on ``records``."""
    was_training = model.training
    model.eval()
    hyps = transcribe(model, [read_audio(r, corpus) for r in records])
    model.train(was_training)
    result: dict[str, Any] = {}
    for engine in sorted({r["engine"] for r in records}):
        pairs = [
            (r["text"], h) for r, h in zip(records, hyps, strict=True) if r["engine"] == engine
        ]
        counts = error_rates(pairs, normalize=False)
        result[engine] = {"cer": counts.cer, "wer": counts.wer}
    counts = error_rates([(r["text"], h) for r, h in zip(records, hyps, strict=True)], False)
    result.update(cer=counts.cer, wer=counts.wer, example=f"{records[-1]['text']} => {hyps[-1]}")
    return result


def log(record: dict[str, Any], run_dir: Path = RUN_DIR) -> None:
    """Append one JSON line to the run log (and echo it)."""
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def publish_results(run_dir: Path = RUN_DIR) -> None:
    """Copy the log and a loss/CER plot to ``training/results/`` (small, committable).

    A run in another folder (``--run-dir``) publishes into ``<run_dir>/results`` instead,
    so trial runs never overwrite the committed curve.
    """
    results = RESULTS_DIR if run_dir.resolve() == RUN_DIR.resolve() else run_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "log.jsonl", results / "train_log.jsonl")
    try:
        from training.plot import plot_log

        plot_log(results / "train_log.jsonl", results / "train_curve.png")
    except Exception as exc:  # plotting must never stop training
        print(f"plot failed: {exc}")


def checkpoint(
    path: Path, model: Any, opt: Any, sched: Any, cfg: TrainConfig, prog: Progress
) -> None:
    """Write everything needed to resume exactly."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "train_config": dataclasses.asdict(cfg),
        "model_config": model.config.to_dict(),
        "progress": dataclasses.asdict(prog),
        "rng": rng_state(),
    }
    save_atomic(state, path)


def maybe_export(
    prog: Progress, cer: float, export_below: float, export_delta: float, run_dir: Path = RUN_DIR
) -> None:
    """Export ``best.pt`` to the package when CER is usable and notably better."""
    if cer > export_below or cer > prog.exported_cer - export_delta:
        return
    try:
        export(run_dir / "best.pt")
        prog.exported_cer = cer
        log({"event": "export", "step": prog.step, "cer": cer}, run_dir)
    except Exception as exc:  # export must never stop training
        print(f"export failed: {exc}")


def warm_start(args: argparse.Namespace) -> tuple[Any, TrainConfig, Progress]:
    """Model, config and progress for a run that continues an exported model.

    The checkpoint of the run that made the model may be gone (``training/work`` is not
    committed); its weights and its log are, so training picks up from there.
    """
    from transformers import Wav2Vec2ForCTC

    prog = card_progress(args.init_from)
    seed_everything(TrainConfig.seed + prog.step)  # before loading: it draws initial weights
    model = Wav2Vec2ForCTC.from_pretrained(args.init_from)
    cfg = TrainConfig(
        size=size_of(model.config),
        lr=args.lr,
        batch_seconds=args.batch_seconds,
        init_step=prog.step,
        cooldown_steps=args.cooldown_steps,
        history=card_history(args.init_from),
        oversample=args.oversample,
        window_distill=args.window_distill,
    )
    model.config.mask_time_prob = cfg.mask_time_prob
    history = RESULTS_DIR / "train_log.jsonl"
    if history.exists():
        lines = history.read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= prog.step]
        (args.run_dir / "log.jsonl").write_text("".join(f"{ln}\n" for ln in kept), encoding="utf-8")
    log({"event": "warm_start", "step": prog.step, "from": str(args.init_from)}, args.run_dir)
    return model, cfg, prog


def fit_cooldown(
    cfg: TrainConfig,
    prog: Progress,
    since: tuple[int, float] | None,
    seconds_left: float,
    run_dir: Path = RUN_DIR,
) -> tuple[int, float] | None:
    """Size the cool-down from the measured step rate so it ends when time runs out.

    A lent GPU gives a fixed number of minutes, not steps.  The rate is measured over
    30 s after the first 20 steps (start-up is slower); the chosen step count is logged,
    so a rerun can pass it as ``--cooldown-steps``.  Returns the new measuring point.
    """
    now = time.monotonic()
    if since is None:
        return (prog.step, now) if prog.step - cfg.init_step >= 20 else None
    if now - since[1] < 30.0:
        return since
    rate = (prog.step - since[0]) / (now - since[1])
    _size_cooldown(cfg, prog, rate, seconds_left, "fit_cooldown", run_dir)
    return None


def _size_cooldown(
    cfg: TrainConfig, prog: Progress, rate: float, seconds_left: float, event: str, run_dir: Path
) -> None:
    """End the cool-down where ``rate`` steps/s reach the end of ``seconds_left``; log it."""
    cfg.cooldown_steps = prog.step - cfg.init_step + int(rate * max(0.0, seconds_left))
    log(
        {
            "event": event,
            "step": prog.step,
            "steps_per_s": round(rate, 2),
            "cooldown_steps": cfg.cooldown_steps,
        },
        run_dir,
    )


def refit_cooldown(
    cfg: TrainConfig,
    prog: Progress,
    session: tuple[int, float],
    seconds_left: float,
    run_dir: Path = RUN_DIR,
) -> None:
    """Re-size the cool-down from the step rate of the whole session so far.

    The first fit sees raw steps only; validation, checkpoints and a busy machine
    slow the run later (on 2 CPU cores the cool-down ended only 81 % of the way
    down).  Refitting after each validation keeps the end of the cool-down at the
    end of ``--max-minutes``; the learning rate moves only by the misestimate.
    """
    steps, seconds = prog.step - session[0], time.monotonic() - session[1]
    if steps <= 0 or seconds <= 0.0:
        return
    _size_cooldown(cfg, prog, steps / seconds, seconds_left, "refit_cooldown", run_dir)


def start_profiler(device: torch.device) -> Any:
    """torch.profiler over the next steps (``--profile-steps``): which ops take the time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities)
    prof.start()
    return prof


def finish_profiler(prof: Any, path: Path) -> None:
    """Stop the profiler and write its top ops (by device time, then CPU time) to ``path``."""
    try:  # a diagnostic must never stop a training run
        prof.stop()
        averages = prof.key_averages()
        keys = ["self_cpu_time_total"]
        if any(e.device_time_total for e in averages):
            keys.insert(0, "self_device_time_total")
        tables = [averages.table(sort_by=key, row_limit=25) for key in keys]
        path.write_text("\n\n".join(tables), encoding="utf-8")
        print(f"profile written to {path}", flush=True)
    except Exception as exc:
        print(f"profiling failed: {exc}", flush=True)


def describe_device(device: torch.device) -> str:
    """The accelerator's name, or the CPU's, for the run log and the model card."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return cpu_description()


def use_bf16(no_bf16: bool, device: torch.device) -> bool:
    """bf16 autocast where the hardware runs it natively (on an AVX2-only EPYC, emulated
    bf16 made fewer than 0.06 steps/s where fp32 made 0.35)."""
    if no_bf16:
        return False
    from streaming.cpu import native_bf16

    return device.type == "cuda" or native_bf16() is not None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """CLI; hyper-parameters only apply to a fresh run (a resume reuses the saved ones)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--batch-seconds", type=float, default=TrainConfig.batch_seconds)
    p.add_argument(
        "--no-bf16",
        action="store_true",
        help="train in fp32; by default bf16 autocast is used on a GPU and on CPUs with native "
        "bf16 (AVX512-BF16, AMX), fp32 on other CPUs, which only emulate bf16 (decided at "
        "every start, also on resume)",
    )
    p.add_argument(
        "--malloc",
        choices=("tcmalloc", "glibc"),
        default="tcmalloc",
        help="memory allocator: tcmalloc (where installed: libtcmalloc-minimal4) makes CPU "
        "training ~1.6x faster than glibc here; the command re-executes itself to load it",
    )
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--eval-minutes", type=float, default=10.0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument(
        "--export-below", type=float, default=0.6, help="export once valid CER is below this"
    )
    p.add_argument(
        "--export-delta", type=float, default=0.02, help="re-export when CER improves this much"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--corpus",
        type=Path,
        default=CORPUS_DIR,
        help="corpus folder (default: training/work/corpus; or one made by training.pack)",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=RUN_DIR,
        help="checkpoints and log (default: training/work/run); another folder also "
        "keeps the plot out of training/results",
    )
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (bf16 autocast on both)")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=1,
        help="data-loader processes (decoding + augmentation); raise it to feed a GPU",
    )
    p.add_argument(
        "--preload",
        action="store_true",
        help="decode the whole training split into memory once per epoch (for a GPU)",
    )
    p.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="profile N training steps (torch.profiler) into RUN_DIR/profile.txt",
    )
    p.add_argument(
        "--passes-per-epoch",
        type=int,
        default=1,
        help="plan this many passes over the data as one epoch (fewer loader restarts)",
    )
    p.add_argument(
        "--fit-cooldown",
        action="store_true",
        help="with --init-from and --max-minutes: measure the step rate over the first "
        "minute and set --cooldown-steps so the cool-down ends at --max-minutes (refitted "
        "after each validation from the rate so far)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="start a new run from an exported model (e.g. streaming/models/tiny-en) when "
        "no checkpoint exists: its weights, its step (from MODEL_CARD.md) and the committed "
        "log up to that step; the optimizer starts afresh, so the learning rate re-warms",
    )
    p.add_argument(
        "--cooldown-steps",
        type=int,
        default=0,
        help="with --init-from: decay the learning rate linearly to its floor over N steps",
    )
    p.add_argument(
        "--oversample",
        type=_oversample,
        action="append",
        default=[],
        metavar="VOICE=N",
        help="plan N renderings of each utterance of VOICE per epoch, each augmented anew "
        "(repeatable; e.g. joe=2 for the voice the model lags on)",
    )
    p.add_argument(
        "--window-distill",
        type=float,
        default=0.0,
        metavar="W",
        help=f"weight of window distillation: {TrainConfig.distill_fraction * 100:.0f} %% of each "
        "batch's utterances is also cut into a server-sized window "
        f"({TrainConfig.distill_window_s[0]:g}-{TrainConfig.distill_window_s[1]:g} s) whose "
        "frames are pulled (KL) towards the model's frames on the whole utterance, so "
        "streaming windows read like whole utterances (0 = off; kept on resume)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoint (moves it aside)"
    )
    args = p.parse_args(argv)
    args.oversample = dict(args.oversample)
    return args


def _oversample(text: str) -> tuple[str, int]:
    """Parse ``VOICE=N`` (N >= 1) for ``--oversample``."""
    voice, sep, count = text.partition("=")
    if not sep or not voice or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected VOICE=N with N >= 1, got {text!r}")
    return voice, int(count)


def main(argv: list[str] | None = None) -> None:
    """Train (or resume) until killed or ``--max-minutes``."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    corpus: Path = args.corpus
    if args.fit_cooldown and (args.init_from is None or args.max_minutes is None):
        raise SystemExit("--fit-cooldown needs --init-from and --max-minutes")
    if preloaded() == "glibc":
        limit_heap_fragmentation()
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / "last.pt"
    if args.fresh and last.exists():
        os.replace(last, last.with_suffix(f".{int(time.time())}.bak"))

    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        cfg = load_train_config(state["train_config"])
        model = Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        prog = Progress(**state["progress"])
        print(
            f"resumed from {last} at step {prog.step} (epoch {prog.epoch}, batch {prog.batch_pos})"
        )
    elif args.init_from is not None:
        model, cfg, prog = warm_start(args)
        state = None
    else:
        cfg = TrainConfig(
            lr=args.lr,
            batch_seconds=args.batch_seconds,
            oversample=args.oversample,
            window_distill=args.window_distill,
        )
        seed_everything(cfg.seed)
        model = Wav2Vec2ForCTC(build_config(cfg.size, cfg.mask_time_prob))
        prog = Progress()
        state = None
    cfg = dataclasses.replace(cfg, bf16=use_bf16(args.no_bf16, device))
    model.train().to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        del state
    n_params = sum(p.numel() for p in model.parameters())
    log(
        {
            "event": "start",
            "step": prog.step,
            "params": n_params,
            "config": dataclasses.asdict(cfg),
            "corpus_hours": corpus_hours("train", corpus),
            "corpus": str(corpus),
            "device": describe_device(device),
            "allocator": preloaded(),
        },
        run_dir,
    )

    valid = valid_set(cfg, corpus)
    model.train()
    session_start, session_step = time.monotonic(), prog.step
    last_ckpt = last_eval = time.monotonic()
    window: list[float] = []
    distill_window: list[float] = []
    records: dict[str, dict[str, Any]] | None = None
    cache: dict[str, np.ndarray] = {}
    fit_from: tuple[int, float] | None = None
    fitted = False  # this session sized the cool-down: keep it fitted (refit_cooldown)
    distill_time = 0.0
    data_wait = step_time = 0.0  # where the wall time goes: waiting for batches, or steps
    profiler: Any = None
    profiled = 0

    def session_s() -> float:
        return time.monotonic() - session_start

    while True:
        if not prog.batches or prog.batch_pos >= len(prog.batches):
            if prog.batches:
                prog.epoch += 1
            records = plan_epoch(prog, cfg, corpus, args.passes_per_epoch)
        elif records is None:  # resumed mid-epoch: reuse the saved batch plan
            records = {r["id"]: r for r in load_manifests("train", corpus=corpus)}
        if args.preload and len(cache) < len(records):
            t0 = time.monotonic()
            cache = preload(list(records.values()), corpus, workers=os.cpu_count() or 1)
            print(f"decoded {len(cache)} utterances in {time.monotonic() - t0:.1f} s", flush=True)
        crops = (
            WindowCrops(cfg.distill_fraction, cfg.distill_window_s) if cfg.window_distill else None
        )
        dataset = BatchDataset(
            prog.batches,
            records,
            cfg.seed,
            prog.epoch,
            prog.batch_pos,
            Augment(),
            corpus,
            cache,
            crops,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            num_workers=args.loader_workers,
            prefetch_factor=4 if args.loader_workers > 0 else None,  # torch refuses it with 0
            pin_memory=device.type == "cuda",
        )
        waited_from = time.monotonic()
        for batch in loader:
            t0 = time.monotonic()
            data_wait += t0 - waited_from
            if profiler is None and args.profile_steps and profiled == 0:
                profiler = start_profiler(device)
            if profiler is not None:
                profiled += 1
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                out = model(
                    batch["input_values"].to(device, non_blocking=True),
                    attention_mask=batch["attention_mask"].to(device, non_blocking=True),
                    labels=batch["labels"].to(device, non_blocking=True),
                )
            loss = out.loss
            if "crop_values" in batch:
                d0 = time.monotonic()
                distill = window_distillation(model, batch, device, cfg.bf16)
                distill_window.append(distill.item())
                loss = loss + cfg.window_distill * distill
                distill_time += time.monotonic() - d0
            if not torch.isfinite(loss):
                raise SystemExit(f"loss is {loss.item()} at step {prog.step}: stopping")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            opt.step()
            sched.step()
            prog.step += 1
            prog.batch_pos = int(batch["index"]) + 1
            prog.audio_seconds += float(batch["seconds"])
            window.append(loss.item())
            prog.train_seconds += time.monotonic() - t0
            step_time += time.monotonic() - t0
            if profiler is not None and profiled >= args.profile_steps:
                finish_profiler(profiler, run_dir / "profile.txt")
                profiler = None
            if args.fit_cooldown and not cfg.cooldown_steps:
                fit_from = fit_cooldown(
                    cfg, prog, fit_from, args.max_minutes * 60 - session_s(), run_dir
                )
                fitted = bool(cfg.cooldown_steps)
            if prog.step % 25 == 0:
                log(
                    {
                        "event": "train",
                        "step": prog.step,
                        "epoch": prog.epoch,
                        "loss": float(np.mean(window)),
                        **(
                            {
                                "distill": float(np.mean(distill_window)),
                                # share of step time in the distillation's forward passes
                                # (its backward is counted with the step's)
                                "distill_forward": round(distill_time / max(1e-9, step_time), 3),
                            }
                            if distill_window
                            else {}
                        ),
                        "grad_norm": grad_norm,
                        "lr": sched.get_last_lr()[0],
                        "audio_hours": prog.audio_seconds / 3600,
                        "train_hours": prog.train_seconds / 3600,
                        # share of wall time spent waiting for the data loader
                        "data_wait": round(data_wait / max(1e-9, data_wait + step_time), 3),
                    },
                    run_dir,
                )
                window, distill_window = [], []
                data_wait = step_time = distill_time = 0.0
                trim_heap()
            now = time.monotonic()
            # A run that stops validates its final weights: the end of a cool-down is
            # usually its best, and would otherwise be neither scored nor kept as best.pt.
            stopping = args.max_minutes is not None and now - session_start >= args.max_minutes * 60
            if stopping or now - last_eval >= args.eval_minutes * 60:
                last_eval = now
                result = evaluate(model, valid, corpus)
                log(
                    {
                        "event": "valid",
                        "step": prog.step,
                        "audio_hours": prog.audio_seconds / 3600,
                        "train_hours": prog.train_seconds / 3600,
                        **result,
                    },
                    run_dir,
                )
                if result["cer"] < prog.best_cer:
                    prog.best_cer = result["cer"]
                    checkpoint(run_dir / "best.pt", model, opt, sched, cfg, prog)
                    maybe_export(prog, result["cer"], args.export_below, args.export_delta, run_dir)
                publish_results(run_dir)
                if fitted and not stopping:
                    refit_cooldown(
                        cfg,
                        prog,
                        (session_step, session_start),
                        args.max_minutes * 60 - session_s(),
                        run_dir,
                    )
            if now - last_ckpt >= args.checkpoint_minutes * 60:
                last_ckpt = now
                checkpoint(last, model, opt, sched, cfg, prog)
                print(f"checkpoint at step {prog.step}", flush=True)
            if stopping:
                checkpoint(last, model, opt, sched, cfg, prog)
                print("max minutes reached; checkpoint written", flush=True)
                return
            waited_from = time.monotonic()  # validation and checkpoints are not data wait


def window_distillation(
    model: Any, batch: dict[str, torch.Tensor], device: torch.device, bf16: bool
) -> torch.Tensor:
    """KL(whole-utterance frames || window frames), averaged over the windows' frames.

    The teacher is the model itself on the whole utterances the windows were cut from,
    without gradient and without SpecAugment (eval mode), so the target is how it reads
    each frame with all the context there is.
    """
    rows = batch["crop_rows"].to(device)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        mask = batch["attention_mask"].to(device)[rows]
        teacher = model(batch["input_values"].to(device)[rows], attention_mask=mask).logits
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        crop_mask = batch["crop_mask"].to(device)
        student = model(batch["crop_values"].to(device), attention_mask=crop_mask).logits
    target = torch.log_softmax(teacher.float(), dim=-1)
    log_q = torch.log_softmax(student.float(), dim=-1)
    frames = model._get_feat_extract_output_lengths(crop_mask.sum(-1))
    index = batch["crop_offsets"].to(device)[:, None] + torch.arange(log_q.shape[1], device=device)
    valid = torch.arange(log_q.shape[1], device=device)[None, :] < frames[:, None]
    index = index.clamp(max=target.shape[1] - 1)
    aligned = torch.gather(target, 1, index[:, :, None].expand(-1, -1, target.shape[2]))
    kl = (aligned.exp() * (aligned - log_q)).sum(-1)
    mean: torch.Tensor = (kl * valid).sum() / valid.sum().clamp(min=1)
    return mean


def cli() -> None:
    """The command line: load the allocator first (a re-exec), then train."""
    argv = sys.argv[1:]
    if parse_args(argv).malloc == "tcmalloc":
        reexec_under_tcmalloc("training.train", argv)
    main(argv)


if __name__ == "__main__":
    cli()
