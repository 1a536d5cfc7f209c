"""A training run's hyper-parameters, its progress, and its learning-rate schedule.

What a checkpoint stores and a model card reports about a run, apart from the code that
trains (``training.train``) and the code that exports (``training.export``), so that both
read it without importing each other.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from training.model import ModelSize


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters; saved in the checkpoint and reused on resume."""

    seed: int = 1234
    lr: float = 2e-3
    warmup_steps: int = 500
    decay_steps: int = 1500  # inverse-sqrt decay constant after warmup
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    batch_seconds: float = 40.0
    max_utt_seconds: float = 12.0
    mask_time_prob: float = 0.05
    bf16: bool = True
    valid_per_engine: int = 40
    # Warm start (``--init-from``): the step the weights came from, steps to re-warm the
    # learning rate (the optimizer moments are not in an exported model), and an optional
    # linear cool-down to ``min_lr_ratio`` over that many steps after the warm start.
    init_step: int = 0
    rewarm_steps: int = 200
    cooldown_steps: int = 0
    # Voice -> renderings per epoch (each copy augmented anew): more of a voice the
    # model lags on without synthesizing more of it (``--oversample joe=2``).
    oversample: dict[str, int] = dataclasses.field(default_factory=dict)
    # Window distillation (``--window-distill W``): a share of each batch's utterances is
    # also cut into a server-sized window (``distill_window_s``, starting on a frame
    # boundary), and the model's frames on that window are pulled towards its own frames
    # on the whole utterance (KL, weight W): streaming sees windows, and should read them
    # as it reads whole utterances.  No alignment is needed.
    window_distill: float = 0.0
    distill_fraction: float = 0.25
    distill_window_s: tuple[float, float] = (1.0, 2.32)
    # Architecture changes on the way (``training.grow``), carried from card to card.
    history: list[str] = dataclasses.field(default_factory=list)
    size: ModelSize = dataclasses.field(default_factory=ModelSize)


@dataclasses.dataclass
class Progress:
    """Where training stands; everything needed to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_pos: int = 0
    batches: list[list[str]] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0  # wall time spent training, across resumes
    audio_seconds: float = 0.0  # audio seen, across resumes
    best_cer: float = 1.0
    exported_cer: float = 1.0


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then inverse-sqrt decay floored at ``min_lr_ratio``.

    No fixed end: the run length is unknown (it is resumed across sessions).  ``step``
    counts optimizer steps of this run; a warm-started run continues the schedule at
    ``init_step``, re-warms over ``rewarm_steps`` and may cool down linearly.
    """
    if cfg.init_step:
        rewarm = min(1.0, (step + 1) / max(1, cfg.rewarm_steps))
        factor = _schedule(step + cfg.init_step, cfg) * rewarm
        if cfg.cooldown_steps:
            left = max(0.0, 1.0 - step / cfg.cooldown_steps)
            factor = max(cfg.min_lr_ratio, factor * left)
        return factor
    return _schedule(step, cfg)


def _schedule(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay = math.sqrt(cfg.decay_steps / (cfg.decay_steps + step - cfg.warmup_steps))
    return max(cfg.min_lr_ratio, decay)


def load_train_config(saved: dict[str, Any]) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from its saved dict."""
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved.pop("size").items()
    }
    size = ModelSize(**fields)
    return TrainConfig(**saved, size=size)
