"""``python -m streaming``: the CLI only fills in a ServerConfig and runs the server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .config import (
    ROOT_PROTOCOLS,
    EngineConfig,
    LmConfig,
    ModelConfig,
    ServerConfig,
    VadConfig,
    WindowConfig,
)
from .errors import ModelLoadError
from .security import load_tokens
from .server import Server
from .workers import WorkersFailed, bind_socket, run_workers

log = logging.getLogger("streaming")

DESCRIPTION = """\
Real-time streaming speech recognition server (websocket).

Audio arrives as binary PCM frames, WebRTC VAD cuts it into utterances, a Wav2Vec2 CTC
model runs over overlapping sliding windows, and stable live text streams back: a
committed part that never changes and a tentative tail that may. See docs/protocol.md.
"""

EPILOG = """\
examples:
  python -m streaming --model tiny-en                  # bundled offline English model
  python -m streaming --model tiny-en --lm             # + its 3-gram LM for the finals
  python -m streaming --model facebook/wav2vec2-base-960h --device cuda --dtype fp16
  python -m streaming --model /path/to/checkpoint --port 9000 --host 0.0.0.0
  python -m streaming --model facebook/wav2vec2-base-960h --device cuda --workers 4

endpoints: ws://HOST:PORT/ (native protocol, or --protocol), /v1/stream (native),
  /vosk (Vosk server), /whisperlive (WhisperLive), /v1/listen (Deepgram live; see
  docs/compat.md), GET /health, GET /metrics (Prometheus)
"""


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = argparse.ArgumentParser(
        prog="streaming-server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = p.add_argument_group("network")
    net.add_argument("--host", default=d.host, help="interface to bind (default: %(default)s)")
    net.add_argument(
        "--port", type=int, default=d.port, help="TCP port, 0 = any free (default: %(default)s)"
    )
    net.add_argument(
        "--protocol",
        choices=ROOT_PROTOCOLS,
        default=d.protocol,
        help="what ws://HOST:PORT/ speaks, for stock Vosk or WhisperLive clients; /vosk, "
        "/whisperlive and /v1/listen (Deepgram) are always served (default: %(default)s)",
    )

    proc = p.add_argument_group("processes")
    proc.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        metavar="N",
        help="server processes sharing one port (on Linux the kernel spreads connections "
        "evenly over them), for more streams than one event loop can carry; each loads "
        "its own copy of the model and runs its own batching engine (on a GPU they share "
        "the device) unless --shared-engine; limits such as --max-sessions apply per "
        "worker, and /health and /metrics answer for the worker that took the request "
        "(default: %(default)s)",
    )
    proc.add_argument(
        "--shared-engine",
        action="store_true",
        default=d.shared_engine,
        help="one more process loads the model once and batches the windows of every "
        "worker, which send them over a Unix socket: bigger batches and one CUDA context "
        "on a GPU, one copy of the weights in memory; the workers keep the websockets, "
        "VAD and text (with --workers 1: one worker plus the inference process)",
    )

    m = p.add_argument_group("model")
    m.add_argument(
        "--model",
        default=d.model.name,
        help="Wav2Vec2ForCTC checkpoint: a Hugging Face hub id, a local folder, or the "
        "bundled offline model 'tiny-en' (default: %(default)s)",
    )
    m.add_argument(
        "--device",
        default=d.model.device,
        help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: %(default)s)",
    )
    m.add_argument(
        "--dtype",
        default=d.model.dtype,
        choices=("auto", "fp32", "fp16", "bf16"),
        help="weights/activations type; auto = fp16 on CUDA, and on the CPU bf16 where it runs "
        "natively (AVX512-BF16 or AMX), else fp32 (default: %(default)s)",
    )
    m.add_argument(
        "--cudnn",
        default=d.model.cudnn,
        choices=("on", "off"),
        help="cuDNN for the convolutional front end on a GPU: each new (batch, window "
        "length) shape first builds a cuDNN plan (see --pad-batches); off uses PyTorch's "
        "own kernels, with no plans but 3x slower calls on an H200 "
        "(python -m benchmarks.shape_cost) (default: %(default)s)",
    )
    m.add_argument("--no-warmup", action="store_true", help="skip the warm-up inference at start")
    m.add_argument(
        "--keep-case", action="store_true", help="keep the model's letter case (default: lower)"
    )

    v = p.add_argument_group("voice activity detection")
    v.add_argument(
        "--vad-aggressiveness",
        type=int,
        choices=(0, 1, 2, 3),
        default=d.vad.aggressiveness,
        help="webrtcvad mode, 3 rejects the most non-speech (default: %(default)s)",
    )
    v.add_argument(
        "--vad-frame-ms",
        type=int,
        choices=(10, 20, 30),
        default=d.vad.frame_ms,
        help="VAD frame length (default: %(default)s)",
    )
    v.add_argument(
        "--vad-onset-ms",
        type=int,
        default=d.vad.onset_ms,
        help="mostly-voiced audio needed to open an utterance (default: %(default)s)",
    )
    v.add_argument(
        "--preroll-ms",
        type=int,
        default=d.vad.preroll_ms,
        help="audio kept before the onset so speech is not clipped (default: %(default)s)",
    )
    v.add_argument(
        "--hangover-ms",
        type=int,
        default=d.vad.hangover_ms,
        help="trailing non-speech that ends an utterance (default: %(default)s)",
    )
    v.add_argument(
        "--max-utterance-s",
        type=float,
        default=d.vad.max_utterance_s,
        help="longest utterance before it is cut (default: %(default)s)",
    )

    w = p.add_argument_group("sliding window (ms, multiples of 20)")
    w.add_argument(
        "--chunk-ms",
        type=int,
        default=d.window.chunk_ms,
        help="hop: new audio per window, the part each window makes stable (default: %(default)s)",
    )
    w.add_argument(
        "--left-context-ms",
        type=int,
        default=d.window.left_context_ms,
        help="already-stable audio re-read before the chunk (default: %(default)s)",
    )
    w.add_argument(
        "--right-context-ms",
        type=int,
        default=d.window.right_context_ms,
        help="look-ahead after the chunk; its text is tentative (default: %(default)s)",
    )
    w.add_argument(
        "--stream-context",
        choices=("auto", "on", "off"),
        default=d.window.stream_context,
        help="an utterance's first windows take their left context from the stream audio "
        "before it, so they are as long as every other window instead of growing hop by hop "
        "(on a GPU each distinct window length is a model call of its own per batching "
        "round); auto = on for a CUDA device (default: %(default)s)",
    )

    e = p.add_argument_group("inference engine")
    e.add_argument(
        "--max-batch",
        type=int,
        default=d.engine.max_batch,
        help="most windows per model call (default: %(default)s)",
    )
    e.add_argument(
        "--batch-deadline-ms",
        type=float,
        default=d.engine.batch_deadline_ms,
        help="how long the engine waits to fill a batch (default: %(default)s)",
    )
    e.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the model (default: torch's choice)",
    )
    e.add_argument(
        "--pad-batches",
        choices=("auto", "on", "off"),
        default=d.engine.pad_batches,
        help="pad each batch with silent windows to one of a few sizes (1, 2, 4, 8, 16, 24, "
        "32, 48, 64, 96, ...): outputs are unchanged and a GPU builds far fewer per-shape "
        "plans, for up to 1.8x compute per call (1.5x above 16); auto = on for a CUDA device "
        "(default: %(default)s)",
    )
    e.add_argument(
        "--pad-lengths",
        choices=("auto", "on", "off"),
        default=d.engine.pad_lengths,
        help="run a batching round's windows of different lengths as ONE model call, each "
        "padded to the longest and masked (the outputs do not change), instead of one call "
        "per length; only for models whose feature extractor takes an attention mask "
        "(feat_extract_norm 'layer', e.g. tiny-en, wav2vec2-large-960h-lv60-self); auto = on "
        "for such a model on a CUDA device (default: %(default)s)",
    )

    lm = p.add_argument_group(
        "language model (optional; pip install 'wav2vec2-streaming[lm]')",
        "Finals are decoded by CTC beam search with a word n-gram LM (pyctcdecode + KenLM) in "
        "worker threads; partials stay greedy and all-tentative, since the LM may revise any "
        "word until the utterance ends.",
    )
    lm.add_argument(
        "--lm",
        nargs="?",
        const="model",
        default=None,
        metavar="ARPA",
        help="enable LM finals; without a file, the model folder's lm.arpa.gz (tiny-en ships "
        "one) (default: off)",
    )
    lm.add_argument(
        "--lm-alpha", type=float, default=d.lm.alpha, help="LM weight (default: %(default)s)"
    )
    lm.add_argument(
        "--lm-beta", type=float, default=d.lm.beta, help="word bonus (default: %(default)s)"
    )
    lm.add_argument(
        "--lm-beam-width",
        type=int,
        default=d.lm.beam_width,
        help="beam width (default: %(default)s)",
    )
    lm.add_argument(
        "--lm-threads",
        type=int,
        default=d.lm.threads,
        help="threads decoding finals (default: %(default)s)",
    )

    lim = p.add_argument_group("limits")
    lim.add_argument(
        "--max-sessions",
        type=int,
        default=d.max_sessions,
        help="concurrent streams; more are refused with HTTP 503 (default: %(default)s)",
    )
    lim.add_argument(
        "--max-engine-load",
        type=float,
        default=d.max_engine_load,
        help="refuse new streams (HTTP 503) while the model was busy more than this fraction"
        " of the last 5 s, so admitted streams stay real time; 1 turns it off"
        " (default: %(default)s)",
    )
    lim.add_argument(
        "--lag-warning-s",
        type=float,
        default=d.lag_warning_s,
        help="send a stream a 'lag' message once the server is this many seconds behind"
        " its audio, and again when it has caught up; while a real-time stream is that far"
        " behind, new streams are refused (default: %(default)s)",
    )
    lim.add_argument(
        "--max-frame-bytes",
        type=int,
        default=d.max_frame_bytes,
        help="largest binary audio frame accepted (default: %(default)s)",
    )
    lim.add_argument(
        "--max-session-s",
        type=float,
        default=d.max_session_s,
        help="longest stream, in seconds of audio (default: %(default)s)",
    )
    lim.add_argument(
        "--idle-timeout-s",
        type=float,
        default=d.idle_timeout_s,
        help="end a stream that sends nothing for this long (default: %(default)s)",
    )
    lim.add_argument(
        "--shutdown-grace-s",
        type=float,
        default=d.shutdown_grace_s,
        help="time allowed to send finals on SIGTERM/SIGINT (default: %(default)s)",
    )
    sec = p.add_argument_group("security")
    sec.add_argument(
        "--auth-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="require this token (Authorization: Bearer TOKEN, or ?token=TOKEN); repeat for "
        "several; also read from $STREAMING_AUTH_TOKENS (comma-separated)",
    )
    sec.add_argument(
        "--auth-token-file",
        action="append",
        default=[],
        metavar="FILE",
        help="file with one accepted token per line (# comments allowed)",
    )
    sec.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM): serve wss://")
    sec.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    sec.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="accept browser connections only from this Origin (repeatable); default: any origin",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging verbosity (default: %(default)s)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        protocol=args.protocol,
        model=ModelConfig(
            name=args.model,
            device=args.device,
            dtype=args.dtype,
            cudnn=args.cudnn,
            warmup=not args.no_warmup,
            lowercase=not args.keep_case,
        ),
        vad=VadConfig(
            aggressiveness=args.vad_aggressiveness,
            frame_ms=args.vad_frame_ms,
            onset_ms=args.vad_onset_ms,
            preroll_ms=args.preroll_ms,
            hangover_ms=args.hangover_ms,
            max_utterance_s=args.max_utterance_s,
        ),
        window=WindowConfig(
            chunk_ms=args.chunk_ms,
            left_context_ms=args.left_context_ms,
            right_context_ms=args.right_context_ms,
            stream_context=args.stream_context,
        ),
        engine=EngineConfig(
            max_batch=args.max_batch,
            batch_deadline_ms=args.batch_deadline_ms,
            pad_batches=args.pad_batches,
            pad_lengths=args.pad_lengths,
            threads=args.threads,
        ),
        lm=LmConfig(
            path=args.lm,
            alpha=args.lm_alpha,
            beta=args.lm_beta,
            beam_width=args.lm_beam_width,
            threads=args.lm_threads,
        ),
        max_sessions=args.max_sessions,
        max_engine_load=args.max_engine_load,
        lag_warning_s=args.lag_warning_s,
        max_frame_bytes=args.max_frame_bytes,
        max_session_s=args.max_session_s,
        idle_timeout_s=args.idle_timeout_s,
        shutdown_grace_s=args.shutdown_grace_s,
        auth_tokens=load_tokens(args.auth_token, args.auth_token_file),
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        allowed_origins=tuple(args.allow_origin),
        workers=args.workers,
        shared_engine=args.shared_engine,
    )


class _SessionFormatter(logging.Formatter):
    """Adds ``[session]`` to every line logged inside a session."""

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session", None)
        record.sid = f" [{session}]" if session else ""
        return super().format(record)


def quiet_transformers() -> None:
    """No progress bars from transformers while loading weights: this is a server log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def setup_logging(level: str, prefix: str = "") -> None:
    """Log to stderr; ``prefix`` (e.g. ``[worker 1] ``) starts every message."""
    handler = logging.StreamHandler()
    prefix = prefix.replace("%", "%%")
    handler.setFormatter(
        _SessionFormatter(f"%(asctime)s %(levelname)s {prefix}%(name)s%(sid)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(max(logging.getLevelName(level), logging.WARNING))
    quiet_transformers()


async def _serve(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(config)
    await server.start()
    announce_ready(server.url, config)
    await server.serve_forever(stop)


def announce_ready(url: str, config: ServerConfig) -> None:
    """The line supervisors wait for (benchmarks/common.py parses it): keep its shape."""
    print(f"streaming server ready on {url} (model {config.model.name})", flush=True)


def _serve_workers(config: ServerConfig, log_level: str) -> int:
    try:
        sock = bind_socket(config)
    except OSError as exc:
        return _cannot_listen(config, exc)
    with sock:
        try:
            run_workers(
                config, sock, log_level=log_level, on_ready=lambda url: announce_ready(url, config)
            )
        except WorkersFailed as exc:
            print(f"streaming-server: error: {exc}", file=sys.stderr)
            return exc.exit_code
    return 0


def _cannot_listen(config: ServerConfig, exc: OSError) -> int:
    print(
        f"streaming-server: error: cannot listen on {config.host}:{config.port}: {exc}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
        config.validate()
    except (ValueError, OSError) as exc:
        print(f"streaming-server: error: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1 or config.shared_engine:
        return _serve_workers(config, args.log_level)
    try:
        asyncio.run(_serve(config))
    except ModelLoadError as exc:
        print(f"streaming-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        return _cannot_listen(config, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
