"""One typed, frozen configuration for the whole server; the CLI only fills it in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SUPPORTED_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
SUPPORTED_ENCODINGS = ("pcm_s16le", "pcm_f32le")
MODEL_SAMPLE_RATE = 16000
ROOT_PROTOCOLS = ("native", "vosk", "whisperlive")


@dataclass(frozen=True)
class VadConfig:
    """WebRTC VAD gate: which audio counts as an utterance.

    ``onset_ms`` of mostly-voiced audio opens an utterance, which then starts ``preroll_ms``
    before the onset so the first phoneme is not clipped; ``hangover_ms`` of continuous
    non-speech closes it.
    """

    aggressiveness: int = 2
    frame_ms: int = 30
    onset_ms: int = 180
    onset_ratio: float = 0.8
    preroll_ms: int = 300
    hangover_ms: int = 500
    max_utterance_s: float = 30.0

    def validate(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError("vad aggressiveness must be 0, 1, 2 or 3")
        if self.frame_ms not in (10, 20, 30):
            raise ValueError("vad frame length must be 10, 20 or 30 ms")
        if self.onset_ms < self.frame_ms:
            raise ValueError("vad onset must be at least one VAD frame")
        if not 0.0 < self.onset_ratio <= 1.0:
            raise ValueError("vad onset ratio must be in (0, 1]")
        if self.preroll_ms < 0 or self.hangover_ms < self.frame_ms:
            raise ValueError("vad pre-roll must be >= 0 and hangover >= one VAD frame")
        if self.max_utterance_s < 1.0:
            raise ValueError("maximum utterance length must be at least 1 s")


@dataclass(frozen=True)
class WindowConfig:
    """Sliding window over an utterance, in ms (multiples of the model's 20 ms frame).

    Each window is ``left_context + chunk + right_context`` long; only the ``chunk`` frames
    in its centre become stable, the right-context frames give the tentative tail.
    """

    # Chosen with benchmarks/accuracy.py and live_load.py (README, "Performance"). With
    # the model at step 39576, 320 ms of right context gave streaming WER 1.034x offline
    # (it was 1.003-1.013x with earlier checkpoints); 480 ms gives 1.003x and still
    # carries 12 streams on the 2-core CPU at p50 partial <= 400 ms and p95 commit <= 1 s.
    chunk_ms: int = 240
    left_context_ms: int = 1600
    right_context_ms: int = 480
    max_catchup_chunks: int = 8  # a late stream advances up to 1.92 s per model call
    # Left context of an utterance's first windows taken from the stream audio before it
    # (its silence, or the previous utterance), so they have the steady length instead of
    # growing hop by hop: on a GPU every distinct window length is a model call of its own
    # in each batching round. "auto": on for a CUDA device (the server resolves it), off
    # on the CPU, where the longer first windows would only cost compute.
    stream_context: str = "auto"

    def validate(self, frame_ms: int = 20) -> None:
        for name in ("chunk_ms", "left_context_ms", "right_context_ms"):
            value = getattr(self, name)
            if value < 0 or value % frame_ms:
                raise ValueError(f"{name} must be a non-negative multiple of {frame_ms} ms")
        if self.chunk_ms < frame_ms:
            raise ValueError("chunk must be at least one model frame")
        if self.right_context_ms < 2 * frame_ms:
            raise ValueError(f"right context must be at least {2 * frame_ms} ms")
        if self.max_catchup_chunks < 1:
            raise ValueError("max catch-up chunks must be >= 1")
        if self.stream_context not in ("auto", "on", "off"):
            raise ValueError("stream context must be auto, on or off")

    def resolved(self, device: str) -> WindowConfig:
        """This config with ``stream_context`` "auto" made "on" or "off" for ``device``."""
        if self.stream_context != "auto":
            return self
        return dataclasses.replace(
            self, stream_context="on" if device.startswith("cuda") else "off"
        )


@dataclass(frozen=True)
class EngineConfig:
    """Batched inference shared by all sessions."""

    max_batch: int = 32
    batch_deadline_ms: float = 5.0
    max_queue: int = 1024
    threads: int | None = None
    # Pad each model call's batch with silent rows up to the next of BATCH_BUCKETS: rows
    # are independent, so outputs do not change, and a GPU sees a few batch shapes
    # instead of every count from 1 to max_batch (each new shape costs a cuDNN plan).
    # "auto": on for a model on a CUDA device, off on the CPU (where padding only costs).
    pad_batches: str = "auto"
    # Pad every window of a batching round to the round's longest, with an attention mask,
    # so the round is ONE model call instead of one per distinct window length. Exact only
    # for models whose feature extractor takes an attention mask (feat_extract_norm
    # "layer", e.g. the bundled tiny-en and wav2vec2-large-960h-lv60-self); others keep
    # exact-length groups. "auto": on for such a model on a CUDA device.
    pad_lengths: str = "auto"

    def validate(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("max batch and max queue must be >= 1")
        if self.batch_deadline_ms < 0:
            raise ValueError("batch deadline must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.pad_batches not in ("auto", "on", "off"):
            raise ValueError("pad batches must be auto, on or off")
        if self.pad_lengths not in ("auto", "on", "off"):
            raise ValueError("pad lengths must be auto, on or off")


@dataclass(frozen=True)
class ModelConfig:
    """What to load and where to run it."""

    name: str = "facebook/wav2vec2-base-960h"
    device: str = "auto"
    dtype: str = "auto"
    warmup: bool = True
    lowercase: bool = True
    # cuDNN convolutions on a GPU: fast for a shape seen before, but every new (batch,
    # length) shape first builds an execution plan; "off" uses PyTorch's own kernels.
    cudnn: str = "on"

    def validate(self) -> None:
        if self.dtype not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError("dtype must be auto, fp32, fp16 or bf16")
        if self.cudnn not in ("on", "off"):
            raise ValueError("cudnn must be on or off")


@dataclass(frozen=True)
class LmConfig:
    """Optional word n-gram LM beam search for final texts (needs pyctcdecode + kenlm).

    ``path`` is an ARPA file (``.arpa`` or ``.arpa.gz``), ``"model"`` for the one shipped in
    the model folder (the bundled tiny-en has one), or None for greedy finals. Defaults are
    the values tuned for tiny-en on its validation split (``streaming/lm.py``).
    """

    path: str | None = None
    alpha: float = 0.7
    beta: float = 2.0
    beam_width: int = 32
    threads: int = 1

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def validate(self) -> None:
        if self.beam_width < 1 or self.threads < 1:
            raise ValueError("LM beam width and threads must be >= 1")
        if self.alpha < 0:
            raise ValueError("LM weight (alpha) must be >= 0")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; safe defaults for a single machine."""

    host: str = "127.0.0.1"
    port: int = 8765
    model: ModelConfig = field(default_factory=ModelConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    lm: LmConfig = field(default_factory=LmConfig)
    max_sessions: int = 64
    max_frame_bytes: int = 1 << 20
    max_session_s: float = 4 * 3600.0
    idle_timeout_s: float = 60.0
    backlog_high_s: float = 10.0
    backlog_low_s: float = 5.0
    lag_warning_s: float = 2.0  # tell a session once it is this far behind its audio
    max_engine_load: float = 0.85  # refuse new sessions while the engine is this busy
    shutdown_grace_s: float = 10.0
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    allowed_origins: tuple[str, ...] = ()
    protocol: str = "native"  # what "/" speaks: stock Vosk and WhisperLive clients connect there
    workers: int = 1  # server processes sharing the listening socket (streaming/workers.py)
    shared_engine: bool = False  # one inference process batches for every worker

    def validate(self) -> None:
        self.model.validate()
        self.vad.validate()
        self.window.validate()
        self.engine.validate()
        self.lm.validate()
        if not 0 <= self.port < 65536:
            raise ValueError("port must be in 0..65535")
        if self.max_sessions < 1:
            raise ValueError("max sessions must be >= 1")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.max_frame_bytes < 2:
            raise ValueError("max frame bytes must be >= 2")
        if not 0 < self.backlog_low_s <= self.backlog_high_s:
            raise ValueError("backlog low-water mark must be in (0, high-water mark]")
        if self.lag_warning_s <= 0:
            raise ValueError("lag warning must be positive")
        if not 0 < self.max_engine_load <= 1:
            raise ValueError("max engine load must be in (0, 1] (1 turns the check off)")
        if self.idle_timeout_s <= 0 or self.max_session_s <= 0 or self.shutdown_grace_s < 0:
            raise ValueError("timeouts must be positive")
        if self.protocol not in ROOT_PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(ROOT_PROTOCOLS)}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both a certificate file and a key file")

    def replace(self, **changes: object) -> ServerConfig:
        """Return a copy with ``changes``; nested configs are replaced whole."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
