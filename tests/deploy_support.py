"""Real replica processes and a real HAProxy on loopback, for the deployment tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
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


def image_command() -> list[str]:
    """The CPU image's ``CMD`` (deploy/Dockerfile): replicas here start exactly as in a
    container (no container runtime is needed to test that command)."""
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            command: list[str] = json.loads(line.removeprefix("CMD "))
            return command
    raise RuntimeError("deploy/Dockerfile has no CMD")


@dataclass
class Replica:
    """One server process started with the container's command and environment
    (``STREAMING_MODEL``, ``STREAMING_PORT``), plus ``args``."""

    args: Sequence[str]
    model: str = "tiny-en"
    port: int = 0
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
        *shell, script = image_command()
        env = dict(os.environ)
        env.update(
            STREAMING_MODEL=self.model,
            STREAMING_PORT=str(self.port),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        self.process = subprocess.Popen(
            [*shell, f"{script} {shlex.join(self.args)}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("replica exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if match := READY.search(line):
                # The image binds every interface; tests reach it on loopback.
                self.url = match.group(1).replace("0.0.0.0", "127.0.0.1")
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
        self.port = int(self.address.rsplit(":", 1)[1])
        self.lines = []
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
    replicas = [Replica(replica_args) for _ in range(count)]
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
