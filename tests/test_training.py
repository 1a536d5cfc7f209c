"""Training (training/train.py, training/data.py): the schedule, the warm start from a shipped
model, corpora in other folders, preloading, multi-pass and oversampled epochs and short runs
on CPU."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_corpus import tiny_ctc_model, tone, write_corpus

from training import train
from training.config import Progress, TrainConfig, _schedule, load_train_config, lr_factor
from training.data import BatchDataset, load_manifests, log_probs, make_batches, preload, read_audio
from training.export import card_progress
from training.model import build_config, normalize_audio
from training.train import fit_cooldown, parse_args, plan_epoch, refit_cooldown

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


def test_warm_start_records_the_size_of_the_model_it_loads(tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForCTC

    args = parse_args(
        ["--init-from", str(MODEL_DIR), "--run-dir", str(tmp_path), "--oversample", "joe=2"]
    )
    model, cfg, _ = train.warm_start(args)
    assert cfg.oversample == {"joe": 2}
    # The shipped model was grown past the default size; the config must say what is trained.
    assert cfg.size.layers == model.config.num_hidden_layers
    rebuilt = Wav2Vec2ForCTC(build_config(cfg.size))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_model_card_without_a_step_is_refused(tmp_path: Path) -> None:
    (tmp_path / "MODEL_CARD.md").write_text("# some model\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="which step"):
        card_progress(tmp_path)


# --- a corpus in another folder (training.pack), preloading, multi-pass epochs, GPU runs ---

TRAIN = {"a": [0.5, 0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.7, 0.9]}
VALID = {"a": [0.6, 0.8], "b": [0.7]}


def test_manifests_and_audio_are_read_from_the_corpus_folder_given(tmp_path: Path) -> None:
    written = write_corpus(tmp_path, TRAIN, VALID)
    train = load_manifests("train", corpus=tmp_path)
    assert train == sorted(written["train"], key=lambda r: r["id"])
    assert {r["engine"] for r in load_manifests("train", ["b"], tmp_path)} == {"b"}
    assert [r["id"] for r in load_manifests("valid", corpus=tmp_path)] == sorted(
        r["id"] for r in written["valid"]
    )
    assert load_manifests("train", corpus=tmp_path / "nothing-here") == []
    first = train[0]
    audio = read_audio(first, tmp_path)
    assert audio.dtype == np.float32
    index = 1 + [r["id"] for r in written["train"]].index(first["id"])
    np.testing.assert_allclose(audio, tone(first["seconds"], index), atol=2 / 32768)


def test_preload_holds_what_read_audio_decodes_for_every_record(tmp_path: Path) -> None:
    write_corpus(tmp_path, TRAIN, VALID)
    records = load_manifests("train", corpus=tmp_path)
    cache = preload(records, tmp_path, workers=2)
    assert list(cache) == [r["id"] for r in records]
    for r in records:
        np.testing.assert_array_equal(cache[r["id"]], read_audio(r, tmp_path))
    assert preload([], tmp_path, workers=0) == {}


def test_batch_dataset_takes_cached_audio_before_the_file(tmp_path: Path) -> None:
    write_corpus(tmp_path, TRAIN, VALID)
    records = {r["id"]: r for r in load_manifests("train", corpus=tmp_path)}
    cached_id, disk_id = sorted(records)[:2]
    (tmp_path / records[cached_id]["path"]).unlink()  # only the cache has this one now
    distinctive = np.linspace(-0.5, 0.5, 12_345, dtype=np.float32)
    dataset = BatchDataset(
        [[cached_id, disk_id]], records, 1, 0, 0, None, tmp_path, {cached_id: distinctive}
    )
    batch = dataset[0]
    disk_samples = len(read_audio(records[disk_id], tmp_path))
    assert batch["attention_mask"].sum(-1).tolist() == [12_345, disk_samples]
    np.testing.assert_allclose(
        batch["input_values"][0, :12_345].numpy(), normalize_audio(distinctive), atol=1e-6
    )
    assert float(batch["seconds"]) == pytest.approx((12_345 + disk_samples) / 16000)
    assert batch["labels"].shape[0] == 2
    # without the cache the missing file is read, and fails
    with pytest.raises(sf.LibsndfileError):
        BatchDataset([[cached_id]], records, 1, 0, 0, None, tmp_path)[0]


def test_log_probs_on_cpu_are_the_same_batched_as_one_by_one() -> None:
    model = tiny_ctc_model()
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 8000, 12000)]
    batched = log_probs(model, audios)
    for audio, scores in zip(audios, batched, strict=True):
        (alone,) = log_probs(model, [audio])
        frames = int(model._get_feat_extract_output_lengths(torch.tensor(len(audio))))
        assert scores.shape == (frames, model.config.vocab_size)
        np.testing.assert_allclose(np.exp(scores).sum(-1), 1.0, atol=1e-4)
        np.testing.assert_allclose(scores, alone, atol=1e-4)  # padding is masked


def _passes(batches: list[list[str]], ids: set[str]) -> list[list[list[str]]]:
    """Cut a multi-pass plan where each pass has covered every utterance once."""
    passes: list[list[list[str]]] = [[]]
    seen: set[str] = set()
    for batch in batches:
        passes[-1].append(batch)
        seen.update(batch)
        if seen == ids:
            passes.append([])
            seen = set()
    assert passes[-1] == [], "the plan ends mid-pass"
    return passes[:-1]


def test_an_epoch_of_three_passes_sees_each_utterance_three_times_shuffled_anew(
    tmp_path: Path,
) -> None:
    lengths = [round(0.4 + 0.06 * i, 2) for i in range(24)]
    write_corpus(tmp_path, {"a": lengths[::2], "b": [*lengths[1::2], 2.5]}, VALID)
    cfg = TrainConfig(batch_seconds=3.0, max_utt_seconds=2.0)
    prog = Progress(batch_pos=17)
    records = plan_epoch(prog, cfg, tmp_path, passes=3)
    assert len(records) == 24 and all(r["seconds"] <= 2.0 for r in records.values())
    assert prog.batch_pos == 0
    counts = Counter(uid for batch in prog.batches for uid in batch)
    assert set(counts) == set(records) and set(counts.values()) == {3}
    first, second, third = _passes(prog.batches, set(records))
    # the first pass of the first epoch is the short-to-long curriculum, as with one pass
    assert first == make_batches(list(records.values()), 3.0, random.Random(0), shuffle=False)
    assert len({json.dumps(p) for p in (first, second, third)}) == 3
    # seeded: planning the same epoch again gives the same plan (a resume relies on it)
    again = Progress()
    plan_epoch(again, cfg, tmp_path, passes=3)
    assert again.batches == prog.batches
    one = Progress()
    plan_epoch(one, cfg, tmp_path)
    assert one.batches == first


def test_a_warm_start_is_shuffled_from_its_first_batch(tmp_path: Path) -> None:
    lengths = [round(0.4 + 0.06 * i, 2) for i in range(24)]
    write_corpus(tmp_path, {"a": lengths[::2], "b": lengths[1::2]}, VALID)
    scratch, warm = Progress(), Progress(step=5000)
    records = plan_epoch(scratch, TrainConfig(batch_seconds=3.0), tmp_path)
    plan_epoch(warm, TrainConfig(batch_seconds=3.0, init_step=5000), tmp_path)
    curriculum = make_batches(list(records.values()), 3.0, random.Random(0), shuffle=False)
    assert scratch.batches == curriculum  # from scratch: short to long first
    assert warm.batches != curriculum  # a fine-tune sees long utterances from the start
    assert Counter(u for b in warm.batches for u in b) == Counter(u for b in curriculum for u in b)


def test_an_oversampled_voice_is_planned_that_many_times_per_epoch(tmp_path: Path) -> None:
    lengths = [round(0.4 + 0.06 * i, 2) for i in range(24)]
    write_corpus(tmp_path, {"a": lengths[::2], "b": lengths[1::2]}, VALID)
    cfg = TrainConfig(batch_seconds=3.0, init_step=5000, oversample={"b": 3})
    prog = Progress()
    records = plan_epoch(prog, cfg, tmp_path)
    assert len(records) == 24  # the records themselves are not copied
    counts = Counter(uid for batch in prog.batches for uid in batch)
    assert {counts[u] for u, r in records.items() if r["engine"] == "a"} == {1}
    assert {counts[u] for u, r in records.items() if r["engine"] == "b"} == {3}
    # the plan survives a checkpoint: the saved config restores the same oversampling
    saved = dataclasses.asdict(cfg)
    assert load_train_config(saved).oversample == {"b": 3}


def test_oversampling_a_voice_the_corpus_lacks_stops_with_the_voices_it_has(
    tmp_path: Path,
) -> None:
    write_corpus(tmp_path, {"a": [0.5, 0.6], "b": [0.7]}, VALID)
    with pytest.raises(
        SystemExit, match="no training utterances of Joe; voices in the corpus: a, b"
    ):
        plan_epoch(Progress(), TrainConfig(oversample={"Joe": 2}), tmp_path)


@pytest.mark.parametrize("bad", ["joe", "joe=0", "=2", "joe=x"])
def test_oversample_option_refuses_what_is_not_voice_equals_count(bad: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--oversample", bad])
    assert parse_args(["--oversample", "joe=2", "--oversample", "kal=3"]).oversample == {
        "joe": 2,
        "kal": 3,
    }


def test_fit_cooldown_measures_the_step_rate_then_sizes_the_cooldown(tmp_path: Path) -> None:
    cfg = TrainConfig(init_step=1000)
    prog = Progress(step=1019)
    assert fit_cooldown(cfg, prog, None, 600.0, tmp_path) is None  # start-up steps
    prog.step = 1020
    since = fit_cooldown(cfg, prog, None, 600.0, tmp_path)
    assert since is not None and since[0] == 1020
    assert since[1] == pytest.approx(time.monotonic(), abs=1.0)
    prog.step = 1050
    assert fit_cooldown(cfg, prog, since, 600.0, tmp_path) == since  # < 30 s: keep measuring
    assert cfg.cooldown_steps == 0 and not (tmp_path / "log.jsonl").exists()

    prog.step = 1082  # 62 steps in (a little over) 31 s: about 2 steps/s
    assert fit_cooldown(cfg, prog, (1020, time.monotonic() - 31.0), 100.0, tmp_path) is None
    # the 82 steps done plus ~2 steps/s over the 100 s left
    assert 82 + 195 <= cfg.cooldown_steps <= 82 + 200
    assert lr_factor(cfg.cooldown_steps, cfg) == cfg.min_lr_ratio  # cooled down at the end
    assert lr_factor(82, cfg) > 2 * cfg.min_lr_ratio
    (event,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert event["event"] == "fit_cooldown" and event["step"] == 1082
    assert event["cooldown_steps"] == cfg.cooldown_steps
    assert event["steps_per_s"] == pytest.approx(2.0, abs=0.05)


def test_refit_cooldown_counts_validation_time_so_the_cooldown_ends_on_time(
    tmp_path: Path,
) -> None:
    cfg = TrainConfig(init_step=1000, cooldown_steps=2000)  # first fit: 2 steps/s raw
    prog = Progress(step=1600)
    # 600 steps in 400 s of session (validation included): 1.5 steps/s, 600 s left.
    refit_cooldown(cfg, prog, (1000, time.monotonic() - 400.0), 600.0, tmp_path)
    assert 600 + 895 <= cfg.cooldown_steps <= 600 + 900
    # The learning rate moves by the misestimate only, and reaches the floor on time.
    assert lr_factor(600, cfg) < lr_factor(600, TrainConfig(init_step=1000, cooldown_steps=2000))
    assert lr_factor(cfg.cooldown_steps, cfg) == cfg.min_lr_ratio
    (event,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert event["event"] == "refit_cooldown" and event["cooldown_steps"] == cfg.cooldown_steps
    # No steps yet in this session (just resumed): nothing to measure, nothing changes.
    refit_cooldown(cfg, prog, (1600, time.monotonic()), 600.0, tmp_path)
    assert 600 + 895 <= cfg.cooldown_steps <= 600 + 900


def test_fit_cooldown_with_no_time_left_cools_down_now(tmp_path: Path) -> None:
    cfg = TrainConfig(init_step=500)
    prog = Progress(step=560)
    assert fit_cooldown(cfg, prog, (530, time.monotonic() - 40.0), -5.0, tmp_path) is None
    assert cfg.cooldown_steps == 60


@pytest.mark.parametrize(
    "argv",
    [
        ["--fit-cooldown", "--max-minutes", "1"],
        ["--fit-cooldown", "--init-from", str(MODEL_DIR)],
    ],
    ids=["without-init-from", "without-max-minutes"],
)
def test_fit_cooldown_needs_a_warm_start_and_a_time_limit(tmp_path: Path, argv: list[str]) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match="--fit-cooldown needs --init-from and --max-minutes"):
        train.main([*argv, "--run-dir", str(run_dir), "--threads", "1"])
    assert not run_dir.exists()


@pytest.mark.parametrize("loader_workers", [1, 0])
def test_short_run_on_another_corpus_keeps_everything_in_its_run_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    loader_workers: int,
) -> None:
    corpus, run_dir = tmp_path / "packed", tmp_path / "run"
    write_corpus(corpus, TRAIN, VALID)
    # Where the committed curve lives, as far as this run can tell: it must stay untouched.
    committed = tmp_path / "committed-results"
    monkeypatch.setattr(train, "RESULTS_DIR", committed)
    real_log, real_checkpoint = train.log, train.checkpoint

    def log_here(record: dict[str, Any], where: Path = train.RUN_DIR) -> None:
        assert where == run_dir, f"log into {where}"  # before writing to training/work/run
        real_log(record, where)

    def checkpoint_here(path: Path, *args: Any) -> None:
        assert path.parent == run_dir, f"checkpoint to {path}"
        real_checkpoint(path, *args)

    monkeypatch.setattr(train, "log", log_here)
    monkeypatch.setattr(train, "checkpoint", checkpoint_here)
    train.main(
        [
            "--corpus", str(corpus),
            "--run-dir", str(run_dir),
            "--preload",
            "--passes-per-epoch", "2",
            "--loader-workers", str(loader_workers),
            "--batch-seconds", "2",
            "--max-minutes", "0.02",
            "--eval-minutes", "0",
            "--checkpoint-minutes", "1000",
            "--export-below", "-1",
            "--threads", "1",
            "--profile-steps", "1",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "decoded 8 utterances" in out
    assert "max minutes reached" in out

    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    start = events[0]
    assert start["event"] == "start" and start["corpus"] == str(corpus)
    assert set(start["corpus_hours"]) == {"a", "b"}
    valid = [e for e in events if e["event"] == "valid"]
    assert valid and {"cer", "wer"} <= set(valid[0])
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    progress = state["progress"]
    assert progress["step"] >= 1 and progress["step"] == valid[-1]["step"]
    counts = Counter(uid for batch in progress["batches"] for uid in batch)
    assert len(counts) == 8 and set(counts.values()) == {2}  # two passes per epoch
    # the curve of a run elsewhere goes to <run_dir>/results, never to the committed one
    results = run_dir / "results"
    assert (results / "train_log.jsonl").read_text() == (run_dir / "log.jsonl").read_text()
    assert not committed.exists()
    # --profile-steps: the ops that took the time, for diagnosing a slow device run
    assert "aten::" in (run_dir / "profile.txt").read_text()


def test_a_run_stopped_by_max_minutes_validates_its_final_weights(tmp_path: Path) -> None:
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    write_corpus(corpus, TRAIN, VALID)
    train.main(
        [
            "--corpus", str(corpus),
            "--run-dir", str(run_dir),
            "--batch-seconds", "2",
            "--max-minutes", "0",  # stop after the first step
            "--eval-minutes", "1000",  # no periodic validation would come
            "--export-below", "-1",
            "--threads", "1",
            "--loader-workers", "0",
        ]
    )  # fmt: skip
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    valid = [e for e in events if e["event"] == "valid"]
    assert [e["step"] for e in valid] == [1]
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert last["progress"]["step"] == 1
    # kept as best.pt when it is the best so far (an untrained model may score CER >= 1)
    assert (run_dir / "best.pt").exists() == (valid[0]["cer"] < 1.0)
