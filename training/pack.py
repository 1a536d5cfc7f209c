"""Pack a slice of the corpus into a small, self-contained folder for a GPU machine.

A lent GPU machine reaches no network and has no speech synthesizers, and only about
64 MB travel with a call.  This writes a chosen number of hours per voice, Opus-encoded
(~13 kb/s, full 8 kHz speech band kept), plus a slice of the validation split, as a
corpus folder with the same layout as ``training/work/corpus`` (``split/engine.jsonl``
manifests; paths relative to the folder), so ``python -m training.train --corpus DIR``
trains from it unchanged.  The slice is a seeded random sample, so packing again gives
the same files.

    python -m training.pack --out training/work/packed \\
        --hours joe=1.5,kal=1.2,awb=1.0,kal16=0.8,espeak=0.6 --valid-per-engine 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import soundfile as sf

from training.model import SAMPLE_RATE
from training.synth import CORPUS_DIR, read_manifest

OPUS_LEVEL = 0.98  # libsndfile's Opus compression level: ~13 kb/s, keeps 0-8 kHz


def parse_hours(spec: str) -> dict[str, float]:
    """``"joe=1.6,kal=1.2"`` -> ``{"joe": 1.6, "kal": 1.2}``."""
    hours: dict[str, float] = {}
    for part in spec.split(","):
        engine, _, value = part.partition("=")
        if not engine or not value:
            raise argparse.ArgumentTypeError(f"expected ENGINE=HOURS, got {part!r}")
        hours[engine.strip()] = float(value)
    return hours


def sample_records(
    records: list[dict[str, Any]], hours: float, seed: int, max_seconds: float
) -> list[dict[str, Any]]:
    """A seeded random subset of ``records`` adding up to at most ``hours``."""
    pool = sorted((r for r in records if r["seconds"] <= max_seconds), key=lambda r: r["id"])
    random.Random(seed).shuffle(pool)
    picked: list[dict[str, Any]] = []
    total = 0.0
    for r in pool:
        if total + r["seconds"] > hours * 3600:
            continue
        picked.append(r)
        total += r["seconds"]
    return sorted(picked, key=lambda r: r["id"])


def _encode(job: tuple[str, str]) -> int:
    """Re-encode one FLAC file as Ogg/Opus (unless done already); returns its size."""
    source, target = job
    if Path(target).is_file():  # packing again (resumed, or fewer hours) reuses files
        return Path(target).stat().st_size
    audio, rate = sf.read(source, dtype="float32")
    assert rate == SAMPLE_RATE, f"{source}: {rate} Hz"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    # Write beside it, then rename: an encode cut short must not look done next time.
    part = f"{target}.part"
    sf.write(part, audio, rate, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL)
    os.replace(part, target)
    return Path(target).stat().st_size


def pack(
    out: Path,
    hours: dict[str, float],
    valid_per_engine: int,
    seed: int = 1234,
    max_seconds: float = 12.0,
    workers: int = 2,
    source: Path = CORPUS_DIR,
) -> dict[str, Any]:
    """Write the packed corpus to ``out``; returns a summary (hours and bytes per split)."""
    jobs: list[tuple[str, str]] = []
    summary: dict[str, Any] = {"hours": {}, "utterances": {}}
    for split, per_engine in (("train", hours), ("valid", None)):
        engines = per_engine or {p.stem: 0.0 for p in sorted((source / split).glob("*.jsonl"))}
        (out / split).mkdir(parents=True, exist_ok=True)
        for engine, want in engines.items():
            records = read_manifest(source / split / f"{engine}.jsonl")
            if not records:
                raise SystemExit(f"no {split} records for {engine} under {source}")
            if per_engine is None:
                chosen = sorted(records, key=lambda r: r["id"])[:valid_per_engine]
            else:
                chosen = sample_records(records, want, seed, max_seconds)
            lines = []
            for r in chosen:
                rel = str(Path(r["path"]).with_suffix(".opus"))
                jobs.append((str(source / r["path"]), str(out / rel)))
                lines.append(json.dumps({**r, "path": rel}))
            (out / split / f"{engine}.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
            key = f"{split}/{engine}"
            summary["hours"][key] = round(sum(r["seconds"] for r in chosen) / 3600, 3)
            summary["utterances"][key] = len(chosen)
    wanted = {Path(target) for _, target in jobs}
    for stale in out.glob("*/*/*.opus"):  # left by an earlier packing with more hours
        if stale not in wanted:
            stale.unlink()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        summary["bytes"] = sum(pool.map(_encode, jobs, chunksize=64))
    (out / "PACKED.json").write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (git-ignored)")
    p.add_argument(
        "--hours",
        type=parse_hours,
        required=True,
        help="training hours per voice, e.g. joe=1.6,kal=1.2,awb=1.0",
    )
    p.add_argument("--valid-per-engine", type=int, default=20)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    summary = pack(args.out, args.hours, args.valid_per_engine, args.seed, workers=args.workers)
    print(json.dumps(summary, indent=1))
    print(f"{summary['bytes'] / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
