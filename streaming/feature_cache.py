"""Reuse of the convolutional front end's output across a stream's overlapping windows.

A window of 2.32 s that advances by 240 ms re-reads about nine tenths of the audio its
predecessor read. For a model whose feature extractor works frame by frame (every
convolution unpadded, normalised per position: ``feat_extract_norm`` "layer", as in the
bundled tiny-en), the features of a frame depend only on the 400 samples under it, so the
frames a stream's previous window already produced are taken from here and only the new
frames are computed. Half of a window's model time on the CPU is that front end.

The one change to the outputs: each window's audio is still scaled by its own mean and
variance, so a reused frame carries the scale of the window that first produced it rather
than of the current one (with no scaling the outputs are exact; see tests/test_feature_cache.py).

This module is bookkeeping only (no torch): :meth:`streaming.model.LoadedModel.infer_reusing`
does the computing; the engine's worker thread is the only caller, so there is no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

DEFAULT_STREAMS = 512  # entries kept; at ~60 KB (tiny-en, bf16) each, about 30 MB at most


@dataclass(frozen=True)
class FeatureKey:
    """Where a window sits in its stream, so its frames can be matched with earlier ones.

    ``stream`` names one run of contiguous audio (a session's utterance); ``start`` is the
    window's first sample in that run's own count (negative for context taken from before
    it); ``last`` says no later window of the run will come, so its entry can go.
    """

    stream: Hashable
    start: int
    last: bool = False


@dataclass
class _Entry:
    first_frame: int
    features: Any  # (frames, channels), whatever array type the model computes in


class FeatureCache:
    """The last window's front-end features per stream, least recently used dropped first."""

    def __init__(self, streams: int = DEFAULT_STREAMS) -> None:
        if streams < 1:
            raise ValueError("the feature cache needs room for at least one stream")
        self._streams = streams
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.hits = 0  # windows that reused frames
        self.misses = 0  # windows computed whole
        self.reused_frames = 0

    def __len__(self) -> int:
        return len(self._entries)

    def reusable(self, key: FeatureKey, stride: int, frames: int) -> tuple[int, Any]:
        """How many of this window's first ``frames`` frames are known, and those frames
        (None when none are): the frames of an earlier window of the same stream that
        this window also covers."""
        entry = self._entries.get(key.stream)
        if entry is None or key.start % stride:
            return 0, None
        first = key.start // stride
        offset = first - entry.first_frame
        known = min(len(entry.features) - offset, frames)
        if offset < 0 or known <= 0:
            return 0, None
        self._entries.move_to_end(key.stream)
        return known, entry.features[offset : offset + known]

    def count(self, reused: int) -> None:
        """Record one window that reused ``reused`` frames (0: computed whole)."""
        if reused:
            self.hits += 1
            self.reused_frames += reused
        else:
            self.misses += 1

    def store(self, key: FeatureKey, stride: int, features: Any) -> None:
        """Keep a window's features for its stream's next window (or forget the stream
        when this was its last window)."""
        if key.last or key.start % stride:
            self._entries.pop(key.stream, None)
            return
        self._entries[key.stream] = _Entry(key.start // stride, features)
        self._entries.move_to_end(key.stream)
        while len(self._entries) > self._streams:
            self._entries.popitem(last=False)
