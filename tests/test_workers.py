"""``--workers N``: the real CLI in a subprocess, N processes on one port, real clients.

The bundled tiny-en model (each worker loads its own copy), sentences spoken by espeak-ng,
the same word checks as tests/test_bundled_model.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import (
    START_TIMEOUT_S,
    WorkerServer,
    concurrent_streams_get_their_words,
    health,
    parent_of,
    sigterm_mid_utterance,
    start_without_model,
    workers_seen,
)

from streaming import workers
from streaming.__main__ import build_parser, config_from_args
from streaming.config import ServerConfig
from streaming.server import Server


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerServer]:
    server = WorkerServer(tmp_path_factory.mktemp("workers"), "--workers", "2")
    yield server
    assert server.stop() == 0


async def test_concurrent_streams_all_get_their_own_words(pool: WorkerServer) -> None:
    await concurrent_streams_get_their_words(pool.url)


def test_connections_are_spread_over_both_workers(pool: WorkerServer) -> None:
    seen = workers_seen(pool.url, 2)
    assert sorted(seen) == [0, 1], f"only worker(s) {sorted(seen)} answered"
    assert len(set(seen.values())) == 2
    for pid in seen.values():
        assert parent_of(pid) == pool.proc.pid


def test_a_worker_that_dies_is_restarted_on_the_same_port(pool: WorkerServer) -> None:
    before = workers_seen(pool.url, 2)
    os.kill(before[1], signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            seen = workers_seen(pool.url, 2, tries=20)
        except OSError:  # a connection the kernel had queued on the killed worker's socket
            seen = {}
        if seen.get(1, before[1]) != before[1]:
            break
        assert time.monotonic() < deadline, "worker 1 was not restarted"
        time.sleep(0.5)
    assert seen[0] == before[0]
    assert parent_of(seen[1]) == pool.proc.pid
    assert pool.proc.poll() is None
    assert "worker 1 (pid" in pool.stderr and "exited unexpectedly with code -9" in pool.stderr


async def test_sigterm_mid_stream_still_sends_the_final_and_exits_0(tmp_path: Path) -> None:
    server = WorkerServer(tmp_path, "--workers", "2", "--shutdown-grace-s", "5")
    try:
        await sigterm_mid_utterance(server)
        assert "[worker 0] " in server.stderr and "[worker 1] " in server.stderr
    finally:
        server.stop()


def test_a_worker_that_cannot_load_the_model_fails_the_server_with_one_line() -> None:
    start_without_model("--workers", "2")


def test_workers_option_fills_the_config_and_must_be_at_least_one() -> None:
    assert config_from_args(build_parser().parse_args([])).workers == 1
    assert config_from_args(build_parser().parse_args(["--workers", "4"])).workers == 4
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ServerConfig(workers=0).validate()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        config_from_args(build_parser().parse_args(["--workers", "-2"])).validate()


async def test_single_process_health_reports_worker_0_and_its_pid(server: Server) -> None:
    data = await asyncio.to_thread(health, server.url)
    assert data["worker"] == 0 and data["pid"] == os.getpid()


class DeadProcess:
    """Stands in for a worker process that has exited (the restart bookkeeping only)."""

    pid = 12345
    exitcode = 1

    def join(self) -> None:
        pass


def test_workers_that_keep_dying_make_the_server_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        supervisor = workers._Supervisor(ServerConfig(workers=2), sock, "INFO")
    restarted: list[int] = []
    monkeypatch.setattr(supervisor, "_start", restarted.append)
    worker = workers._Worker(1, DeadProcess(), None)  # type: ignore[arg-type]
    for _ in range(workers.RESTART_LIMIT):
        supervisor._died(worker, announced=True)
    assert restarted == [1] * workers.RESTART_LIMIT
    with pytest.raises(workers.WorkersFailed, match="giving up") as failed:
        supervisor._died(worker, announced=True)
    assert failed.value.exit_code == 1
    with pytest.raises(workers.WorkersFailed, match="before serving"):
        supervisor._died(worker, announced=False)


@pytest.mark.skipif(not workers.reuse_port_supported(), reason="needs SO_REUSEPORT (Linux)")
def test_the_kernel_spreads_connections_evenly_over_worker_sockets() -> None:
    reserved = workers.bind_socket(ServerConfig(host="127.0.0.1", port=0))
    assert not reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)  # never accepts
    listeners = [workers.worker_socket(reserved) for _ in range(4)]
    port = reserved.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
    try:
        counts = []
        for sock in listeners:
            sock.setblocking(False)
            accepted = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted += 1
            counts.append(accepted)
        assert sum(counts) == 400
        # A hash of the client address picks the socket: about 100 each (sd ~9), never
        # the pile-up on one worker that a shared accept socket gives.
        assert min(counts) >= 60 and max(counts) <= 140, counts
    finally:
        for sock in [*clients, *listeners, reserved]:
            sock.close()


def test_without_reuse_port_the_workers_accept_from_the_parents_socket() -> None:
    reserved = workers.bind_socket(ServerConfig(host="127.0.0.1", port=0), reuse_port=False)
    try:
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert workers.worker_socket(reserved) is reserved
    finally:
        reserved.close()
