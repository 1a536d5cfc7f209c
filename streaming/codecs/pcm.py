"""Byte-level helpers for raw PCM that arrives cut at arbitrary byte boundaries."""

from __future__ import annotations


class SampleAligner:
    """Carries a partial sample over to the next frame.

    Stock Vosk and Deepgram clients send raw PCM in whatever chunks their reader produced
    (``ffmpeg`` pipes, file reads); a chunk may end mid-sample. The native protocol rejects
    such frames, but these protocols never did, so the tail waits for the next frame.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._carry = b""

    def __call__(self, data: bytes) -> bytes:
        data = self._carry + data
        cut = len(data) - len(data) % self.width
        self._carry = data[cut:]
        return data[:cut]
