"""When a window is due, which samples it covers, and which output frames it keeps.

Windows start on model-frame boundaries, so frame *i* of a window is always frame
``start / stride + i`` of the utterance with the same receptive field; stitching is then
pure index arithmetic, like the Hugging Face ASR pipeline's stride chunking: each window
keeps its centre and drops the frames too close to its edges, except at the utterance's
own start and end.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import WindowConfig
from .geometry import FrameGeometry


@dataclass(frozen=True)
class WindowPlan:
    """Samples ``[start, end)`` of the utterance; keep frames ``[keep_from, keep_to)``.

    A negative ``start`` reaches into the stream audio before the utterance (its frames are
    context only: ``keep_from`` is never below 0).

    Frames from ``keep_to`` to the window's last frame are tentative (too little right
    context to trust); a final window keeps everything to the utterance end.
    """

    start: int
    end: int
    keep_from: int
    keep_to: int
    final: bool

    @property
    def length(self) -> int:
        return self.end - self.start


class WindowPlanner:
    """Decides the next window of one utterance from how much of it is stable."""

    def __init__(self, config: WindowConfig, geometry: FrameGeometry, sample_rate: int) -> None:
        config.validate(1000 * geometry.stride // sample_rate)
        self.geometry = geometry
        per_ms = sample_rate // 1000
        self.chunk = config.chunk_ms * per_ms
        self.left = config.left_context_ms * per_ms
        self.right = config.right_context_ms * per_ms
        self.max_chunks = config.max_catchup_chunks
        # With stream context the audio before an utterance is there to fill any window to
        # the steady length, so a final window takes that length too where it can.
        self.steady_finals = config.stream_context == "on"

    @property
    def steady_length(self) -> int:
        """Window length once an utterance is longer than the left context."""
        return self.left + self.chunk + self.right

    def next(
        self,
        stable_frames: int,
        available: int,
        closed: bool,
        before: int = 0,
        whole_final: bool = False,
    ) -> WindowPlan | None:
        """The window to run now, or None when none is due yet (or the utterance is done).

        ``before``: samples of stream audio before the utterance that a window may take as
        left context (a multiple of the frame stride; 0 = the utterance alone).
        ``whole_final``: the last window reads the whole utterance (and ``before``), so one
        model call sees every frame with all of its right context (the LM final's scores).
        """
        stride = self.geometry.stride
        stable_end = stable_frames * stride
        start = max(-before, stable_end - self.left)
        pending = available - self.right - stable_end
        chunks = min(pending // self.chunk, self.max_chunks) if pending > 0 else 0
        if closed:
            total = self.geometry.frames(available)
            if stable_frames >= total:
                return None
            if available - stable_end <= self.max_chunks * self.chunk + self.right:
                start = -before if whole_final else self._final_start(stable_end, available, before)
                start = max(-before, start)
                return WindowPlan(start, available, stable_frames, total, True)
        elif chunks < 1:
            return None
        centre_end = stable_end + chunks * self.chunk
        return WindowPlan(
            start, centre_end + self.right, stable_frames, centre_end // stride, False
        )

    def _final_start(self, stable_end: int, available: int, before: int = 0) -> int:
        """Where an utterance's last window starts: at least ``left`` before the unstable
        part, moved further left (more real context, never padding) until the window is
        ``left`` + a whole number of chunks long, plus the remainder of the utterance's
        length below one frame. So final windows come in a dozen lengths instead of one
        per 10 ms of utterance length, and batch with each other (on a GPU every new
        window length costs a call of its own and a cuDNN plan). With ``steady_finals``
        the window is the steady length (plus that remainder) whenever the unstable part
        fits in its chunk and right context and the audio reaches back far enough."""
        stride = self.geometry.stride
        unstable = max(available - stable_end, 0)
        if self.steady_finals and unstable <= self.chunk + self.right:
            start = (available - self.steady_length) // stride * stride
            if start >= -before:
                return start
        chunks = -(-unstable // self.chunk)
        start = available - self.left - chunks * self.chunk
        return start // stride * stride


def context_before(config: WindowConfig, geometry: FrameGeometry, sample_rate: int) -> int:
    """Stream samples before an utterance its windows may use (``stream_context``)."""
    if config.stream_context != "on":
        return 0
    left = config.left_context_ms * sample_rate // 1000
    return left // geometry.stride * geometry.stride


def warmup_lengths(config: WindowConfig, geometry: FrameGeometry, sample_rate: int) -> list[int]:
    """The window lengths worth running once at start-up: an utterance's first window and
    the steady-state one (so the first user does not pay for lazy initialisation)."""
    planner = WindowPlanner(config, geometry, sample_rate)
    return [planner.chunk + planner.right, planner.steady_length]
