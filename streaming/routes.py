"""The server's URL routes: plain HTTP pages (answered at once) and websocket streams
(answered by a protocol codec). ``Server`` matches a request here first, then authorizes
it, then admits it (``streaming.admission``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from websockets.http11 import Request

from .codecs import stream_paths
from .codecs.base import Codec, HttpReply
from .page import is_page_path, page_response


@dataclass(frozen=True)
class PageRoute:
    """A plain HTTP GET answered by ``respond``.

    ``path``: the exact path (no query), or a predicate on the request path for a route
    that serves a tree of files. ``public``: served without a token (health checks, a
    page). ``plain_only``: only for requests that are not websocket upgrades, so a page can
    share a path with a stream (a browser page on "/" while clients stream to "/").
    """

    path: str | Callable[[str], bool]
    respond: Callable[[Request], HttpReply]
    public: bool = False
    plain_only: bool = False

    def matches(self, path: str, *, upgrade: bool) -> bool:
        if self.plain_only and upgrade:
            return False
        return self.path(path) if callable(self.path) else self.path == path


@dataclass(frozen=True)
class StreamRoute:
    """A websocket path and the codec that speaks on it."""

    path: str
    codec: type[Codec]


Route = PageRoute | StreamRoute


class RouteTable:
    """Pages first, then streams; a path in neither is a 404."""

    def __init__(self, pages: Sequence[PageRoute], streams: Mapping[str, type[Codec]]) -> None:
        self.pages = tuple(pages)
        self.streams = {path: StreamRoute(path, codec) for path, codec in streams.items()}

    def match(self, request: Request) -> Route | None:
        path = request.path.split("?", 1)[0]
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        for page in self.pages:
            if page.matches(path, upgrade=upgrade):
                return page
        return self.streams.get(path)

    def stream(self, path: str) -> StreamRoute:
        """The stream route of an accepted websocket (``path`` may have a query)."""
        return self.streams[path.split("?", 1)[0]]


def serve_page(request: Request) -> HttpReply:
    """The browser captions page (streaming/page.py) at "/" and under "/app/"."""
    reply = page_response(request.path, request.headers.get("If-None-Match"))
    assert reply is not None  # the route matched is_page_path
    return HttpReply(reply.status, reply.body, reply.content_type, dict(reply.headers))


def route_table(
    health: Callable[[Request], HttpReply],
    live: Callable[[Request], HttpReply],
    metrics: Callable[[Request], HttpReply],
    *,
    protocol: str = "native",
) -> RouteTable:
    """Every route the server answers; ``protocol`` is what "/" speaks.

    A plain-HTTP page is one more ``PageRoute`` in ``pages``; a browser page on "/" takes
    ``plain_only=True`` so that websocket clients on "/" still reach the stream, e.g.
    ``PageRoute(page.is_page_path, serve_page, public=True, plain_only=True)``.
    """
    pages = [
        PageRoute("/health", health, public=True),
        PageRoute("/livez", live, public=True),
        PageRoute("/metrics", metrics),
        # plain-HTTP pages go here
        PageRoute(is_page_path, serve_page, public=True, plain_only=True),
    ]
    return RouteTable(pages, stream_paths(protocol))
