"""The route table: pages first (a plain-only page may share "/" with a stream), then
websocket paths by codec, then nothing (404)."""

from __future__ import annotations

from http import HTTPStatus

from websockets.datastructures import Headers
from websockets.http11 import Request

from streaming.codecs import DeepgramCodec, NativeCodec, VoskCodec
from streaming.codecs.base import HttpReply
from streaming.routes import PageRoute, RouteTable, StreamRoute, route_table

OK = HttpReply(HTTPStatus.OK, "ok", "text/plain")


def page(_request: Request) -> HttpReply:
    return OK


def get(path: str, *, upgrade: bool = False) -> Request:
    headers = Headers({"Upgrade": "websocket", "Connection": "Upgrade"} if upgrade else {})
    return Request(path, headers)


def test_health_and_metrics_are_pages_and_only_health_is_public() -> None:
    routes = route_table(page, page)
    health, metrics = routes.match(get("/health?x=1")), routes.match(get("/metrics"))
    assert isinstance(health, PageRoute) and health.public
    assert isinstance(metrics, PageRoute) and not metrics.public
    assert routes.match(get("/health", upgrade=True)) is health


def test_stream_paths_route_to_their_codec_and_root_follows_the_protocol() -> None:
    routes = route_table(page, page)
    assert routes.match(get("/v1/listen?encoding=linear16", upgrade=True)) == StreamRoute(
        "/v1/listen", DeepgramCodec
    )
    assert routes.stream("/?token=x").codec is NativeCodec
    assert route_table(page, page, protocol="vosk").stream("/").codec is VoskCodec
    assert routes.match(get("/nowhere")) is None


def test_a_plain_only_page_shares_its_path_with_a_stream() -> None:
    routes = RouteTable([PageRoute("/", page, public=True, plain_only=True)], {"/": NativeCodec})
    assert isinstance(routes.match(get("/")), PageRoute)
    assert routes.match(get("/", upgrade=True)) == StreamRoute("/", NativeCodec)
