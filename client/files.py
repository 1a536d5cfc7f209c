"""Audio files as a live stream: load, convert to mono PCM, and pace like a microphone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Rates the server accepts as-is (protocol.md); anything else is resampled to 16 kHz here.
SERVER_RATES = (8000, 16000, 32000, 44100, 48000)
FALLBACK_RATE = 16000
#: What a folder is searched for (soundfile reads more, name them explicitly to use them).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")


class AudioFileError(Exception):
    """A file that is missing, unreadable or not audio (a usage error, not a server one)."""


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the audio files inside them (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
            if not found:
                raise AudioFileError(
                    f"{p}: folder has no audio files ({', '.join(AUDIO_SUFFIXES)})"
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise AudioFileError(f"{p}: no such file or folder")
    return out


def to_int16(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to s16 (clipped, so a hot recording cannot wrap around)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float64) * 32768.0, -32768, 32767)
    return np.round(scaled).astype(np.int16)


def prepare_audio(audio: npt.NDArray[np.floating], rate: int) -> tuple[npt.NDArray[np.int16], int]:
    """Mono s16 at a rate the server accepts: mix channels down (mean), keep the rate when the
    server takes it (no needless resampling), else resample to 16 kHz with soxr."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    elif a.ndim != 1:
        raise ValueError(f"expected 1-D or 2-D audio, got shape {a.shape}")
    if rate not in SERVER_RATES:
        import soxr

        a = soxr.resample(a, rate, FALLBACK_RATE, quality="HQ").astype(np.float32)
        rate = FALLBACK_RATE
    return to_int16(a), rate


def load_audio(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """Read any soundfile-readable file as mono s16 at a server-accepted rate."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot read audio: {exc}") from exc
    return prepare_audio(data, int(rate))


def chunk_samples(rate: int, chunk_ms: float) -> int:
    n = round(rate * chunk_ms / 1000.0)
    if n < 1:
        raise ValueError(f"chunk of {chunk_ms} ms is less than one sample at {rate} Hz")
    return int(n)


def split_chunks(audio: npt.NDArray[np.int16], size: int) -> list[npt.NDArray[np.int16]]:
    return [audio[i : i + size] for i in range(0, len(audio), size)]


async def paced_chunks(
    chunks: Sequence[npt.NDArray[np.int16]],
    rate: int,
    speed: float,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[npt.NDArray[np.int16]]:
    """Yield chunks when a live microphone would have delivered them: chunk k as soon as its
    last sample has been "recorded", at `speed` × real time (0 = no waiting at all).

    The schedule is absolute (from the start), so a late send is caught up on rather than
    accumulating drift. `stop` ends the stream early (Ctrl-C).
    """
    t0 = time.monotonic()
    done = 0  # samples yielded
    for chunk in chunks:
        if stop is not None and stop.is_set():
            return
        done += len(chunk)
        if speed > 0:
            due = t0 + done / rate / speed
            delay = due - time.monotonic()
            if delay > 0:
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        return
                    except asyncio.TimeoutError:
                        pass
        else:
            await asyncio.sleep(0)  # let the receiver run between chunks
        yield chunk
