"""One typed, frozen configuration for the whole server, and the one place each setting is
declared: its type (the annotation), default, help, flag and choices (``setting()``).

``streaming/settings.py`` derives the command line from these declarations; this module
knows nothing of argparse. To add a setting, add one field here with ``setting(...)`` and
check its value in ``validate()``: its flag, ``--help`` line (with its default) and place in
the config follow. A nested config is a field ``field(default_factory=XConfig,
metadata={SECTION: GROUP})``: its settings are listed under GROUP unless they name another.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

SUPPORTED_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
SUPPORTED_ENCODINGS = ("pcm_s16le", "pcm_f32le")
MODEL_SAMPLE_RATE = 16000
ROOT_PROTOCOLS = ("native", "vosk", "whisperlive")
AUTO_ON_OFF = ("auto", "on", "off")
ON_OFF = ("on", "off")
DTYPES = ("auto", "fp32", "fp16", "bf16")
VAD_MODES = (0, 1, 2, 3)
VAD_FRAMES_MS = (10, 20, 30)

SETTING = "setting"  # dataclass field metadata key: the field's Setting
SECTION = "section"  # metadata key of a nested config's field: the SettingGroup of its settings

_T = TypeVar("_T")


@dataclass(frozen=True)
class SettingGroup:
    """A titled section of ``--help`` (an argparse argument group)."""

    title: str
    description: str | None = None


@dataclass(frozen=True)
class Setting:
    """How a config field is set from the command line; its type and default are the field's.

    ``flag`` defaults to ``--`` + the field name with dashes. A bool field is a flag without
    a value that sets the opposite of its default (``--no-warmup``, ``--keep-case``). A
    ``tuple[str, ...]`` field takes its flag repeatedly. ``const`` lets the flag be given
    without a value, which then means ``const`` (``--lm`` alone is ``--lm model``).
    """

    help: str
    flag: str | None = None
    group: SettingGroup | None = None  # None: the group of the nested config it is in
    choices: tuple[object, ...] | None = None
    metavar: str | None = None
    const: str | None = None


def setting(
    default: _T,
    *,
    help: str,
    flag: str | None = None,
    group: SettingGroup | None = None,
    choices: tuple[object, ...] | None = None,
    metavar: str | None = None,
    const: str | None = None,
    secret: bool = False,
) -> _T:
    """A config field declared as a setting (``secret``: left out of the repr)."""
    declared = Setting(help, flag, group, choices, metavar, const)
    return field(default=default, repr=not secret, metadata={SETTING: declared})


NETWORK = SettingGroup("network")
PROCESSES = SettingGroup("processes")
MODEL = SettingGroup("model")
VAD = SettingGroup("voice activity detection")
WINDOW = SettingGroup("sliding window (ms, multiples of 20)")
ENGINE = SettingGroup("inference engine")
LM = SettingGroup(
    "language model (optional; pip install 'wav2vec2-streaming[lm]')",
    "Finals are decoded by CTC beam search with a word n-gram LM (pyctcdecode + KenLM) in "
    "worker threads; partials stay greedy and all-tentative, since the LM may revise any "
    "word until the utterance ends.",
)
LIMITS = SettingGroup("limits")
SECURITY = SettingGroup("security")
SETTING_GROUPS = (NETWORK, PROCESSES, MODEL, VAD, WINDOW, ENGINE, LM, LIMITS, SECURITY)
"""Every group, in the order ``--help`` shows them."""


@dataclass(frozen=True)
class VadConfig:
    """WebRTC VAD gate: which audio counts as an utterance.

    ``onset_ms`` of mostly-voiced audio opens an utterance, which then starts ``preroll_ms``
    before the onset so the first phoneme is not clipped; ``hangover_ms`` of continuous
    non-speech closes it.
    """

    aggressiveness: int = setting(
        2,
        flag="--vad-aggressiveness",
        choices=VAD_MODES,
        help="webrtcvad mode, 3 rejects the most non-speech",
    )
    frame_ms: int = setting(
        30, flag="--vad-frame-ms", choices=VAD_FRAMES_MS, help="VAD frame length"
    )
    onset_ms: int = setting(
        180, flag="--vad-onset-ms", help="mostly-voiced audio needed to open an utterance"
    )
    onset_ratio: float = setting(
        0.8,
        flag="--vad-onset-ratio",
        help="share of the VAD frames in the onset that must be voiced to open an utterance",
    )
    preroll_ms: int = setting(300, help="audio kept before the onset so speech is not clipped")
    hangover_ms: int = setting(500, help="trailing non-speech that ends an utterance")
    max_utterance_s: float = setting(30.0, help="longest utterance before it is cut")

    def validate(self) -> None:
        if self.aggressiveness not in VAD_MODES:
            raise ValueError("vad aggressiveness must be 0, 1, 2 or 3")
        if self.frame_ms not in VAD_FRAMES_MS:
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
    chunk_ms: int = setting(
        240, help="hop: new audio per window, the part each window makes stable"
    )
    left_context_ms: int = setting(1600, help="already-stable audio re-read before the chunk")
    right_context_ms: int = setting(480, help="look-ahead after the chunk; its text is tentative")
    max_catchup_chunks: int = setting(
        8,  # a late stream advances up to 1.92 s per model call
        metavar="N",
        help="a stream that fell behind catches up by at most this many chunks per window, "
        "so one window stays short (a count, not ms)",
    )
    # Left context of an utterance's first windows taken from the stream audio before it
    # (its silence, or the previous utterance), so they have the steady length instead of
    # growing hop by hop: on a GPU every distinct window length is a model call of its own
    # in each batching round. "auto": on for a CUDA device (the server resolves it), off
    # on the CPU, where the longer first windows would only cost compute.
    stream_context: str = setting(
        "auto",
        choices=AUTO_ON_OFF,
        help="an utterance's first windows take their left context from the stream audio "
        "before it, so they are as long as every other window instead of growing hop by hop "
        "(on a GPU each distinct window length is a model call of its own per batching "
        "round); auto = on for a CUDA device",
    )

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
        if self.stream_context not in AUTO_ON_OFF:
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

    max_batch: int = setting(32, help="most windows per model call")
    batch_deadline_ms: float = setting(5.0, help="how long the engine waits to fill a batch")
    max_queue: int = setting(
        1024,
        metavar="N",
        help="windows waiting for the model at most; a stream with one more waits for a slot",
    )
    threads: int | None = setting(None, help="CPU threads for the model (default: torch's choice)")
    # Pad each model call's batch with silent rows up to the next of BATCH_BUCKETS: rows
    # are independent, so outputs do not change, and a GPU sees a few batch shapes
    # instead of every count from 1 to max_batch (each new shape costs a cuDNN plan).
    # "auto": on for a model on a CUDA device, off on the CPU (where padding only costs).
    pad_batches: str = setting(
        "auto",
        choices=AUTO_ON_OFF,
        help="pad each batch with silent windows to one of a few sizes (1, 2, 4, 8, 16, 24, "
        "32, 48, 64, 96, ...): outputs are unchanged and a GPU builds far fewer per-shape "
        "plans, for up to 1.8x compute per call (1.5x above 16); auto = on for a CUDA device",
    )
    # Pad every window of a batching round to the round's longest, with an attention mask,
    # so the round is ONE model call instead of one per distinct window length. Exact only
    # for models whose feature extractor takes an attention mask (feat_extract_norm
    # "layer", e.g. the bundled tiny-en and wav2vec2-large-960h-lv60-self); others keep
    # exact-length groups. "auto": on for such a model on a CUDA device.
    pad_lengths: str = setting(
        "auto",
        choices=AUTO_ON_OFF,
        help="run a batching round's windows of different lengths as ONE model call, each "
        "padded to the longest and masked (the outputs do not change), instead of one call "
        "per length; only for models whose feature extractor takes an attention mask "
        "(feat_extract_norm 'layer', e.g. tiny-en, wav2vec2-large-960h-lv60-self); auto = on "
        "for such a model on a CUDA device",
    )
    # Take the front-end features of the frames a stream's previous window already
    # produced instead of recomputing them (streaming.feature_cache): about half of a
    # window's model time on the CPU. Only for a model whose feature extractor works frame
    # by frame (the same models as pad_lengths). "auto": on for such a model in this
    # process on the CPU; the GPU batching path keeps whole windows until measured there.
    reuse_features: str = setting(
        "auto",
        choices=AUTO_ON_OFF,
        help="reuse the convolutional features of the audio a stream's previous window "
        "already read, computing only the new frames (about half a window's model time on "
        "the CPU; each window is still scaled by its own statistics, so a reused frame keeps "
        "the scale of the window that first read it); only for models whose feature "
        "extractor works frame by frame (feat_extract_norm 'layer', e.g. tiny-en); auto = on "
        "for such a model on the CPU",
    )

    def validate(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("max batch and max queue must be >= 1")
        if self.batch_deadline_ms < 0:
            raise ValueError("batch deadline must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.pad_batches not in AUTO_ON_OFF:
            raise ValueError("pad batches must be auto, on or off")
        if self.pad_lengths not in AUTO_ON_OFF:
            raise ValueError("pad lengths must be auto, on or off")
        if self.reuse_features not in AUTO_ON_OFF:
            raise ValueError("reuse features must be auto, on or off")


@dataclass(frozen=True)
class ModelConfig:
    """What to load and where to run it."""

    name: str = setting(
        "facebook/wav2vec2-base-960h",
        flag="--model",
        help="Wav2Vec2ForCTC checkpoint: a Hugging Face hub id, a local folder, or the "
        "bundled offline model 'tiny-en'",
    )
    device: str = setting(
        "auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'"
    )
    dtype: str = setting(
        "auto",
        choices=DTYPES,
        help="weights/activations type; auto = fp16 on CUDA, and on the CPU bf16 where it runs "
        "natively (AVX512-BF16 or AMX), else fp32",
    )
    # cuDNN convolutions on a GPU: fast for a shape seen before, but every new (batch,
    # length) shape first builds an execution plan; "off" uses PyTorch's own kernels.
    cudnn: str = setting(
        "on",
        choices=ON_OFF,
        help="cuDNN for the convolutional front end on a GPU: each new (batch, window "
        "length) shape first builds a cuDNN plan (see --pad-batches); off uses PyTorch's "
        "own kernels, with no plans but 3x slower calls on an H200 "
        "(python -m benchmarks.shape_cost)",
    )
    # torch.compile (Inductor, weights frozen) of what runs after the feature extractor, on
    # the path windows take with feature reuse: 1.3-1.5x less transformer time in bf16 on
    # a 2-core Xeon, for about half a minute of compiling at start (needs a C compiler).
    compile: bool = setting(
        False,
        help="compile the model's transformer with torch.compile for the windows that reuse "
        "features (--reuse-features): 1.3-1.5x faster on the CPU, about 30 s more at start, "
        "needs a C++ compiler; outputs differ by rounding only",
    )
    warmup: bool = setting(True, flag="--no-warmup", help="skip the warm-up inference at start")
    lowercase: bool = setting(
        True, flag="--keep-case", help="keep the model's letter case (default: lower)"
    )

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError("dtype must be auto, fp32, fp16 or bf16")
        if self.cudnn not in ON_OFF:
            raise ValueError("cudnn must be on or off")


@dataclass(frozen=True)
class LmConfig:
    """Word n-gram LM beam search for final texts (needs pyctcdecode + kenlm).

    ``path`` is ``"auto"`` (the default: the model folder's ``lm.arpa.gz`` when it has one
    and the packages are installed, else greedy finals with a one-line log hint),
    ``"model"`` (that file, required: ``--lm`` alone), an ARPA file (``.arpa`` or
    ``.arpa.gz``), or ``"none"``/``"off"``/None for greedy finals. Defaults are the values
    tuned for tiny-en on its validation split (``streaming/lm.py``).
    """

    path: str | None = setting(
        "auto",
        flag="--lm",
        const="model",
        metavar="ARPA",
        help="LM finals: 'auto' uses the model folder's lm.arpa.gz (tiny-en ships one) when "
        "it has one and pyctcdecode + kenlm are installed, else greedy finals; --lm alone "
        "requires that file; --lm PATH names an ARPA file; --lm none turns LM finals off "
        "(default: auto)",
    )
    alpha: float = setting(0.5, flag="--lm-alpha", help="LM weight")
    beta: float = setting(0.5, flag="--lm-beta", help="word bonus")
    beam_width: int = setting(32, flag="--lm-beam-width", help="beam width")
    threads: int = setting(
        2,
        flag="--lm-threads",
        help="threads decoding finals and early-commit searches, per server process; a search "
        "is skipped while every thread is busy (its words wait a window), so a second thread "
        "keeps commits on time under load",
    )
    early_commits: bool = setting(
        True,
        flag="--no-early-commits",
        help="with LM finals, commit no word before its utterance's final, whose last window "
        "then reads the whole utterance (by default beam searches of the spoken part commit "
        "the words they settle, when a decoder thread is free: on the out-of-domain "
        "benchmark words commit 1.65 s sooner at the median, for 12 percent more word errors)",
    )

    @property
    def enabled(self) -> bool:
        """LM finals are asked for (``auto`` may still fall back to greedy ones)."""
        return self.path is not None and self.path.lower() not in ("none", "off")

    def validate(self) -> None:
        if self.beam_width < 1 or self.threads < 1:
            raise ValueError("LM beam width and threads must be >= 1")
        if self.alpha < 0:
            raise ValueError("LM weight (alpha) must be >= 0")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; safe defaults for a single machine."""

    host: str = setting("127.0.0.1", group=NETWORK, help="interface to bind")
    port: int = setting(8765, group=NETWORK, help="TCP port, 0 = any free")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={SECTION: MODEL})
    vad: VadConfig = field(default_factory=VadConfig, metadata={SECTION: VAD})
    window: WindowConfig = field(default_factory=WindowConfig, metadata={SECTION: WINDOW})
    engine: EngineConfig = field(default_factory=EngineConfig, metadata={SECTION: ENGINE})
    lm: LmConfig = field(default_factory=LmConfig, metadata={SECTION: LM})
    max_sessions: int = setting(
        64, group=LIMITS, help="concurrent streams; more are refused with HTTP 503"
    )
    max_engine_load: float = setting(
        0.85,
        group=LIMITS,
        help="refuse new streams (HTTP 503) while the model was busy more than this fraction"
        " of the last 5 s, so admitted streams stay real time; 1 turns it off",
    )
    lag_warning_s: float = setting(
        2.0,
        group=LIMITS,
        help="send a stream a 'lag' message once the server is this many seconds behind"
        " its audio, and again when it has caught up; while a real-time stream is that far"
        " behind, new streams are refused",
    )
    max_frame_bytes: int = setting(
        1 << 20, group=LIMITS, help="largest binary audio frame accepted"
    )
    max_session_s: float = setting(
        4 * 3600.0, group=LIMITS, help="longest stream, in seconds of audio"
    )
    idle_timeout_s: float = setting(
        60.0, group=LIMITS, help="end a stream that sends nothing for this long"
    )
    shutdown_grace_s: float = setting(
        10.0, group=LIMITS, help="time allowed to send finals on SIGTERM/SIGINT"
    )
    backlog_high_s: float = setting(
        10.0,
        group=LIMITS,
        help="stop reading a stream's audio while it owes the model more than this many "
        "seconds (back-pressure on the client), until it owes less than --backlog-low-s",
    )
    backlog_low_s: float = setting(
        5.0, group=LIMITS, help="resume reading a stream held back by --backlog-high-s"
    )
    auth_tokens: tuple[str, ...] = setting(
        (),
        flag="--auth-token",
        group=SECURITY,
        metavar="TOKEN",
        secret=True,
        help="require this token (Authorization: Bearer TOKEN, or ?token=TOKEN); repeat for "
        "several; also read from $STREAMING_AUTH_TOKENS (comma-separated)",
    )
    resume_key: str | None = setting(
        None,
        group=SECURITY,
        metavar="KEY",
        secret=True,
        help="key (16+ characters) signing the resume tokens of native streams; give every "
        "replica behind one balancer the same key, so a stream cut from one resumes on "
        "another; also read from $STREAMING_RESUME_KEY (default: a random key per process: "
        "streams resume only on the same process)",
    )
    resume_ttl_s: float = setting(
        300.0,
        group=LIMITS,
        help="how long a resume token stays valid: the longest outage a stream survives",
    )
    tls_cert_file: str | None = setting(
        None,
        flag="--tls-cert",
        group=SECURITY,
        metavar="FILE",
        help="TLS certificate (PEM): serve wss://",
    )
    tls_key_file: str | None = setting(
        None, flag="--tls-key", group=SECURITY, metavar="FILE", help="TLS private key (PEM)"
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        flag="--allow-origin",
        group=SECURITY,
        metavar="ORIGIN",
        help="accept browser connections only from this Origin (repeatable; the server's own "
        "captions page is always allowed); default: any origin",
    )
    protocol: str = setting(
        "native",
        group=NETWORK,
        choices=ROOT_PROTOCOLS,
        help="what ws://HOST:PORT/ speaks, for stock Vosk or WhisperLive clients; /vosk, "
        "/whisperlive and /v1/listen (Deepgram) are always served",
    )
    workers: int = setting(
        1,
        group=PROCESSES,
        metavar="N",
        help="server processes sharing one port (on Linux the kernel spreads connections "
        "evenly over them), for more streams than one event loop can carry; each loads "
        "its own copy of the model and runs its own batching engine (on a GPU they share "
        "the device) unless --shared-engine; limits such as --max-sessions apply per "
        "worker, and /health and /metrics answer for the worker that took the request",
    )
    shared_engine: bool = setting(
        False,
        group=PROCESSES,
        help="one more process loads the model once and batches the windows of every "
        "worker, which send them over a Unix socket: bigger batches and one CUDA context "
        "on a GPU, one copy of the weights in memory; the workers keep the websockets, "
        "VAD and text (with --workers 1: one worker plus the inference process)",
    )
    inference: str = setting(
        "local",
        flag="--engine",
        group=PROCESSES,
        metavar="URL",
        help="where the model runs: 'local' (in this process, batched across its streams) or "
        "'triton://HOST[:PORT][/MODEL]', a Triton Inference Server started with "
        "python -m streaming.triton_server (docs/triton.md), so front ends scale apart "
        "from the model servers",
    )

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
        if self.inference != "local" and not self.inference.startswith("triton://"):
            raise ValueError("engine must be 'local' or 'triton://HOST[:PORT][/MODEL]'")
        if self.inference != "local" and self.shared_engine:
            raise ValueError("--shared-engine runs the model locally: it excludes --engine")
        if self.protocol not in ROOT_PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(ROOT_PROTOCOLS)}")
        if self.resume_key is not None and len(self.resume_key.encode()) < 16:
            raise ValueError("the resume key needs at least 16 bytes")
        if self.resume_ttl_s <= 0:
            raise ValueError("resume token lifetime must be positive")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both a certificate file and a key file")

    def replace(self, **changes: object) -> ServerConfig:
        """Return a copy with ``changes``; nested configs are replaced whole."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
