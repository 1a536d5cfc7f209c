"""``--workers N``: N server processes share one port.

One asyncio loop (websocket frames, VAD, JSON) saturates long before a big GPU does. So the
parent reserves the port and spawns N children, each running the ordinary :class:`Server`
(its own model and batching engine). Where the OS has ``SO_REUSEPORT`` (Linux), each worker
listens on a socket of its own bound to that port and the kernel spreads new connections
evenly over them by a hash of the client's address. One listening socket shared by all
workers instead gives each connection to whichever worker wakes first, which is far from
even: on an H200 with 8 workers and 512 streams one worker held 118 (the mean is 64), fell
behind and refused streams while others idled. That shared socket remains the fallback
where ``SO_REUSEPORT`` is missing. The parent only supervises: it announces readiness once
every worker serves, turns SIGTERM/SIGINT into a graceful stop of every worker, and
restarts a worker that dies.

With ``--shared-engine`` the parent first starts one more child, the inference process
(:mod:`streaming.shared_engine`), and the workers send it their windows instead of loading
a model each; it is restarted like a worker if it dies, and stopped after the workers so
that their last utterances are still decoded.

Children are spawned, not forked: CUDA must not be initialised before a fork, and a child
must not inherit the parent's event loop or threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Literal

from .config import ServerConfig
from .engines import host_engine
from .errors import ModelLoadError
from .logs import setup_logging
from .server import Server, server_url
from .shared_engine import engine_address

log = logging.getLogger(__name__)

RESTART_LIMIT = 5  # restarts allowed within RESTART_WINDOW_S before the parent gives up
RESTART_WINDOW_S = 60.0
STOP_MARGIN_S = 5.0  # beyond a worker's own shutdown time, before it is killed
PARENT_CHECK_S = 1.0
ENGINE = -1  # the index of the shared inference process among the children


class WorkersFailed(Exception):
    """A worker could not start, or workers kept dying; the message is one line for the CLI."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class _Report:
    """What a worker tells the parent over its pipe: it serves, or why it could not."""

    kind: Literal["ready", "error"]
    pid: int
    message: str = ""
    exit_code: int = 0


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    reports: Connection | None  # None once the worker closed its end
    ready: bool = False

    @property
    def label(self) -> str:
        return "the inference process" if self.index == ENGINE else f"worker {self.index}"


def reuse_port_supported() -> bool:
    """Whether each worker can listen on a socket of its own (``SO_REUSEPORT``)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def bind_socket(config: ServerConfig, *, reuse_port: bool | None = None) -> socket.socket:
    """The parent's socket, bound here so that ``--port 0`` resolves to one port that every
    worker (and a restarted one) shares. One address only: the first ``host`` resolves to.

    With ``SO_REUSEPORT`` it only reserves the port (it does not listen, so the kernel
    never hands it a connection) and each worker binds its own listening socket to the
    same address (:func:`worker_socket`); without it, it listens and workers accept from it.
    """
    reuse_port = reuse_port_supported() if reuse_port is None else reuse_port
    family, kind, proto, _, address = socket.getaddrinfo(
        config.host or None, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        _set_options(sock, reuse_port)
        sock.bind(address)
        if not reuse_port:
            sock.listen()  # connections queue while the workers load their models
    except OSError:
        sock.close()
        raise
    return sock


def worker_socket(reserved: socket.socket) -> socket.socket:
    """A worker's own listening socket on the parent's reserved address (``SO_REUSEPORT``);
    the parent's socket itself when it listens (no ``SO_REUSEPORT``)."""
    if _listening(reserved):
        return reserved
    sock = socket.socket(reserved.family, reserved.type, reserved.proto)
    try:
        _set_options(sock, reuse_port=True)
        sock.bind(reserved.getsockname())
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def _set_options(sock: socket.socket, reuse_port: bool) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def run_workers(
    config: ServerConfig, sock: socket.socket, *, log_level: str, on_ready: Callable[[str], None]
) -> None:
    """Serve on ``sock`` with ``config.workers`` processes until SIGTERM or SIGINT.

    ``on_ready(url)`` is called once every worker has loaded its model and serves. Raises
    :class:`WorkersFailed` when a worker cannot start or workers keep dying; every worker
    is stopped before this returns or raises. Call it from the main thread (signals).
    """
    _Supervisor(config, sock, log_level).run(on_ready)


class _Supervisor:
    """Starts, watches, restarts and stops the worker processes (parent side)."""

    def __init__(self, config: ServerConfig, sock: socket.socket, log_level: str) -> None:
        self._config = config
        self._sock = sock
        self._log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._engine: _Worker | None = None
        self._engine_dir: str | None = None
        self._restarts: deque[float] = deque()
        self._signals: list[int] = []

    def run(self, on_ready: Callable[[str], None]) -> None:
        # A signal only sets a flag; the wake-up socket makes the blocking wait() return.
        wake, waker = socket.socketpair()
        wake.setblocking(False)
        waker.setblocking(False)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        previous_fd = signal.set_wakeup_fd(waker.fileno(), warn_on_full_buffer=False)
        try:
            if self._config.shared_engine:
                self._engine_dir = tempfile.mkdtemp(prefix="streaming-engine-")  # mode 0700
                self._start_engine()
                if not self._await_engine(wake):
                    return
            for index in range(self._config.workers):
                self._start(index)
            self._supervise(wake, on_ready)
        finally:
            self._stop(wake)
            self._stop_engine()
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake.close()
            waker.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    @property
    def _address(self) -> str | None:
        return engine_address(self._engine_dir) if self._engine_dir else None

    def _start_engine(self) -> None:
        assert self._address is not None
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_engine_main,
            args=(self._address, self._config, send, self._log_level, os.getpid()),
            name="streaming-engine",
        )
        process.start()
        send.close()
        self._engine = _Worker(ENGINE, process, receive)
        log.info("started the inference process (pid %s)", process.pid)

    def _await_engine(self, wake: socket.socket) -> bool:
        """Until the inference process serves (True) or a signal came (False); raises
        :class:`WorkersFailed` if it cannot load the model."""
        engine = self._engine
        assert engine is not None
        while not self._signals:
            pipe = [engine.reports] if engine.reports is not None else []
            ready = wait([wake, engine.process.sentinel, *pipe])
            _drain(wake)
            self._read_reports(engine, False)
            if engine.ready:
                return True
            if engine.process.sentinel in ready:
                engine.process.join()
                raise WorkersFailed(
                    f"the inference process exited with code {engine.process.exitcode} "
                    "before serving"
                )
        return False

    def _stop_engine(self) -> None:
        """After the workers: SIGTERM, then kill if it outlives its grace period."""
        engine = self._engine
        if engine is not None:
            if engine.process.is_alive():
                engine.process.terminate()
                engine.process.join(self._config.shutdown_grace_s + STOP_MARGIN_S)
                if engine.process.is_alive():
                    log.warning("the inference process did not stop in time; killing it")
                    engine.process.kill()
            engine.process.join()
            if engine.reports is not None:
                engine.reports.close()
        if self._engine_dir is not None:
            shutil.rmtree(self._engine_dir, ignore_errors=True)

    def _start(self, index: int) -> None:
        if index == ENGINE:
            self._start_engine()
            return
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(
                index,
                self._sock,
                self._config,
                send,
                self._log_level,
                os.getpid(),
                self._address,
            ),
            name=f"streaming-worker-{index}",
        )
        process.start()
        send.close()  # the child holds the only write end: EOF when it exits
        self._workers[index] = _Worker(index, process, receive)
        log.info("started worker %d (pid %s)", index, process.pid)

    def _supervise(self, wake: socket.socket, on_ready: Callable[[str], None]) -> None:
        """Until a signal: announce readiness, and restart workers that die once serving."""
        announced = False
        while not self._signals:
            children = [*self._workers.values(), *([self._engine] if self._engine else [])]
            by_pipe = {w.reports: w for w in children if w.reports is not None}
            by_sentinel = {w.process.sentinel: w for w in children}
            ready = wait([wake, *by_pipe, *by_sentinel])
            _drain(wake)
            for pipe, worker in by_pipe.items():
                if pipe in ready:
                    self._read_reports(worker, announced)
            for sentinel, worker in by_sentinel.items():
                if sentinel in ready and not self._signals:
                    self._read_reports(worker, announced)
                    self._died(worker, announced)
            if not announced and all(w.ready for w in self._workers.values()):
                announced = True
                log.info("%d workers serving", len(self._workers))
                on_ready(server_url(self._config, self._sock.getsockname()[1]))

    def _read_reports(self, worker: _Worker, announced: bool) -> None:
        while worker.reports is not None and worker.reports.poll():
            try:
                report: _Report = worker.reports.recv()
            except EOFError:
                worker.reports.close()
                worker.reports = None
                return
            if report.kind == "ready":
                worker.ready = True
                if announced:
                    log.info("%s (pid %d) serving again", worker.label, report.pid)
            elif not announced:
                raise WorkersFailed(report.message, report.exit_code)
            else:
                log.error("%s could not start: %s", worker.label, report.message)

    def _died(self, worker: _Worker, announced: bool) -> None:
        """A worker exited without being asked to: fatal during start-up, else restarted."""
        worker.process.join()
        code = worker.process.exitcode
        if not announced:
            raise WorkersFailed(f"{worker.label} exited with code {code} before serving")
        log.error(
            "%s (pid %s) exited unexpectedly with code %s",
            worker.label,
            worker.process.pid,
            code,
        )
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= RESTART_LIMIT:
            raise WorkersFailed(
                f"workers exited {len(self._restarts) + 1} times within "
                f"{RESTART_WINDOW_S:g} s; giving up (see the log above)"
            )
        self._restarts.append(now)
        if worker.reports is not None:
            worker.reports.close()
        self._start(worker.index)

    def _stop(self, wake: socket.socket) -> None:
        """SIGTERM every worker (each sends its finals and closes with 1001), wait as long
        as a worker's own shutdown may take plus a margin, then kill what is left. A further
        SIGTERM/SIGINT meanwhile kills at once."""
        alive = [w.process for w in self._workers.values() if w.process.is_alive()]
        if alive:
            log.info("stopping %d workers", len(alive))
        for process in alive:
            process.terminate()
        grace = self._config.shutdown_grace_s
        deadline = time.monotonic() + grace + max(grace, 1.0) + STOP_MARGIN_S
        signals = len(self._signals)
        while alive and len(self._signals) == signals:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait([wake, *(p.sentinel for p in alive)], remaining)
            _drain(wake)
            alive = [p for p in alive if p.is_alive()]
        for process in alive:
            log.warning(
                "worker %s (pid %s) did not stop in time; killing it", process.name, process.pid
            )
            process.kill()
        for worker in self._workers.values():
            worker.process.join()
            if worker.reports is not None:
                worker.reports.close()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096):
            pass


# -- worker side ----------------------------------------------------------------------


def _worker_main(
    index: int,
    sock: socket.socket,
    config: ServerConfig,
    reports: Connection,
    log_level: str,
    parent_pid: int,
    engine_address: str | None = None,
) -> None:
    """Entry point of a worker process: the ordinary server, on the parent's socket."""
    # Ctrl-C in a terminal reaches the whole process group; the parent turns it into the
    # SIGTERM that stops each worker gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(log_level, prefix=f"[worker {index}] ")
    _run_child(
        f"worker {index}", reports, _serve(index, sock, config, reports, parent_pid, engine_address)
    )


def _run_child(label: str, reports: Connection, main: Coroutine[Any, Any, None]) -> None:
    """Run a child's ``main``; a failure to start reaches the parent as one line."""
    try:
        asyncio.run(main)
    except ModelLoadError as exc:
        _report_failure(reports, str(exc), 2)
    except Exception as exc:
        log.exception("%s failed", label)
        _report_failure(reports, f"{label}: {exc}", 1)
    finally:
        reports.close()


def _report_failure(reports: Connection, message: str, exit_code: int) -> None:
    with contextlib.suppress(OSError):  # the parent may be gone
        reports.send(_Report("error", os.getpid(), message, exit_code))
    sys.exit(exit_code)


async def _serve(
    index: int,
    sock: socket.socket,
    config: ServerConfig,
    reports: Connection,
    parent_pid: int,
    engine_address: str | None,
) -> None:
    server = Server(config, worker=index, engine_address=engine_address)
    await server.start(sock=worker_socket(sock))
    await _serve_until_stopped(reports, parent_pid)
    await server.shutdown()


def _engine_main(
    address: str, config: ServerConfig, reports: Connection, log_level: str, parent_pid: int
) -> None:
    """Entry point of the shared inference process (``--shared-engine``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(log_level, prefix="[engine] ")
    _run_child("inference process", reports, _run_engine(address, config, reports, parent_pid))


async def _run_engine(
    address: str, config: ServerConfig, reports: Connection, parent_pid: int
) -> None:
    host = await host_engine(config, address)
    try:
        await _serve_until_stopped(reports, parent_pid)
    finally:
        await host.stop()


async def _serve_until_stopped(reports: Connection, parent_pid: int) -> None:
    """Tell the parent this child serves, then wait for SIGTERM or the parent's death."""
    # Before this, SIGTERM's default action ends a child still loading: nothing to finalize.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    reports.send(_Report("ready", os.getpid()))
    orphaned = asyncio.create_task(_stop_when_orphaned(parent_pid, stop))
    try:
        await stop.wait()
    finally:
        orphaned.cancel()


async def _stop_when_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    """A parent killed with SIGKILL cannot forward SIGTERM: stop rather than serve alone."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("the parent process is gone; shutting down")
    stop.set()
