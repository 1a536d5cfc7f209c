"""Training data: manifests, length-bucketed batches and on-the-fly augmentation.

Audio stays on disk (FLAC) and is decoded per batch, so the corpus can grow to
tens of hours without a slow start-up or a large memory footprint.  Every
random choice of a batch (augmentation) is seeded by ``(seed, epoch, batch
index)``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from scipy.signal import butter, fftconvolve, istft, lfilter, sosfilt, stft

from training.model import CONV_STRIDE, SAMPLE_RATE, encode_text, normalize_audio
from training.synth import CORPUS_DIR, read_manifest

Utterance = dict[str, Any]


def load_manifests(
    split: str, engines: Sequence[str] | None = None, corpus: Path = CORPUS_DIR
) -> list[Utterance]:
    """All records of a split (optionally only some engines), in a stable order."""
    records: list[Utterance] = []
    for path in sorted((corpus / split).glob("*.jsonl")):
        records.extend(r for r in read_manifest(path) if engines is None or r["engine"] in engines)
    records.sort(key=lambda r: r["id"])
    return records


def records_by_engine(split: str, corpus: Path = CORPUS_DIR) -> dict[str, list[Utterance]]:
    """A split's records grouped per voice, each group in the stable manifest order."""
    groups: dict[str, list[Utterance]] = {}
    for record in load_manifests(split, corpus=corpus):
        groups.setdefault(record["engine"], []).append(record)
    return groups


def make_batches(
    utterances: Sequence[Utterance], batch_seconds: float, rng: random.Random, shuffle: bool
) -> list[list[str]]:
    """Group utterances of similar length so that ``longest * count <= batch_seconds``.

    With ``shuffle=False`` batches come short-to-long (a length curriculum for
    the first epoch: short utterances make CTC alignment easy to learn).
    """
    items = sorted(utterances, key=lambda r: (r["seconds"], r["id"]))
    if shuffle:  # jitter lengths a little so batch composition changes per epoch
        items = sorted(items, key=lambda r: r["seconds"] * rng.uniform(0.9, 1.1))
    batches: list[list[str]] = []
    current: list[str] = []
    longest = 0.0
    for r in items:
        longest_if_added = max(longest, r["seconds"])
        if current and longest_if_added * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current, longest_if_added = [], r["seconds"]
        current.append(r["id"])
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class Augment:
    """Probabilities and ranges of the on-the-fly augmentations.

    They aim at what the synthetic voices lack: other vocal tracts (speed and
    vocal-tract-length warps), rooms, background talkers and noise down to 0 dB
    SNR, and the channels speech reaches a server through (telephone band with
    8 kHz mu-law, Opus at a low bit rate).
    """

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.88, 1.12)
    warp_prob: float = 0.4
    warp_range: tuple[float, float] = (0.88, 1.14)
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.1, 0.7)
    gain_db: tuple[float, float] = (-20.0, 6.0)
    babble_prob: float = 0.15
    babble_snr_db: tuple[float, float] = (5.0, 20.0)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (0.0, 35.0)
    telephone_prob: float = 0.07
    codec_prob: float = 0.07


def _colored_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White noise through a random one-pole low-pass: hiss to rumble."""
    white = rng.standard_normal(n).astype(np.float32)
    pole = float(rng.uniform(0.0, 0.98))
    return np.asarray(lfilter([1.0 - pole], [1.0, -pole], white), dtype=np.float32)


def _room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room response: direct path plus exponentially decaying noise."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail *= float(rng.uniform(0.1, 0.5)) / (np.sqrt((tail**2).sum()) + 1e-9)
    tail[0] = 1.0
    return tail.astype(np.float32)


def vocal_tract_warp(audio: np.ndarray, alpha: float) -> np.ndarray:
    """Scale every frequency by ``alpha`` (VTLP-style), keeping tempo.

    A phase vocoder in the frequency direction: each STFT bin takes the
    magnitude and the instantaneous frequency found at ``bin / alpha``, the
    frequency scaled by ``alpha``, and its phase is accumulated from that, so
    moved partials stay coherent.  ``alpha > 1`` sounds like a shorter vocal
    tract (and a higher voice).  Cheap enough to run per utterance in the loader.
    """
    nfft, hop = 512, 128
    if len(audio) < nfft:
        return audio
    _, _, spec = stft(audio, nperseg=nfft, noverlap=nfft - hop)
    bins = np.arange(spec.shape[0], dtype=np.float64)
    expected = 2 * np.pi * bins * hop / nfft  # phase advance per hop at each bin's centre
    phase = np.angle(spec)
    advance = np.diff(phase, axis=1, prepend=phase[:, :1]) - expected[:, None]
    advance = expected[:, None] + (advance + np.pi) % (2 * np.pi) - np.pi
    src = bins / alpha
    inside = src <= bins[-1]
    lo = np.minimum(np.floor(src).astype(np.int64), len(bins) - 1)
    hi = np.minimum(lo + 1, len(bins) - 1)
    frac = (src - lo)[:, None]
    mag = np.abs(spec)
    new_mag = (mag[lo] * (1 - frac) + mag[hi] * frac) * inside[:, None]
    new_advance = alpha * (advance[lo] * (1 - frac) + advance[hi] * frac)
    new_phase = phase[lo, :1] + np.cumsum(new_advance, axis=1) - new_advance[:, :1]
    _, out = istft(new_mag * np.exp(1j * new_phase), nperseg=nfft, noverlap=nfft - hop)
    result = np.zeros(len(audio), dtype=np.float32)
    result[: min(len(audio), len(out))] = out[: len(audio)]
    return result


def telephone(audio: np.ndarray) -> np.ndarray:
    """A telephone channel: 300-3400 Hz band, 8 kHz, 8-bit mu-law, back to 16 kHz."""
    sos = butter(4, (300, 3400), btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = soxr.resample(sosfilt(sos, audio), SAMPLE_RATE, 8000)
    peak = float(np.abs(narrow).max()) + 1e-9
    x = np.clip(narrow / peak, -1.0, 1.0)
    mu = 255.0
    coded = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * peak
    return np.asarray(soxr.resample(decoded, 8000, SAMPLE_RATE), dtype=np.float32)[: len(audio)]


def opus_roundtrip(audio: np.ndarray, quality: float) -> np.ndarray:
    """Encode to Ogg/Opus and back (libsndfile); ``quality`` 0..1, lower = fewer bits."""
    buf = io.BytesIO()
    peak = float(np.abs(audio).max()) + 1e-9
    sf.write(
        buf,
        audio / max(peak, 1.0),
        SAMPLE_RATE,
        format="OGG",
        subtype="OPUS",
        compression_level=1.0 - quality,
    )
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    out = np.zeros(len(audio), dtype=np.float32)
    n = min(len(audio), len(decoded))
    out[:n] = decoded[:n] * max(peak, 1.0)
    return out


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """``audio`` repeated or cut to ``n`` samples."""
    return np.tile(audio, n // max(1, len(audio)) + 1)[:n]


def _mix(audio: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``other`` (tiled or cut to length) at ``snr_db`` below ``audio``'s power."""
    other = _fit(other, len(audio))
    power = float((audio**2).mean()) + 1e-10
    scale = np.sqrt(power / (float((other**2).mean()) + 1e-10) / 10 ** (snr_db / 10))
    return np.asarray(audio + other * scale, dtype=np.float32)


def augment(
    audio: np.ndarray,
    cfg: Augment,
    rng: np.random.Generator,
    talkers: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Speed, vocal-tract warp, room, gain with clipping, babble, noise, channel.

    ``talkers`` are other utterances (the rest of the batch) that may be mixed
    in quietly as background talkers, whose words are not in the labels.
    """
    if rng.random() < cfg.speed_prob:
        factor = float(rng.uniform(*cfg.speed_range))
        audio = soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)
    if rng.random() < cfg.warp_prob:
        audio = vocal_tract_warp(audio, float(rng.uniform(*cfg.warp_range)))
    if rng.random() < cfg.reverb_prob:
        ir = _room_impulse(rng, float(rng.uniform(*cfg.rt60_s)))
        audio = fftconvolve(audio, ir)[: len(audio)].astype(np.float32)
    audio = audio * float(10 ** (rng.uniform(*cfg.gain_db) / 20))
    audio = np.clip(audio, -1.0, 1.0)
    if talkers and rng.random() < cfg.babble_prob:
        count = int(rng.integers(1, min(3, len(talkers)) + 1))
        picks = rng.choice(len(talkers), size=count, replace=False)
        babble = np.zeros(len(audio), dtype=np.float32)
        for i in picks:  # each talker at unit power, starting at a random point
            talker = talkers[int(i)]
            talker = _fit(np.roll(talker, -int(rng.integers(0, len(talker)))), len(audio))
            babble += talker / (np.sqrt(float((talker**2).mean())) + 1e-6)
        audio = _mix(audio, babble, float(rng.uniform(*cfg.babble_snr_db)))
    if rng.random() < cfg.noise_prob:
        audio = _mix(audio, _colored_noise(len(audio), rng), float(rng.uniform(*cfg.snr_db)))
    channel = rng.random()
    if channel < cfg.telephone_prob:
        audio = telephone(audio)
    elif channel < cfg.telephone_prob + cfg.codec_prob:
        audio = opus_roundtrip(audio, float(rng.uniform(0.0, 0.5)))
    return audio


def read_audio(record: Utterance, corpus: Path = CORPUS_DIR) -> np.ndarray:
    """Decode one utterance (FLAC, or Opus in a packed corpus) to float32 at 16 kHz."""
    audio, rate = sf.read(corpus / record["path"], dtype="float32")
    assert rate == SAMPLE_RATE, f"{record['path']}: {rate} Hz"
    return np.asarray(audio, dtype=np.float32)


def collate(audios: Sequence[np.ndarray], texts: Sequence[str] | None) -> dict[str, torch.Tensor]:
    """Normalize and zero-pad a batch; labels are padded with -100 (ignored by CTC)."""
    normed = [normalize_audio(a) for a in audios]
    longest = max(len(a) for a in normed)
    values = np.zeros((len(normed), longest), dtype=np.float32)
    mask = np.zeros((len(normed), longest), dtype=np.int64)
    for i, a in enumerate(normed):
        values[i, : len(a)] = a
        mask[i, : len(a)] = 1
    batch = {"input_values": torch.from_numpy(values), "attention_mask": torch.from_numpy(mask)}
    if texts is not None:
        ids = [encode_text(t) for t in texts]
        labels = np.full((len(ids), max(len(x) for x in ids)), -100, dtype=np.int64)
        for i, x in enumerate(ids):
            labels[i, : len(x)] = x
        batch["labels"] = torch.from_numpy(labels)
    return batch


FRAME = math.prod(CONV_STRIDE)  # samples per model frame (the conv front end's total stride)


@dataclass(frozen=True)
class WindowCrops:
    """Which utterances of a batch are also cut into windows (window distillation; the
    values come from ``TrainConfig``)."""

    fraction: float
    seconds: tuple[float, float]


def window_crops(
    audios: Sequence[np.ndarray], spec: WindowCrops, rng: np.random.Generator
) -> dict[str, torch.Tensor] | None:
    """Cut a window out of some of ``audios``, each starting on a frame boundary.

    Returns the windows (normalized each on its own, as the server does), the batch rows
    they come from and their first frame in that row, or None when no utterance is long
    enough.  Frame ``i`` of a window is then frame ``offset + i`` of its utterance.
    """
    longest = int(spec.seconds[1] * SAMPLE_RATE) // FRAME * FRAME
    shortest = int(spec.seconds[0] * SAMPLE_RATE) // FRAME * FRAME
    candidates = [i for i, a in enumerate(audios) if len(a) >= shortest + FRAME]
    if not candidates:
        return None
    count = max(1, round(spec.fraction * len(audios)))
    rows = sorted(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    crops, offsets = [], []
    for row in rows:
        audio = audios[int(row)]
        size = int(rng.integers(shortest // FRAME, min(longest, len(audio) - FRAME) // FRAME + 1))
        size *= FRAME
        start = int(rng.integers(0, (len(audio) - size) // FRAME + 1)) * FRAME
        crops.append(audio[start : start + size])
        offsets.append(start // FRAME)
    batch = collate(crops, None)
    return {
        "crop_values": batch["input_values"],
        "crop_mask": batch["attention_mask"],
        "crop_rows": torch.tensor([int(r) for r in rows]),
        "crop_offsets": torch.tensor(offsets),
    }


class BatchDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Each item is one whole pre-planned batch, augmented with a per-batch seed."""

    def __init__(
        self,
        batches: Sequence[Sequence[str]],
        records: dict[str, Utterance],
        seed: int,
        epoch: int,
        first_index: int,
        aug: Augment | None,
        corpus: Path = CORPUS_DIR,
        cache: dict[str, np.ndarray] | None = None,
        crops: WindowCrops | None = None,
    ) -> None:
        self.crops = crops
        self.batches = batches
        self.records = records
        self.seed = seed
        self.epoch = epoch
        self.first_index = first_index
        self.aug = aug
        self.corpus = corpus
        self.cache = cache if cache is not None else {}

    def __len__(self) -> int:
        return len(self.batches) - self.first_index

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.first_index + item
        rng = np.random.default_rng([self.seed, self.epoch, index])
        recs = [self.records[uid] for uid in self.batches[index]]
        audios = [
            self.cache[r["id"]] if r["id"] in self.cache else read_audio(r, self.corpus)
            for r in recs
        ]
        if self.aug is not None:
            clean = list(audios)
            audios = [
                augment(a, self.aug, rng, clean[:i] + clean[i + 1 :]) for i, a in enumerate(clean)
            ]
        batch = collate(audios, [r["text"] for r in recs])
        if self.crops is not None and (cut := window_crops(audios, self.crops, rng)):
            batch.update(cut)
        batch["index"] = torch.tensor(index)
        batch["seconds"] = torch.tensor(sum(len(a) for a in audios) / SAMPLE_RATE)
        return batch


def preload(
    records: Sequence[Utterance], corpus: Path = CORPUS_DIR, workers: int = 1
) -> dict[str, np.ndarray]:
    """Decode every record once, in parallel, into memory (id -> float32 audio).

    For a fast accelerator fed by many data-loader processes: decoding Opus per batch
    would cost as much CPU as the augmentation.  Forked loader processes share the
    decoded arrays copy-on-write.
    """
    from concurrent.futures import ThreadPoolExecutor

    # libsndfile releases the GIL while decoding, so threads scale.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        audios = list(pool.map(lambda r: read_audio(r, corpus), records))
    return {r["id"]: a for r, a in zip(records, audios, strict=True)}


def corpus_hours(split: str, corpus: Path = CORPUS_DIR) -> dict[str, float]:
    """Hours of audio per engine in one split (for logs and the model card)."""
    hours: dict[str, float] = {}
    for path in sorted((corpus / split).glob("*.jsonl")):
        hours[path.stem] = round(sum(r["seconds"] for r in read_manifest(path)) / 3600, 3)
    return hours


def log_probs(model: Any, audios: list[np.ndarray], batch_seconds: float = 60.0) -> list[Any]:
    """Per-utterance (frames, vocab) log-probs, batched by length (padding is masked)."""
    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
    out: list[Any] = [None] * len(audios)
    device = next(model.parameters()).device
    start = 0
    with torch.inference_mode():
        while start < len(order):
            end = start + 1
            while (
                end < len(order)
                and len(audios[order[end]]) * (end - start + 1) <= batch_seconds * 16000
            ):
                end += 1
            idx = order[start:end]
            batch = collate([audios[i] for i in idx], None)
            mask = batch["attention_mask"].to(device)
            logits = model(batch["input_values"].to(device), attention_mask=mask).logits
            scores = torch.log_softmax(logits.float(), dim=-1).cpu()
            lengths = model._get_feat_extract_output_lengths(mask.sum(-1)).cpu()
            for row, i in enumerate(idx):
                out[i] = scores[row, : int(lengths[row])].numpy()
            start = end
    return out
