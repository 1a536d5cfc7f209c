"""training/pack.py: the Opus slice of the corpus that travels to a GPU machine."""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from tiny_corpus import RATE, write_corpus

from training import pack as packing
from training.data import load_manifests, read_audio
from training.synth import read_manifest

TRAIN = {
    "a": [0.6, 0.8, 1.0, 1.2, 0.7, 0.9, 13.0],  # the 13 s one is over max_seconds
    "b": [0.5, 1.1, 0.9, 0.8, 0.6],
}
VALID = {"a": [0.5, 0.6, 0.7], "b": [0.8, 0.9, 0.5]}
OLD = 1_000_000_000  # an mtime (2001) no encode of this test can produce


def test_hours_spec_is_parsed_per_engine() -> None:
    assert packing.parse_hours("joe=1.5,kal=1.2") == {"joe": 1.5, "kal": 1.2}
    assert packing.parse_hours(" awb=0.25") == {"awb": 0.25}
    assert packing.parse_hours("espeak=2") == {"espeak": 2.0}


@pytest.mark.parametrize("spec", ["joe", "joe=", "=1.5", "joe=1.5,", "joe=1.5,,kal=1"])
def test_malformed_hours_spec_is_an_argument_error(spec: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected ENGINE=HOURS"):
        packing.parse_hours(spec)


def test_malformed_hours_on_the_command_line_exits_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        packing.main(["--out", str(tmp_path / "out"), "--hours", "joe"])
    assert exited.value.code == 2
    assert "expected ENGINE=HOURS" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _records(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    # ids deliberately not in length order, lengths 0.5–15 s
    return [
        {"id": f"u{(i * 37) % count:04d}", "seconds": round(float(rng.uniform(0.5, 15.0)), 3)}
        for i in range(count)
    ]


def test_sample_is_seeded_sorted_within_budget_and_skips_long_utterances() -> None:
    records = _records(200)
    hours = 0.05  # 180 s of ~7.75 s on average: a sample, not everything
    picked = packing.sample_records(records, hours, seed=3, max_seconds=12.0)
    total = sum(r["seconds"] for r in picked)
    assert 0 < total <= hours * 3600
    assert all(r["seconds"] <= 12.0 for r in picked)
    ids = [r["id"] for r in picked]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # the budget is filled as far as the utterances left over allow
    left = [r for r in records if r["id"] not in set(ids) and r["seconds"] <= 12.0]
    assert all(total + r["seconds"] > hours * 3600 for r in left)
    # same seed, same sample (also from a reordered input); another seed, another sample
    again = packing.sample_records(records[::-1], hours, seed=3, max_seconds=12.0)
    assert again == picked
    other = packing.sample_records(records, hours, seed=4, max_seconds=12.0)
    assert {r["id"] for r in other} != set(ids)


def test_sample_takes_everything_that_fits_a_large_budget() -> None:
    records = _records(50)
    picked = packing.sample_records(records, hours=10.0, seed=1, max_seconds=12.0)
    assert [r["id"] for r in picked] == sorted(r["id"] for r in records if r["seconds"] <= 12.0)
    assert packing.sample_records(records, hours=0.0, seed=1, max_seconds=12.0) == []


def _opus_files(out: Path) -> set[Path]:
    return set(out.glob("*/*/*.opus"))


def _listed(out: Path) -> set[Path]:
    return {
        out / r["path"] for split in ("train", "valid") for r in load_manifests(split, corpus=out)
    }


def test_pack_writes_opus_manifests_and_summary_and_repacking_reuses_files(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "corpus", tmp_path / "packed"
    written = write_corpus(source, TRAIN, VALID)
    originals = {r["id"]: r for split in written.values() for r in split}
    hours = {"a": 3.0 / 3600, "b": 2.5 / 3600}

    summary = packing.pack(out, hours, valid_per_engine=2, workers=2, source=source)

    assert json.loads((out / "PACKED.json").read_text()) == summary
    files = _opus_files(out)
    assert files == _listed(out)  # every manifest path is an Opus file there, nothing else
    assert summary["bytes"] == sum(f.stat().st_size for f in files)
    for engine, budget in hours.items():
        train = read_manifest(out / "train" / f"{engine}.jsonl")
        assert train, engine
        seconds = sum(r["seconds"] for r in train)
        assert seconds <= budget * 3600
        assert summary["hours"][f"train/{engine}"] == round(seconds / 3600, 3)
        assert summary["utterances"][f"train/{engine}"] == len(train)
        assert all(r["seconds"] <= 12.0 for r in train)
        # valid: the first valid_per_engine by id, whatever the train hours
        valid = read_manifest(out / "valid" / f"{engine}.jsonl")
        wanted = sorted(
            (r for r in written["valid"] if r["engine"] == engine), key=lambda r: r["id"]
        )
        assert [r["id"] for r in valid] == [r["id"] for r in wanted[:2]]
        assert summary["utterances"][f"valid/{engine}"] == 2
        for record in train + valid:
            original = originals[record["id"]]
            # the record is kept as it was, only the path now names the Opus file
            assert {**record, "path": original["path"]} == original
            assert record["path"] == str(Path(original["path"]).with_suffix(".opus"))
            info = sf.info(str(out / record["path"]))
            assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", RATE)
            audio = read_audio(record, out)  # asserts 16 kHz
            flac = read_audio(original, source)
            assert abs(len(audio) - len(flac)) <= RATE // 100, record["id"]
            rms = float(np.sqrt(np.mean(audio**2)))
            assert rms == pytest.approx(float(np.sqrt(np.mean(flac**2))), rel=0.25)

    # Fewer hours: files no longer listed go, the others are reused as they are.
    for f in files:
        os.utime(f, (OLD, OLD))
    smaller = packing.pack(
        out, {"a": 1.5 / 3600, "b": 1.0 / 3600}, valid_per_engine=1, workers=2, source=source
    )
    kept = _opus_files(out)
    assert kept == _listed(out)
    assert len(kept) < len(files)
    assert smaller["utterances"]["valid/a"] == smaller["utterances"]["valid/b"] == 1
    assert sum(r["seconds"] for r in load_manifests("train", ["a"], out)) <= 1.5
    for f in kept:
        if f in files:
            assert f.stat().st_mtime == OLD, f"{f.name} was encoded again"
        else:
            assert f.stat().st_mtime > OLD
    assert smaller["bytes"] == sum(f.stat().st_size for f in kept)


def test_an_encode_cut_short_is_redone_by_the_next_packing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, out = tmp_path / "corpus", tmp_path / "packed"
    write_corpus(source, {"a": [0.5, 0.6, 0.7]}, {"a": [0.5]})
    monkeypatch.setattr(packing, "ProcessPoolExecutor", ThreadPoolExecutor)
    real_write = sf.write

    def killed_halfway(file: Any, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(b"OggS\0\2")  # the first bytes of a file, then the process dies
        raise RuntimeError("killed")

    monkeypatch.setattr(sf, "write", killed_halfway)
    with pytest.raises(RuntimeError, match="killed"):
        packing.pack(out, {"a": 1.0}, valid_per_engine=1, workers=1, source=source)
    monkeypatch.setattr(sf, "write", real_write)

    packing.pack(out, {"a": 1.0}, valid_per_engine=1, workers=1, source=source)
    records = load_manifests("train", corpus=out) + load_manifests("valid", corpus=out)
    assert len(records) == 4
    for record in records:
        assert len(read_audio(record, out)) == round(record["seconds"] * RATE)
    assert {p.suffix for p in out.rglob("*") if p.is_file()} == {".opus", ".jsonl", ".json"}


def test_an_engine_without_training_records_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "corpus"
    write_corpus(source, {"a": [0.5]}, {"a": [0.5]})
    with pytest.raises(SystemExit, match="no train records for zzz"):
        packing.pack(tmp_path / "packed", {"zzz": 1.0}, valid_per_engine=1, source=source)
