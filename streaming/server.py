"""The websocket server: model + engine lifecycle, the HTTP layer, connections, shutdown.

Each request is routed (``streaming.routes``), then authorized (a token, when configured),
then admitted (``streaming.admission``); an admitted websocket becomes an ``Endpoint``
speaking the route's codec.

Use it as an async context manager (tests bind port 0)::

    async with Server(ServerConfig(port=0)) as server:
        print(server.url)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import uuid
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from .admission import Admission, Decision
from .codecs.base import HttpReply
from .config import ServerConfig
from .cpu import usable_cores, workers_hint
from .endpoint import Endpoint, StreamContext
from .engine import Engine
from .engines import LOCAL, build_engine, shared_engine_url
from .metrics import Metrics
from .model import LoadedModel, ModelInfo, resolve_model
from .page import origin_allowed
from .rescoring import FinalRescorer, build_rescorer
from .resume import TokenSigner
from .routes import PageRoute, RouteTable, route_table
from .security import presented_token, redacting_logger, server_tls_context, token_allowed
from .session import Session

log = logging.getLogger(__name__)

RESUME_KEY_ENV = "STREAMING_RESUME_KEY"

# /health "status" for each admission decision ("overloaded" counts as full).
HEALTH_STATUS = {"admitted": "ready", "shutting_down": "draining", "full": "full"}


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
        self.routes: RouteTable = route_table(
            self._health_page, self._live_page, self._metrics_page, protocol=config.protocol
        )
        self.admission = Admission(config)
        self.metrics = Metrics(worker)
        self._closing = False
        self.sessions_total = 0
        key = config.resume_key or os.environ.get(RESUME_KEY_ENV)
        self.shared_resume_key = bool(key)
        self.signer = TokenSigner(key.encode() if key else secrets.token_bytes(32))

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
        if self.engine_address is None and self.config.inference == LOCAL:
            cores, workers = usable_cores(), self.config.workers
            if hint := workers_hint(cores, device=self.info.device, workers=workers):
                log.info(hint)
        if self.rescorer is None:  # LM finals by default; a beam search for hotwords
            source = resolve_model(self.config.model.name)
            self.rescorer = await asyncio.to_thread(
                build_rescorer, self.config.lm, self.info.vocab, source
            )
        tls = self.config.tls_cert_file
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
            # Origin: checked in _process_request (the server's own page is allowed too).
            logger=redacting_logger(),
        )
        log.info("listening on %s", self.url)
        if not self.shared_resume_key:
            log.info(
                "no --resume-key (or $%s): native streams resume only on this process; "
                "give every replica the same key to resume on any",
                RESUME_KEY_ENV,
            )

    async def _start_engine(self) -> None:
        """The engine ``--engine`` names (in-process by default: loaded unless given,
        warmed up), or the client of the shared inference process."""
        if self.engine_address is not None:
            url = shared_engine_url(self.engine_address)
        else:
            url = self.config.inference
        model = self.model if url == LOCAL else None
        built = await build_engine(self.config, url, model=model, metrics=self.metrics)
        self.engine, self.info = built.engine, built.info
        if built.model is not None:
            self.model = built.model

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain, then stop: /health says "draining" and new streams get 503 at once (the
        listening socket stays open, so health checks and balancers see it), every open
        utterance is finalized and its final sent, then connections close with 1001."""
        if self._closing:
            return
        self._closing = True
        grace = self.config.shutdown_grace_s if grace is None else grace
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

    # -- HTTP: route → authorize → admit -----------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        route = self.routes.match(request)
        if route is None:
            path = request.path.split("?", 1)[0]
            return _respond(
                connection,
                HttpReply.json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint at {path}"}),
            )
        if not isinstance(route, PageRoute) and not origin_allowed(
            request.headers.get("Origin"), request.headers.get("Host"), self.config.allowed_origins
        ):  # browsers send Origin; a page of another site may not stream here
            return _respond(connection, FORBIDDEN_ORIGIN)
        if not (isinstance(route, PageRoute) and route.public) and not self._authorized(request):
            self.metrics.rejected.labels("unauthorized").inc()
            log.warning("refused %s: missing or invalid token", _peer(connection))
            return _respond(connection, UNAUTHORIZED)
        if isinstance(route, PageRoute):
            return _respond(connection, route.respond(request))
        refusal = route.codec.handshake_refusal(request.path)
        if refusal is not None:  # a protocol's own handshake refusal (Deepgram: HTTP 400)
            return _respond(connection, refusal)
        decision = self._admit()
        if decision.admitted:
            return None
        self.metrics.rejected.labels(decision.reason).inc()
        if decision.reason == "shutting_down":
            reply: HttpReply | None = HttpReply.json(
                HTTPStatus.SERVICE_UNAVAILABLE, {"error": decision.message}
            )
        else:
            log.warning("refused %s: %s", _peer(connection), decision.message)
            reply = route.codec.full_reply(decision.message)
        # None: accepted, and answered with the protocol's own "full" message in _handle.
        return None if reply is None else _respond(connection, reply)

    def _authorized(self, request: Request) -> bool:
        tokens = self.config.auth_tokens
        return not tokens or token_allowed(presented_token(request.path, request.headers), tokens)

    def _admit(self, *, shutting_down: bool | None = None) -> Decision:
        engine = self.engine
        return self.admission.decide(
            sessions=len(self._connections),
            engine_load=lambda: engine.load if engine is not None else 0.0,
            behind=(c.driver.behind_real_time for c in self._connections),
            shutting_down=self._closing if shutting_down is None else shutting_down,
        )

    def _health_page(self, request: Request) -> HttpReply:
        """200 while the server takes new streams, 503 while full or draining: load
        balancers and readiness probes route new streams by the status code alone."""
        body = self.health()
        ready = body["status"] == "ready"
        return HttpReply.json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _live_page(self, request: Request) -> HttpReply:
        """200 while the event loop answers, draining or not (a liveness probe)."""
        return HttpReply.json(HTTPStatus.OK, {"status": "alive", "pid": os.getpid()})

    def _metrics_page(self, request: Request) -> HttpReply:
        self.metrics.queue_depth.set(self.engine.queue_depth if self.engine else 0)
        self.metrics.engine_load.set(self.engine.load if self.engine else 0.0)
        return HttpReply(HTTPStatus.OK, self.metrics.render().decode(), self.metrics.content_type)

    def health(self) -> dict[str, Any]:
        engine = self.engine
        decision = self._admit()
        return {
            "status": HEALTH_STATUS.get(decision.reason, "full"),
            "admission": decision.reason,
            "reason": None if decision.admitted else decision.message,
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
            "lm": str(self.rescorer.lm_path) if self.rescorer and self.rescorer.lm_path else None,
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
            rescore_finals=self.rescorer is not None and self.rescorer.has_lm,
            early_commits=self.config.lm.early_commits,
        )
        assert ws.request is not None
        route = self.routes.stream(ws.request.path)
        decision = self._admit(shutting_down=False)
        if not decision.admitted and route.codec.full_reply(decision.message) is None:
            # Accepted only to answer "full" in the protocol (see _process_request).
            await route.codec.answer_full(ws, self.config.idle_timeout_s)
            return
        context = StreamContext(
            ws,
            session,
            self.engine,
            self.config,
            session_id,
            self.config.model.name,
            self.metrics,
            self.rescorer,
            self.signer,
        )
        endpoint = Endpoint(context, route.codec)
        self._connections.add(endpoint)
        self.sessions_total += 1
        self.metrics.sessions.labels(route.path).inc()
        self.metrics.sessions_active.labels(route.path).inc()
        log.info(
            "session opened from %s on %s",
            _peer(ws),
            route.path,
            extra={"session": session_id},
        )
        try:
            await endpoint.run()
        finally:
            self._connections.discard(endpoint)
            self.metrics.sessions_active.labels(route.path).dec()


def server_url(config: ServerConfig, port: int) -> str:
    """The websocket URL clients use for a server configured by ``config`` on ``port``."""
    host = config.host if ":" not in config.host else f"[{config.host}]"
    scheme = "wss" if config.tls_cert_file else "ws"
    return f"{scheme}://{host}:{port}/"


UNAUTHORIZED = HttpReply.json(
    HTTPStatus.UNAUTHORIZED, {"error": "missing or invalid token"}, {"WWW-Authenticate": "Bearer"}
)
FORBIDDEN_ORIGIN = HttpReply.json(HTTPStatus.FORBIDDEN, {"error": "origin not allowed"})


def _respond(connection: ServerConnection, reply: HttpReply) -> Response:
    text = reply.body if isinstance(reply.body, str) else ""
    response = connection.respond(reply.status, text)
    if isinstance(reply.body, bytes):
        response.body = reply.body
        del response.headers["Content-Length"]
        response.headers["Content-Length"] = str(len(reply.body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = reply.content_type
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def _peer(ws: ServerConnection) -> str:
    """Client address for logs (never the request path, which may carry a token)."""
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "unknown"
