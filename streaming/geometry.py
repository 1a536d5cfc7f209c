"""The model's frame geometry: how many output frames a window of samples yields.

It belongs to the model (its convolutional front end), so it sits in the engine layer;
the window planner and the session read it from there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameGeometry:
    """The convolutional front end's kernels and strides, from the model config."""

    kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)

    @property
    def stride(self) -> int:
        total = 1
        for s in self.strides:
            total *= s
        return total

    def frames(self, samples: int) -> int:
        """Output frames for ``samples`` input samples (as the model computes them)."""
        length = samples
        for kernel, stride in zip(self.kernels, self.strides):
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length
