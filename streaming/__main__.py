"""``python -m streaming``: the CLI only fills in a ServerConfig and runs the server.

Its flags are derived from the settings declared in ``streaming/config.py``
(``streaming/settings.py``); only the flags that are not settings are written here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from . import settings
from .config import SECURITY, ServerConfig
from .errors import ModelLoadError
from .logs import setup_logging
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
    """Every declared setting (streaming/config.py), plus the flags that are not settings."""
    parser = argparse.ArgumentParser(
        prog="streaming-server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = settings.add_settings(parser)
    groups[SECURITY].add_argument(
        "--auth-token-file",
        action="append",
        default=[],
        metavar="FILE",
        help="file with one accepted token per line (# comments allowed)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging verbosity (default: %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The config the flags describe; tokens also from --auth-token-file and the environment."""
    config = settings.config_from_args(args)
    return config.replace(auth_tokens=load_tokens(config.auth_tokens, args.auth_token_file))


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
