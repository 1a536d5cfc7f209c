"""Helpers for the Chromium tests: a real server in a thread of its own, and Chromium.

The server runs its own event loop in a background thread so that the tests can drive
Chromium with Playwright's synchronous API while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from streaming.config import ServerConfig
from streaming.model import LoadedModel
from streaming.server import Server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Where screenshots go besides the test's tmp dir (e.g. to refresh docs/images).
SCREENSHOT_ENV = "BROWSER_SCREENSHOTS"


def chromium_path() -> str:
    """Debian's Chromium: skipped when absent, failed on CI (scripts/setup.sh installs it)."""
    for path in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if path and Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if found:
        return found
    message = "Chromium is not installed (apt-get install chromium; scripts/setup.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class ServerThread:
    """A started ``Server`` whose event loop runs in a daemon thread."""

    def __init__(self, config: ServerConfig, model: LoadedModel) -> None:
        self.config = config
        self.model = model
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.server = self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> Server:
        server = Server(self.config, model=self.model)
        await server.start()
        return server

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Shut the server down (finals first, then close 1001), as on SIGTERM."""
        if self.server is not None:
            self.call(self.server.shutdown(grace))
            self.server = None

    @property
    def http_url(self) -> str:
        assert self.server is not None
        return self.server.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
