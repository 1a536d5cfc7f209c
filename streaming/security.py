"""Token authentication, TLS and origin settings (nothing here logs a secret)."""

from __future__ import annotations

import hmac
import logging
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TOKEN_ENV = "STREAMING_AUTH_TOKENS"
AUTH_SCHEMES = ("bearer", "token")  # "Token" is what Deepgram clients send


def load_tokens(
    flags: Iterable[str], files: Iterable[str], *, env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Tokens from flags, files (one per line, # comments) and $STREAMING_AUTH_TOKENS."""
    environ = os.environ if env is None else env
    tokens = [t.strip() for t in flags]
    for name in files:
        for line in Path(name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    tokens += [t.strip() for t in environ.get(TOKEN_ENV, "").split(",")]
    return tuple(dict.fromkeys(t for t in tokens if t))


def presented_token(path: str, headers: Mapping[str, str]) -> str | None:
    """The token a request carries: ``Authorization: Bearer|Token X`` or ``?token=X``."""
    header = headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() in AUTH_SCHEMES and value.strip():
            return value.strip()
    query = parse_qs(urlsplit(path).query)
    values = query.get("token")
    return values[0] if values else None


def token_allowed(presented: str | None, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit)."""
    if presented is None:
        return False
    candidate = presented.encode()
    allowed = False
    for token in tokens:
        allowed |= hmac.compare_digest(candidate, token.encode())
    return allowed


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


_SECRET_PATTERNS = (
    re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE),
    re.compile(r"((?:authorization|sec-websocket-protocol):\s*\S+\s+)\S+", re.IGNORECASE),
)


class RedactSecrets(logging.Filter):
    """Masks tokens in log lines (websockets logs request lines and headers at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern in _SECRET_PATTERNS:
            redacted = pattern.sub(r"\1***", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redacting_logger(name: str = "streaming.websockets") -> logging.Logger:
    """The logger handed to websockets' server, with secrets masked."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
    return logger
