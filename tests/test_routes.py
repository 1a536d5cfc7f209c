"""The route table: pages first (a plain-only page may share "/" with a stream), then
websocket paths by codec, then nothing (404)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from http import HTTPStatus

from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.http11 import Request

from streaming.codecs import DeepgramCodec, NativeCodec, VoskCodec
from streaming.codecs.base import HttpReply
from streaming.routes import PageRoute, RouteTable, StreamRoute, route_table
from streaming.server import Server

OK = HttpReply(HTTPStatus.OK, "ok", "text/plain")


def page(_request: Request) -> HttpReply:
    return OK


def get(path: str, *, upgrade: bool = False) -> Request:
    headers = Headers({"Upgrade": "websocket", "Connection": "Upgrade"} if upgrade else {})
    return Request(path, headers)


def test_health_and_metrics_are_pages_and_only_health_is_public() -> None:
    routes = route_table(page, page, page)
    health, metrics = routes.match(get("/health?x=1")), routes.match(get("/metrics"))
    assert isinstance(health, PageRoute) and health.public
    assert isinstance(metrics, PageRoute) and not metrics.public
    assert routes.match(get("/health", upgrade=True)) is health


def test_stream_paths_route_to_their_codec_and_root_follows_the_protocol() -> None:
    routes = route_table(page, page, page)
    assert routes.match(get("/v1/listen?encoding=linear16", upgrade=True)) == StreamRoute(
        "/v1/listen", DeepgramCodec
    )
    assert routes.stream("/?token=x").codec is NativeCodec
    assert route_table(page, page, page, protocol="vosk").stream("/").codec is VoskCodec
    assert routes.match(get("/nowhere")) is None


def test_a_plain_only_page_shares_its_path_with_a_stream() -> None:
    routes = RouteTable([PageRoute("/", page, public=True, plain_only=True)], {"/": NativeCodec})
    assert isinstance(routes.match(get("/")), PageRoute)
    assert routes.match(get("/", upgrade=True)) == StreamRoute("/", NativeCodec)


def test_a_page_route_may_match_a_tree_of_paths() -> None:
    tree = PageRoute(lambda path: path == "/" or path.startswith("/app/"), page, plain_only=True)
    routes = RouteTable([tree], {"/": NativeCodec})
    assert routes.match(get("/app/app.js?v=2")) is tree
    assert routes.match(get("/apple")) is None


async def test_a_page_answers_plain_gets_with_bytes_while_websockets_on_its_path_stream(
    server: Server,
) -> None:
    icon = b"\x89PNG\r\n\x1a\n\x00"
    served = PageRoute(
        lambda path: path in ("/", "/icon.png"),
        lambda _request: HttpReply(HTTPStatus.OK, icon, "image/png", {"Cache-Control": "no-cache"}),
        public=True,
        plain_only=True,
    )
    streams = {path: route.codec for path, route in server.routes.streams.items()}
    server.routes = RouteTable([*server.routes.pages, served], streams)
    url = f"http://127.0.0.1:{server.port}/icon.png"
    with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as response:
        assert response.read() == icon
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Cache-Control"] == "no-cache"
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
