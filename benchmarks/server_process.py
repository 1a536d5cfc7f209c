"""The streaming server in its own process, as a benchmark drives it: started on a free
port, ready when it logs its URL, sampled for CPU and RSS (children included, for
``--workers``), scraped for Prometheus metrics, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.paths import OUT_DIR, REPO
from benchmarks.prometheus import parse_prometheus

READY_LINE = re.compile(r"streaming server ready on (\S+)")


@dataclass
class ResourceSample:
    t: float
    cpu_percent: float  # 100 = one core busy
    rss_mb: float


class ServerProcess:
    """``python -m streaming … --port 0`` in a subprocess; parses the ready line for the URL.

    Samples the server's CPU use (all threads) and RSS with psutil every ``interval`` s.
    Use as a context manager; output goes to ``log_path``.
    """

    def __init__(
        self,
        model: str,
        args: Sequence[str] = (),
        *,
        log_path: Path | None = None,
        interval: float = 0.5,
        ready_timeout: float = 180.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.args = list(args)
        self.log_path = log_path or (OUT_DIR / "server.log")
        self.interval = interval
        self.ready_timeout = ready_timeout
        self.env = env
        self.url = ""
        self.http = ""
        self.samples: list[ResourceSample] = []
        self._proc: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streaming",
            "--model",
            self.model,
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            *self.args,
        ]

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(self.ready_timeout) or not self.url:
            tail = "".join(self._lines[-20:])
            self.stop()
            raise RuntimeError(f"server did not become ready:\n{tail}")
        self.http = self.url.replace("ws://", "http://").rstrip("/")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _read(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                self._lines.append(line)
                del self._lines[:-200]
                if not self.url and (m := READY_LINE.search(line)):
                    self.url = m.group(1)
                    ready.set()
        ready.set()

    def _sample(self) -> None:
        t0 = last_t = time.monotonic()
        last_cpu = process_cpu_seconds(self.pid)
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            cpu_s = process_cpu_seconds(self.pid)
            rss = process_rss_mb(self.pid)
            if cpu_s is None or rss is None or last_cpu is None:
                return
            cpu = 100.0 * (cpu_s - last_cpu) / max(1e-6, now - last_t)
            last_t, last_cpu = now, cpu_s
            self.samples.append(ResourceSample(now - t0, round(cpu, 1), rss))

    def window(self, since: float, until: float | None = None) -> list[ResourceSample]:
        """Resource samples taken between two sampler times (seconds since start)."""
        end = math.inf if until is None else until
        return [s for s in self.samples if since <= s.t <= end]

    @property
    def clock(self) -> float:
        """The sampler's clock (seconds since the server became ready)."""
        return self.samples[-1].t if self.samples else 0.0

    def get(self, path: str, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.http + path, timeout=timeout) as resp:
            return str(resp.read().decode())

    def health(self) -> dict[str, Any]:
        """The /health body, whatever its status (503 while full or draining)."""
        try:
            text = self.get("/health")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
        data: dict[str, Any] = json.loads(text)
        return data

    @property
    def workers(self) -> int:
        """``--workers`` of the server command (1 when not given)."""
        args = self.args
        for i, arg in enumerate(args):
            if arg == "--workers" and i + 1 < len(args):
                return int(args[i + 1])
            if arg.startswith("--workers="):
                return int(arg.split("=", 1)[1])
        return 1

    def metrics(self, max_tries: int = 200) -> dict[str, float]:
        """The server's Prometheus samples; under ``--workers`` the sum over all workers.

        Each request lands on whichever worker the kernel picks, so pages are fetched
        until every worker (``streaming_worker``) has answered once.
        """
        if self.workers == 1:
            return parse_prometheus(self.get("/metrics"))
        pages: dict[int, dict[str, float]] = {}
        for _ in range(max_tries):
            page = parse_prometheus(self.get("/metrics"))
            pages.setdefault(int(page.get("streaming_worker", 0)), page)
            if len(pages) == self.workers:
                break
        else:
            print(f"[bench] /metrics: {len(pages)} of {self.workers} workers answered")
        total: dict[str, float] = {}
        for page in pages.values():
            for name, value in page.items():
                total[name] = total.get(name, 0.0) + value
        total.pop("streaming_worker", None)
        return total

    def stop(self, timeout: float = 30.0) -> int | None:
        self._stop.set()
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return proc.returncode


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its children (``--workers``), all threads
    (psutil, else /proc for the process alone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
            except psutil.Error:  # a child that just exited
                continue
            total += times.user + times.system
        return total
    except ImportError:
        pass
    except Exception:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its children (``--workers``), in MiB."""
    try:
        import psutil

        proc = psutil.Process(pid)
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return float(total) / 2**20
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None
