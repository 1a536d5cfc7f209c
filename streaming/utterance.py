"""One utterance: its audio, the frames stitched from its windows, and its live text."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .decoding import best_path
from .feature_cache import FeatureKey
from .stabilizer import Hypothesis, Stabilizer
from .windowing import WindowPlan, WindowPlanner


class SampleBuffer:
    """Append-only float32 buffer with amortised O(1) appends."""

    def __init__(self, capacity: int = 16000) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray) -> None:
        needed = self._size + samples.size
        if needed > self._data.size:
            grown = np.zeros(max(needed, 2 * self._data.size), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = samples
        self._size = needed

    def slice(self, start: int, end: int) -> np.ndarray:
        return np.array(self._data[start:end])


class StreamTail:
    """The last samples of a stream, kept as the chunks that came (no copying per chunk),
    so an utterance can take the audio before its start as left context."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: deque[np.ndarray] = deque()
        self._size = 0
        self.end = 0  # stream position just after the last sample

    def append(self, samples: np.ndarray) -> None:
        """Add a chunk; keep at least ``capacity`` samples before it."""
        self._chunks.append(samples)
        self._size += samples.size
        self.end += samples.size
        while self._chunks and self._size - self._chunks[0].size >= self.capacity + samples.size:
            self._size -= self._chunks.popleft().size

    def before(self, at: int, most: int, multiple: int) -> np.ndarray:
        """Up to ``most`` samples ending at stream position ``at``, as many as are kept,
        cut to a multiple of ``multiple`` (the model's frame stride)."""
        first = self.end - self._size
        length = (at - max(at - most, first, 0)) // multiple * multiple
        if length <= 0 or at > self.end:
            return np.zeros(0, dtype=np.float32)
        kept = np.concatenate(list(self._chunks)) if len(self._chunks) > 1 else self._chunks[0]
        stop = at - first
        return np.array(kept[stop - length : stop], dtype=np.float32)


@dataclass(frozen=True)
class WindowRequest:
    """Audio for the model; ``plan`` says how to stitch the answer back in."""

    utterance_id: int
    plan: WindowPlan
    samples: np.ndarray
    key: FeatureKey  # where the window sits in its utterance, for feature reuse


class Utterance:
    """Pure state of one utterance; the session drives it."""

    def __init__(
        self,
        utterance_id: int,
        start_sample: int,
        planner: WindowPlanner,
        stabilizer: Stabilizer,
        *,
        keep_scores: bool = False,
        whole_final: bool = False,
        before: np.ndarray | None = None,
        opened: int | None = None,
        replay_windows: tuple[int, ...] = (),
    ) -> None:
        self.id = utterance_id
        # Where the VAD opened it, and the hop count of every non-final window run so far:
        # what a resumed session needs to run the very same windows (streaming.resume).
        self.opened = start_sample if opened is None else opened
        self.windows: list[int] = []
        self._replay = deque(replay_windows)
        # Stream audio just before the utterance, usable as left context (stream_context).
        self.before = before if before is not None else np.zeros(0, dtype=np.float32)
        self.start_sample = start_sample
        self.audio = SampleBuffer()
        self.closed = False
        self.reason = ""
        self.speech_end_sample = start_sample
        self.heard = 0  # end of the latest window applied, in samples from the start
        self._planner = planner
        self._stabilizer = stabilizer
        self._ids = np.zeros(0, dtype=np.int32)
        self._probs = np.zeros(0, dtype=np.float32)
        self._scores: list[np.ndarray] | None = [] if keep_scores else None
        # The last window reads the whole utterance; its view of every frame is what the LM
        # final searches (stitched frames had only the windows' right context).
        self._whole_final = whole_final
        self._whole_scores: np.ndarray | None = None
        self._tentative_scores = np.zeros((0, 0), dtype=np.float32)
        self._tentative_ids = np.zeros(0, dtype=np.int32)
        self._tentative_probs = np.zeros(0, dtype=np.float32)
        # Names this utterance's audio in the engine's feature cache: unique per object,
        # and small, so a cache entry does not keep the utterance's audio alive.
        self._feature_stream = object()

    @property
    def stable_frames(self) -> int:
        return int(self._ids.size)

    @property
    def done(self) -> bool:
        """Closed and every frame decoded: ready for its final."""
        return (
            self.closed
            and self._planner.next(
                self.stable_frames, len(self.audio), True, self.before.size, self._whole_final
            )
            is None
        )

    @property
    def backlog(self) -> int:
        """Samples received but not yet stable (what inference still owes this utterance)."""
        return max(0, len(self.audio) - self.stable_frames * self._planner.geometry.stride)

    def append(self, samples: np.ndarray) -> None:
        self.audio.append(samples)

    def close(self, reason: str, speech_end_sample: int) -> None:
        self.closed = True
        self.reason = reason
        self.speech_end_sample = speech_end_sample

    def next_request(self) -> WindowRequest | None:
        plan = self._replayed_plan() if self._replay else None
        if plan is None and self._replay:
            return None  # waiting for the audio of the next replayed window
        if plan is None:
            plan = self._planner.next(
                self.stable_frames, len(self.audio), self.closed, self.before.size,
                self._whole_final,
            )  # fmt: skip
        if plan is None:
            return None
        key = FeatureKey(self._feature_stream, plan.start, last=plan.final)
        if plan.start >= 0:
            return WindowRequest(self.id, plan, self.audio.slice(plan.start, plan.end), key)
        context = self.before[self.before.size + plan.start :]
        return WindowRequest(
            self.id, plan, np.concatenate([context, self.audio.slice(0, plan.end)]), key
        )

    def _replayed_plan(self) -> WindowPlan | None:
        """The next of the windows the stream ran before it was resumed here: the same
        hop count over the same audio (None until that much audio is back)."""
        planner = self._planner
        stable_end = self.stable_frames * planner.geometry.stride
        needed = stable_end + self._replay[0] * planner.chunk + planner.right
        if len(self.audio) < needed:
            if self.closed:  # it ended sooner this time: plan as usual from here
                self._replay.clear()
            return None
        return planner.next(self.stable_frames, needed, False, self.before.size)

    def apply(self, plan: WindowPlan, logprobs: np.ndarray) -> Hypothesis:
        """Stitch one window's output in; returns the new hypothesis."""
        if plan.keep_from != self.stable_frames:
            raise RuntimeError("window result does not continue the stable frames")
        if not plan.final:
            stride = self._planner.geometry.stride
            self.windows.append((plan.keep_to - plan.keep_from) * stride // self._planner.chunk)
            if self._replay:
                self._replay.popleft()
        self.heard = plan.end
        ids, probs = best_path(logprobs)
        offset = plan.start // self._planner.geometry.stride
        keep = slice(plan.keep_from - offset, plan.keep_to - offset)
        self._ids = np.concatenate([self._ids, ids[keep]])
        self._probs = np.concatenate([self._probs, probs[keep]])
        tail = slice(plan.keep_to - offset, None)
        if self._scores is not None:
            self._scores.append(logprobs[keep])
            self._tentative_scores = logprobs[tail] if not plan.final else logprobs[:0]
            if plan.final and self._whole_final and offset <= 0:
                self._whole_scores = logprobs[-offset : plan.keep_to - offset]
        self._tentative_ids = ids[tail] if not plan.final else ids[:0]
        self._tentative_probs = probs[tail] if not plan.final else probs[:0]
        return self._stabilizer.update(
            self._ids,
            self._probs,
            self._tentative_ids,
            self._tentative_probs,
            final=plan.final,
        )

    @property
    def frame_probs(self) -> np.ndarray:
        """Best-path probability of every stable frame."""
        return self._probs

    def scores(self) -> np.ndarray:
        """All stable frames' (frames, vocab) log-probabilities (``keep_scores`` only)."""
        if self._scores is None:
            raise RuntimeError("this utterance does not keep its scores")
        if not self._scores:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self._scores)

    def final_scores(self, cut: int) -> np.ndarray:
        """The (frames, vocab) log-probabilities the LM final searches, from frame ``cut``:
        the last window's whole-utterance view where it read one, else the stitched frames."""
        if self._whole_scores is not None:
            return self._whole_scores[cut:]
        return self.scores()[cut:]

    @property
    def tentative_scores(self) -> np.ndarray:
        """The latest window's (frames, vocab) log-probabilities past the stable frames
        (``keep_scores`` only)."""
        return self._tentative_scores

    def decode_from(self, frame: int) -> Hypothesis:
        """The live text once the words before ``frame`` are decided elsewhere (LM early
        commits): greedy decoding from there on."""
        self._stabilizer.skip_to(frame)
        return self._stabilizer.update(
            self._ids, self._probs, self._tentative_ids, self._tentative_probs
        )

    def finalize(self) -> Hypothesis:
        """Commit whatever is left once no window is due any more (idempotent)."""
        return self._stabilizer.update(
            self._ids, self._probs, self._ids[:0], self._probs[:0], final=True
        )
