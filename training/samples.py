"""Render small demo/test WAV files from held-out sentences with training voices.

* ``demo.wav``: three sentences by one voice (espeak-ng en-us+m3), ~1 s pauses;
* ``utterances.wav``: six sentences, one per training voice setting, separated
  by 1.0-1.5 s of silence;
* ``samples.json``: ``{file name: {duration, sample_rate, sentences: [{text,
  voice, start, end}]}}`` -- start/end in seconds of the speech (edge silence
  trimmed), text = the label (lowercase, as the model's vocabulary spells it).

All sentences come from the test split, so the model never trained on them.
Output: 16 kHz mono 16-bit WAV in ``training/samples/``.

Usage: ``python -m training.samples``
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from training.model import SAMPLE_RATE
from training.synth import _piper_voice, _read_resampled, trim_silence
from training.text import DEFAULT_OUT as TEXT_DIR
from training.text import Sentence, load_split

OUT_DIR = Path(__file__).resolve().parent / "samples"
# (engine label, fixed voice settings): plain, clearly intelligible renderings.
DEMO_VOICE = "espeak:en-us+m3"  # the voice tiny-en reads best: a demo people can follow
MIXED_VOICES = ("joe", "espeak:en-us+m3", "kal16", "espeak:en-gb-x-rp+f3", "awb", "kal")


def render(voice: str, text: str) -> np.ndarray:
    """Synthesize ``text`` with a fixed (not randomized) voice setting."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        if voice == "joe":
            from piper import SynthesisConfig

            with wave.open(wav, "wb") as out:
                _piper_voice().synthesize_wav(
                    text, out, syn_config=SynthesisConfig(length_scale=1.0)
                )
        elif voice.startswith("espeak:"):
            cmd = ["espeak-ng", "-v", voice.split(":", 1)[1], "-s", "160", "-w", wav, text]
            subprocess.run(cmd, check=True, capture_output=True)
        elif voice in ("kal16", "awb"):
            subprocess.run(
                ["flite", "-voice", voice, "-t", text, "-o", wav], check=True, capture_output=True
            )
        elif voice == "kal":
            txt = os.path.join(tmp, "in.txt")
            Path(txt).write_text(text + "\n", encoding="utf-8")
            cmd = ["text2wave", "-eval", "(voice_kal_diphone)", txt, "-o", wav]
            subprocess.run(cmd, check=True, capture_output=True)
        else:
            raise ValueError(voice)
        audio = trim_silence(_read_resampled(wav), keep_s=0.0)
    return audio * (0.7 / max(1e-6, float(np.abs(audio).max())))


def pick_sentences(
    count: int, skip: int = 0, min_words: int = 7, max_words: int = 12
) -> list[Sentence]:
    """Deterministically pick medium-length held-out test sentences."""
    candidates = [
        s for s in load_split("test", TEXT_DIR) if min_words <= len(s.text.split()) <= max_words
    ]
    return candidates[skip : skip + count]


def compose(
    parts: list[tuple[str, Sentence]], gaps: list[float], lead: float = 0.5
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Concatenate renderings with silences; return audio and per-sentence timings."""
    pieces = [np.zeros(int(lead * SAMPLE_RATE), dtype=np.float32)]
    cursor = lead
    entries = []
    for i, (voice, sentence) in enumerate(parts):
        audio = render(voice, sentence.tts)
        start = cursor
        cursor += len(audio) / SAMPLE_RATE
        entries.append(
            {
                "text": sentence.text,
                "voice": voice,
                "start": round(start, 3),
                "end": round(cursor, 3),
            }
        )
        gap = gaps[i] if i < len(gaps) else lead
        pieces += [audio, np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)]
        cursor += int(gap * SAMPLE_RATE) / SAMPLE_RATE
    return np.concatenate(pieces), entries


def main() -> None:
    """Write the sample WAVs and ``samples.json``."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    demo_parts = [(DEMO_VOICE, s) for s in pick_sentences(3)]
    mixed_parts = list(zip(MIXED_VOICES, pick_sentences(len(MIXED_VOICES), skip=3), strict=True))
    for name, parts, gaps in (
        ("demo.wav", demo_parts, [1.0, 1.0]),
        ("utterances.wav", mixed_parts, [1.0, 1.5, 1.2, 1.0, 1.3]),
    ):
        audio, entries = compose(parts, gaps)
        sf.write(OUT_DIR / name, audio, SAMPLE_RATE, subtype="PCM_16")
        duration = round(len(audio) / SAMPLE_RATE, 3)
        manifest[name] = {"duration": duration, "sample_rate": SAMPLE_RATE, "sentences": entries}
        print(f"{name}: {duration:.1f} s, {len(entries)} sentences")
    (OUT_DIR / "samples.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
