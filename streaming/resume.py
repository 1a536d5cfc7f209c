"""Resume tokens: everything a replica needs to continue a stream, carried by the client.

Replicas keep nothing about a stream that another replica would need: with each commit the
server hands the client a token naming where to replay audio from and what was already
committed, signed with HMAC-SHA256 under a key every replica shares (``--resume-key``), so a
client can neither forge a stream's state nor resume another's. Pure: no I/O, no clock (the
caller passes ``now``).

Wire form: ``v1.<key id>.<payload>.<mac>``, payload and mac base64url without padding; the
key id (the first 8 bytes of SHA-256 of the key, hex) tells a token signed under another key
from a forged one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

VERSION = "v1"
MAX_TOKEN_CHARS = 64 * 1024

# Why a token is refused (the ``reason`` of a ``resume_rejected`` error).
MALFORMED = "malformed"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
MODEL_MISMATCH = "model_mismatch"

Word = tuple[str, int, int, float]  # text, start_ms, end_ms, conf


class ResumeError(Exception):
    """A token that cannot be honoured; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class UtteranceState:
    """An utterance whose final the client has not been sent yet.

    ``start``: its first stream sample (model rate, pre-roll included); ``opened``: where the
    VAD opened it (the end of its onset; ``start`` after a max-length cut); ``windows``: the
    hop count of each non-final window run so far, so a new replica runs the same windows
    and reads the same frames; ``words``: its committed words so far.
    """

    id: int
    start: int
    opened: int
    windows: tuple[int, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class ResumeState:
    """Where a stream stands, as a new session needs it (positions at the model rate).

    The client replays its input from sample ``replay`` (its own rate); the session drops
    the first ``skip`` resampled samples (resampler warm-up), which puts the next sample at
    stream position ``position``. From ``position`` to ``vad_from`` the audio only warms
    the VAD up and fills the left context; the VAD gate proper starts at ``vad_from``, its
    ``frames_seen``-th frame, opening ``open[0]`` (if any) as it first did.
    """

    replay: int
    skip: int
    position: int
    vad_from: int
    frames_seen: int
    next_id: int
    sample_rate: int
    encoding: str
    open: tuple[UtteranceState, ...] = ()

    @property
    def commit_ms(self) -> int:
        """End of the last committed word, in stream ms (0 if none)."""
        ends = [u.words[-1][2] for u in self.open if u.words]
        return max(ends, default=0)


@dataclass(frozen=True)
class Claims:
    """A token's content: the stream, the model that decoded it, expiry (unix s), state,
    and the stream's hotwords (phrase, weight)."""

    stream: str
    model: str
    expires: int
    state: ResumeState
    hotwords: tuple[tuple[str, float], ...] = ()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class TokenSigner:
    """Signs and verifies tokens under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a resume key needs at least 16 bytes")
        self._key = key
        self.key_id = key_id(key)

    def sign(self, claims: Claims) -> str:
        payload = _b64(json.dumps(_encode(claims), separators=(",", ":")).encode())
        head = f"{VERSION}.{self.key_id}.{payload}"
        return f"{head}.{_b64(self._mac(head))}"

    def verify(self, token: object, *, model: str, now: float) -> Claims:
        """The token's claims, or ResumeError saying precisely why it cannot be used."""
        if not isinstance(token, str) or not token:
            raise ResumeError(MALFORMED, "the token must be a non-empty string")
        if len(token) > MAX_TOKEN_CHARS:
            raise ResumeError(MALFORMED, f"the token is longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if parts[0] != VERSION:
            raise ResumeError(UNSUPPORTED_VERSION, f"token version {parts[0][:8]!r}, expected v1")
        if len(parts) != 4:
            raise ResumeError(MALFORMED, "the token does not have its four parts (truncated?)")
        _, kid, payload, mac = parts
        if not hmac.compare_digest(kid, self.key_id):
            raise ResumeError(
                UNKNOWN_KEY, "the token was signed under another key (replicas must share one)"
            )
        try:
            given = _unb64(mac)
        except ValueError:
            raise ResumeError(MALFORMED, "the signature is not base64url") from None
        if not hmac.compare_digest(given, self._mac(f"{VERSION}.{kid}.{payload}")):
            raise ResumeError(BAD_SIGNATURE, "the signature does not match the token's content")
        try:
            claims = _decode(json.loads(_unb64(payload)))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ResumeError(
                MALFORMED, f"the signed content is not a resume state ({exc})"
            ) from None
        if now >= claims.expires:
            raise ResumeError(EXPIRED, f"the token expired {now - claims.expires:.0f} s ago")
        if claims.model != model:
            raise ResumeError(
                MODEL_MISMATCH,
                f"the stream was decoded by model {claims.model!r}, this server runs {model!r}",
            )
        return claims

    def _mac(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _encode(claims: Claims) -> dict[str, Any]:
    s = claims.state
    extra = {"hw": [list(h) for h in claims.hotwords]} if claims.hotwords else {}
    return {
        **extra,
        "sid": claims.stream,
        "model": claims.model,
        "exp": claims.expires,
        "st": [s.replay, s.skip, s.position, s.vad_from, s.frames_seen, s.next_id],
        "fmt": [s.sample_rate, s.encoding],
        "open": [
            [u.id, u.start, u.opened, _runs(u.windows), [list(w) for w in u.words]] for u in s.open
        ],
    }


def _decode(data: Any) -> Claims:
    replay, skip, position, vad_from, frames_seen, next_id = (_int(v) for v in data["st"])
    rate, encoding = data["fmt"]
    utterances = tuple(
        UtteranceState(
            _int(uid),
            _int(start),
            _int(opened),
            _unruns(windows),
            tuple((str(w[0]), _int(w[1]), _int(w[2]), float(w[3])) for w in words),
        )
        for uid, start, opened, windows, words in data["open"]
    )
    state = ResumeState(
        replay, skip, position, vad_from, frames_seen, next_id, _int(rate), str(encoding),
        utterances,
    )  # fmt: skip
    hotwords = tuple((str(p), float(w)) for p, w in data.get("hw", []))
    return Claims(str(data["sid"]), str(data["model"]), _int(data["exp"]), state, hotwords)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}"[:80])
    return value


def _runs(values: tuple[int, ...]) -> list[list[int]]:
    """Run-length form ([[value, count], …]): hop counts are nearly all 1."""
    out: list[list[int]] = []
    for value in values:
        if out and out[-1][0] == value:
            out[-1][1] += 1
        else:
            out.append([value, 1])
    return out


def _unruns(runs: Any) -> tuple[int, ...]:
    out: list[int] = []
    for value, count in runs:
        if _int(count) < 0 or len(out) + count > 100_000:
            raise ValueError("window runs out of range")
        out.extend([_int(value)] * count)
    return tuple(out)
