"""The websocket server: model + engine lifecycle, admission, HTTP endpoints, shutdown.

Use it as an async context manager (tests bind port 0)::

    async with Server(ServerConfig(port=0)) as server:
        print(server.url)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from . import compat
from .config import ServerConfig
from .connection import ConnectionContext, Endpoint, StreamConnection
from .engine import LOAD_WINDOW_S, Engine
from .engines import LOCAL, build_engine, shared_engine_url
from .metrics import Metrics
from .model import LoadedModel, ModelInfo, resolve_model
from .rescoring import FinalRescorer, build_rescorer
from .security import presented_token, redacting_logger, server_tls_context, token_allowed
from .session import Session

log = logging.getLogger(__name__)

EndpointFactory = Callable[[ConnectionContext], Endpoint]


def endpoints(protocol: str = "native") -> dict[str, EndpointFactory]:
    """URL path → protocol front end; ``protocol`` is what "/" speaks (stock Vosk and
    WhisperLive clients connect to "/")."""
    root = StreamConnection if protocol == "native" else compat.ROOT[protocol]
    return {"/": root, "/v1/stream": StreamConnection, **compat.endpoints()}


class Server:
    """Owns the model, the shared inference engine and every connection."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        model: LoadedModel | None = None,
        rescorer: FinalRescorer | None = None,
        worker: int = 0,
        engine_address: str | None = None,
    ) -> None:
        """``model`` and ``rescorer`` (LM finals) are loaded from ``config`` when not given;
        ``worker`` is this process's index under ``--workers`` (reported by /health);
        ``engine_address`` is the shared inference process's socket (``--shared-engine``),
        which then runs the model instead of this process."""
        config.validate()
        self.config = config
        self.worker = worker
        self.model = model
        self.info: ModelInfo | None = model.info if model is not None else None
        self.engine_address = engine_address
        self.engine: Engine | None = None
        self.rescorer = rescorer
        self._ws: WsServer | None = None
        self._connections: set[Endpoint] = set()
        self._endpoints = endpoints(config.protocol)
        self.metrics = Metrics(worker)
        self._closing = False
        self.sessions_total = 0

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self, sock: socket.socket | None = None) -> None:
        """Load the model, start the engine and serve: on ``sock`` when given (a listening
        socket shared by ``--workers`` processes; host and port then come from it), else on
        the configured host and port."""
        await self._start_engine()
        assert self.info is not None
        if self.config.lm.enabled and self.rescorer is None:
            source = resolve_model(self.config.model.name)
            self.rescorer = await asyncio.to_thread(
                build_rescorer, self.config.lm, self.info.vocab, source
            )
        tls = self.config.tls_cert_file
        origins = self.config.allowed_origins
        self._ws = await serve(
            self._handle,
            self.config.host if sock is None else None,
            self.config.port if sock is None else None,
            sock=sock,
            process_request=self._process_request,
            max_size=max(4 * self.config.max_frame_bytes, 1 << 16),
            max_queue=16,
            compression=None,
            ssl=server_tls_context(tls, self.config.tls_key_file or "") if tls else None,
            # Browsers always send Origin; other clients may omit it (None).
            origins=[*origins, None] if origins else None,  # type: ignore[list-item]
            logger=redacting_logger(),
        )
        log.info("listening on %s", self.url)

    async def _start_engine(self) -> None:
        """The in-process engine (loaded unless given, warmed up), or the client of the
        shared inference process."""
        url = LOCAL if self.engine_address is None else shared_engine_url(self.engine_address)
        model = self.model if url == LOCAL else None
        built = await build_engine(self.config, url, model=model, metrics=self.metrics)
        self.engine, self.info = built.engine, built.info
        if built.model is not None:
            self.model = built.model

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, finalize every open utterance, send finals, close with 1001."""
        if self._closing:
            return
        self._closing = True
        grace = self.config.shutdown_grace_s if grace is None else grace
        if self._ws is not None:
            self._ws.close(close_connections=False)
        if self._connections:
            log.info("finalizing %d open sessions", len(self._connections))
            await asyncio.gather(*(c.shutdown(grace) for c in list(self._connections)))
        if self._ws is not None:
            self._ws.close(close_connections=True)
            try:
                await asyncio.wait_for(self._ws.wait_closed(), max(grace, 1.0))
            except asyncio.TimeoutError:
                log.warning("connections still open after the grace period")
        if self.engine is not None:
            await self.engine.stop()
        if self.rescorer is not None:
            self.rescorer.close()
        log.info("server stopped")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (by a signal handler), then shut down gracefully."""
        await stop.wait()
        await self.shutdown()

    # -- properties -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._ws is None:
            raise RuntimeError("server not started")
        return int(next(iter(self._ws.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return server_url(self.config, self.port)

    @property
    def active_sessions(self) -> int:
        return len(self._connections)

    # -- HTTP -----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return _json_response(connection, HTTPStatus.OK, self.health())
        if path != "/metrics" and path not in self._endpoints:
            return _json_response(
                connection, HTTPStatus.NOT_FOUND, {"error": f"no endpoint at {path}"}
            )
        if self.config.auth_tokens and not token_allowed(
            presented_token(request.path, request.headers), self.config.auth_tokens
        ):
            self.metrics.rejected.labels("unauthorized").inc()
            log.warning("refused %s: missing or invalid token", _peer(connection))
            response = _json_response(
                connection, HTTPStatus.UNAUTHORIZED, {"error": "missing or invalid token"}
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if path == "/metrics":
            self.metrics.queue_depth.set(self.engine.queue_depth if self.engine else 0)
            self.metrics.engine_load.set(self.engine.load if self.engine else 0.0)
            return _text_response(
                connection, HTTPStatus.OK, self.metrics.render().decode(), self.metrics.content_type
            )
        refusal = compat.request_refusal(request.path)
        if refusal is not None:  # a protocol's own handshake refusal (Deepgram: HTTP 400)
            response = _json_response(connection, refusal.status, refusal.body)
            for name, value in refusal.headers.items():
                response.headers[name] = value
            return response
        if self._closing:
            self.metrics.rejected.labels("shutting_down").inc()
            return _json_response(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, {"error": "server shutting down"}
            )
        refused = self._full_reason()
        if refused is not None:
            reason, message = refused
            self.metrics.rejected.labels(reason).inc()
            log.warning("refused %s: %s", _peer(connection), message)
            if compat.answers_when_full(self._endpoints[path]):
                return None  # answered with the protocol's own "full" message in _handle
            return _json_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})
        return None

    def _full_reason(self) -> tuple[str, str] | None:
        """Why a new session would be refused now, or None: the session limit, an engine
        so busy that one more stream would make every stream fall behind, or streams that
        already have (the engine's busy fraction alone misses a CPU saturated elsewhere)."""
        if len(self._connections) >= self.config.max_sessions:
            return "full", f"server full: {self.config.max_sessions} sessions in use"
        limit = self.config.max_engine_load
        load = self.engine.load if self.engine is not None and limit < 1 else 0.0
        if load >= limit:
            return "overloaded", (
                f"server overloaded: the model was busy {load:.0%} of the last "
                f"{LOAD_WINDOW_S:.0f} s (limit {limit:.0%}); try again later"
            )
        behind = sum(1 for c in self._connections if c.driver.behind_real_time)
        if behind:
            return "overloaded", (
                f"server overloaded: {behind} of {len(self._connections)} streams are more "
                f"than {self.config.lag_warning_s:g} s behind real time; try again later"
            )
        return None

    def health(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "status": "shutting_down" if self._closing else "ok",
            "worker": self.worker,
            "pid": os.getpid(),
            "model": self.config.model.name,
            "device": self.info.device if self.info else None,
            "shared_engine": self.engine_address is not None,
            "sessions": len(self._connections),
            "max_sessions": self.config.max_sessions,
            "queue_depth": engine.queue_depth if engine else 0,
            "engine_load": round(engine.load, 3) if engine else 0.0,
            "batches": round(engine.stats.batches, 2) if engine else 0,
            "mean_batch": round(engine.stats.mean_batch, 2) if engine else 0.0,
            "lm": self.config.lm.path,
            "lm_finals": self.rescorer.decoded if self.rescorer else 0,
        }

    # -- websocket ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert self.info is not None and self.engine is not None
        session_id = uuid.uuid4().hex[:12]
        session = Session(
            self.info.vocab,
            self.info.geometry,
            self.config.vad,
            self.config.window.resolved(self.info.device),
            rescore_finals=self.rescorer is not None,
        )
        assert ws.request is not None
        factory = self._endpoints[ws.request.path.split("?", 1)[0]]
        if self._full_reason() is not None and compat.answers_when_full(factory):
            await compat.answer_full(ws, self.config.idle_timeout_s)
            return
        path = ws.request.path.split("?", 1)[0]
        context = ConnectionContext(
            ws,
            session,
            self.engine,
            self.config,
            session_id,
            self.config.model.name,
            self.metrics,
            self.rescorer,
        )
        connection = factory(context)
        self._connections.add(connection)
        self.sessions_total += 1
        self.metrics.sessions.labels(path).inc()
        self.metrics.sessions_active.labels(path).inc()
        log.info(
            "session opened from %s on %s",
            _peer(ws),
            path,
            extra={"session": session_id},
        )
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self.metrics.sessions_active.labels(path).dec()


def server_url(config: ServerConfig, port: int) -> str:
    """The websocket URL clients use for a server configured by ``config`` on ``port``."""
    host = config.host if ":" not in config.host else f"[{config.host}]"
    scheme = "wss" if config.tls_cert_file else "ws"
    return f"{scheme}://{host}:{port}/"


def _json_response(
    connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]
) -> Response:
    return _text_response(connection, status, json.dumps(body) + "\n", "application/json")


def _text_response(
    connection: ServerConnection, status: HTTPStatus, text: str, content_type: str
) -> Response:
    response = connection.respond(status, text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


def _peer(ws: ServerConnection) -> str:
    """Client address for logs (never the request path, which may carry a token)."""
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "unknown"
