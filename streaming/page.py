"""The browser captions page: static files from package data (``streaming/static``).

``page_response`` is pure (path in, response parts out) so the HTTP layer needs one branch to
serve the page: plain GETs (no ``Upgrade: websocket``) of ``/`` and ``/app/…``. Websocket
upgrades on ``/`` keep speaking the native protocol; the page itself streams to
``/v1/stream``, which is native whatever ``--protocol`` makes ``/`` speak.

The page answers before authentication: it is public, and the person types the token into it.
``origin_allowed`` is the Origin rule that lets the page talk to its own server when an
Origin allow-list is configured.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

#: Where the page lives besides "/" (documented in docs/browser.md).
APP_PREFIX = "/app/"
#: The paths that answer with the page itself; "/app" without a slash too.
INDEX_PATHS = ("/", "/app", "/app/", "/app/index.html")
#: A static file name: no folders, no dot files, a known type (so no path traversal).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*\.(html|css|js|svg|png|ico|json|txt)$")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
}
#: The page's relative links resolve from this <base>, so it works at "/", at "/app/" and
#: behind a proxy that mounts the server under a prefix.
_BASE_MARK = b'<base href="./">'
#: The page loads only its own files and talks only to its own server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; worker-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors *"
)


@dataclass(frozen=True)
class PageResponse:
    """What to answer: status, content type, body and extra headers."""

    status: HTTPStatus
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    """True for a websocket handshake (which goes to the protocol endpoints, never here)."""
    return "websocket" in headers.get("Upgrade", "").lower()


def is_page_path(path: str) -> bool:
    """Whether a plain GET of ``path`` (query allowed) belongs to the page: "/" or "/app…"."""
    route = urlsplit(path).path
    return route in INDEX_PATHS or route.startswith(APP_PREFIX)


def page_response(path: str, if_none_match: str | None = None) -> PageResponse | None:
    """The page's answer to a plain GET of ``path``, or None when the path is not the page's.

    Files are revalidated on every load (``no-cache`` with an ETag, so a reload after an
    upgrade never mixes old and new modules, and an unchanged file costs a 304)."""
    if not is_page_path(path):
        return None
    route = urlsplit(path).path
    name = "index.html" if route in INDEX_PATHS else route[len(APP_PREFIX) :]
    body = _read_static(name)
    if body is None:
        return PageResponse(
            HTTPStatus.NOT_FOUND,
            CONTENT_TYPES["txt"],
            f"no page file at {route}\n".encode(),
            (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")),
        )
    if name == "index.html":
        # From "/" (or "/app") the files are under "app/"; from "/app/" they are beside it.
        base = b'<base href="./">' if route.startswith(APP_PREFIX) else b'<base href="app/">'
        body = body.replace(_BASE_MARK, base, 1)
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers: list[tuple[str, str]] = [
        ("Cache-Control", "no-cache"),
        ("ETag", etag),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),  # a ?token= in the address stays here
    ]
    if name.endswith(".html"):
        headers.append(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
    content_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return PageResponse(HTTPStatus.NOT_MODIFIED, content_type, b"", tuple(headers))
    return PageResponse(HTTPStatus.OK, content_type, body, tuple(headers))


def _read_static(name: str) -> bytes | None:
    """A file of the package's ``static`` folder, or None (bad name, or no such file)."""
    if not _NAME.fullmatch(name):
        return None
    entry = resources.files("streaming").joinpath("static").joinpath(name)
    if not entry.is_file():
        return None
    return entry.read_bytes()


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """The Origin rule: no allow-list allows any origin; with one, a listed origin, a
    client that sends none (not a browser), and the server's own origin (the page it
    serves: the Origin names the host the request was sent to) are allowed."""
    if not allowed or origin is None or origin in allowed:
        return True
    if host is None:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default_port = "443" if parts.scheme == "https" else "80"
    return _netloc(parts.netloc, default_port) == _netloc(host, default_port)


def _netloc(value: str, default_port: str) -> str:
    """host:port, lower case, with the scheme's default port written out."""
    value = value.strip().lower()
    if value.endswith("]") or ":" not in value.rsplit("]", 1)[-1]:
        return f"{value}:{default_port}"
    return value
