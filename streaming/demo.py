"""``python -m streaming.demo``: server + file client in one command, fully offline.

Starts the server (bundled model by default) on a free loopback port, streams a bundled
speech sample through the real client (``python -m client``, its own process) at real-time
pace, shows live captions and the latency summary, then shuts the server down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

from .config import LmConfig, ModelConfig, ServerConfig
from .errors import ModelLoadError
from .lm import INSTALL_HINT
from .logs import quiet_transformers
from .rescoring import missing_lm_packages
from .server import Server


def bundled_sample() -> Path:
    return Path(str(resources.files("streaming") / "assets" / "demo.wav"))


class _ServerThread:
    """The server on its own event loop, so the client CLI can run in the foreground."""

    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result()
        return self.server.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="streaming-demo",
        description="Run the server and stream a speech sample through it: live captions "
        "and a latency summary, with no network needed.",
    )
    parser.add_argument(
        "--model", default="tiny-en", help="model to serve (default: %(default)s, bundled)"
    )
    parser.add_argument(
        "audio",
        nargs="*",
        help="WAV/FLAC files or folders to stream (default: the bundled sample)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="pace in × real time; 0 = as fast as possible (default: %(default)s)",
    )
    parser.add_argument("--report", metavar="FILE", help="write the latency report as JSON")
    parser.add_argument(
        "--lm",
        default=LmConfig.path,
        metavar="ARPA",
        help="LM finals as for the server: auto, none or an ARPA file (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_transformers()
    audio = args.audio or [str(bundled_sample())]
    config = ServerConfig(
        host="127.0.0.1", port=0, model=ModelConfig(name=args.model), lm=LmConfig(path=args.lm)
    )
    print(f"starting the server with model {args.model!r} …", flush=True)
    background = _ServerThread(config)
    try:
        url = background.start()
    except ModelLoadError as exc:
        print(f"streaming-demo: error: {exc}", file=sys.stderr)
        return 2
    pace = f"at {args.speed:g}× real time" if args.speed else "as fast as possible"
    print(f"server ready on {url}; finals: {_finals(background.server)}", flush=True)
    print(f"streaming {', '.join(audio)} {pace}\n", flush=True)
    client_args = ["file", *audio, "--url", url, "--speed", str(args.speed)]
    if args.report:
        client_args += ["--report", args.report]
    try:
        return _run_client(client_args)
    finally:
        background.stop()


def _finals(server: Server) -> str:
    """How finals are decoded, in words: LM beam search, or greedy and why."""
    rescorer = server.rescorer
    if rescorer is not None and rescorer.lm_path is not None:
        return f"LM beam search ({rescorer.lm_path.name}); partials greedy"
    if server.config.lm.enabled and missing_lm_packages():
        return f"greedy (for LM finals: {INSTALL_HINT})"
    return "greedy"


def _run_client(argv: list[str]) -> int:
    """``python -m client ARGV`` as its own process, as a user would run it: the server
    package starts the client but never imports it (they are independent packages)."""
    root = str(Path(__file__).resolve().parents[1])  # the folder holding both packages
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, "-m", "client", *argv], env={**os.environ, "PYTHONPATH": path}
    )
    # Ctrl-C reaches the client too (one process group): it finishes the stream cleanly,
    # or quits on a second one; the demo waits for it either way, then stops the server.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
