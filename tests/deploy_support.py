"""Real replica processes and a real HAProxy on loopback, for the deployment tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
READY = re.compile(r"ready on (ws://\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    """One ``python -m streaming`` process, as an operator starts it."""

    args: Sequence[str]
    process: subprocess.Popen[str] | None = None
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").rstrip("/")

    @property
    def address(self) -> str:
        return self.url.removeprefix("ws://").rstrip("/")

    def start(self, timeout: float = 120.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streaming", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("replica exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if match := READY.search(line):
                self.url = match.group(1)
                # Keep reading its log, so a full pipe never blocks the replica.
                threading.Thread(target=self._read_log, daemon=True).start()
                return
        raise RuntimeError("replica not ready in time:\n" + "".join(self.lines))

    def _read_log(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def restart(self, timeout: float = 120.0) -> None:
        """Start again on the same address (after a kill), so the balancer finds it."""
        port = self.address.rsplit(":", 1)[1]
        args = list(self.args)
        args[args.index("--port") + 1] = port
        self.args, self.lines = args, []
        self.start(timeout)

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(self.http + "/health", timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def sessions_total(self) -> float:
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("streaming_sessions_total{")
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Balancer:
    """The shipped HAProxy config, run as a process in front of the replicas."""

    replicas: Sequence[Replica]
    port: int = 0
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (scripts/setup.sh installs it)")
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            HAPROXY_BIND=f"127.0.0.1:{self.port}",
            HAPROXY_STATS_BIND=f"127.0.0.1:{free_port()}",
            HAPROXY_ERRORS=str(HAPROXY_CFG.parent),
        )
        for index, replica in enumerate(self.replicas, 1):
            env[f"REPLICA{index}"] = replica.address
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(HAPROXY_CFG)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise RuntimeError(f"haproxy exited: {stderr}")
            time.sleep(0.1)
        raise RuntimeError("haproxy did not listen in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def cluster(replica_args: Sequence[str], count: int = 3) -> Iterator[Balancer]:
    """``count`` replicas on free loopback ports behind the shipped HAProxy config."""
    replicas = [
        Replica(["--host", "127.0.0.1", "--port", "0", *replica_args]) for _ in range(count)
    ]
    balancer = Balancer(replicas)
    try:
        for replica in replicas:
            replica.start()
        balancer.start()
        yield balancer
    finally:
        balancer.stop()
        for replica in replicas:
            replica.stop()


def wait_until(predicate: object, timeout: float = 15.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    assert callable(predicate)
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
