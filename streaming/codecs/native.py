"""The native protocol (docs/protocol.md): JSON control frames, binary PCM, event messages.

The client may send ``start`` (input format), audio, ``flush`` and ``end``; every bad frame
gets an ``error`` reply and the stream goes on. Frames after ``end`` are still answered
(``after_end``) until the last final is out.

Resume (a client that sends ``start`` with ``"resume": true``, or ``resume``): the codec
sends ``ack`` with a signed token after every commit and final and every second of silence,
continues a stream from a token, and on drain finishes the open utterance, then sends
``moved`` so the client resumes on another replica.
"""

from __future__ import annotations

import time
from typing import ClassVar

from ..errors import StreamError
from ..events import Event, Final, Partial
from ..hotwords import Hotword
from ..resume import Claims, ResumeError, ResumeState, TokenSigner
from . import native_format as wire
from .base import Codec, Message, Stream

ACK_EVERY_S = 1.0  # in silence, the ack moves on at least this often
RESUME_REJECTED = "resume_rejected"
MOVED = (1012, "moved: resume on another replica")


class NativeCodec(Codec):
    name = "native"
    supports_hotwords = True
    paths: ClassVar[tuple[str, ...]] = ("/v1/stream",)
    root = True
    answers_after_end = True
    supports_resume = True

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        # Streams that sign no tokens (a test harness) serve no resume.
        self._signer: TokenSigner | None = getattr(stream, "signer", None)
        self._stream_id = stream.session_id
        self._resumable = False
        self._draining = False
        self._acked = -1  # input offset of the last ack
        self._committed = 0  # committed words seen in the partials of the open utterances
        self._finals = 0  # finals handed to the client
        self._reject_reason = ""

    async def open(self) -> bool:
        self.stream.put(wire.ready(self.stream.session_id, self.stream.model_name))
        return True

    async def on_message(self, message: str | bytes) -> None:
        if self._draining:
            return  # moving: the next replica takes this audio from the client's buffer
        if isinstance(message, bytes):
            self._audio(message)
        else:
            self._text(message)

    def _audio(self, data: bytes) -> None:
        limit = self.stream.config.max_frame_bytes
        if len(data) > limit:
            raise StreamError(
                "frame_too_large",
                f"binary frame of {len(data)} bytes exceeds the limit of {limit} bytes; "
                "frame dropped",
            )
        self.stream.driver.feed(data)
        if self._resumable:
            self._maybe_ack(silence=True)

    def _text(self, text: str) -> None:
        if self.stream.session.ended:
            raise StreamError("after_end", "message received after end")
        message = wire.parse_client_text(text)
        if isinstance(message, wire.Start):
            self.stream.driver.set_hotwords(message.hotwords)
            self.stream.driver.begin(message.format)
            self.stream.put(wire.started(message.format, len(message.hotwords)))
            self._resumable = message.resume and self._signer is not None
        elif isinstance(message, wire.Resume):
            self._resume(message.token)
        elif isinstance(message, wire.Flush):
            self.stream.driver.flush()
        else:
            self.stream.driver.end("end")

    def on_events(self, events: list[Event]) -> None:
        commits = False
        for event in events:
            key = ("partial", event.utterance_id) if isinstance(event, Partial) else None
            self.stream.put(wire.event_message(event), key)
            if isinstance(event, Final):
                self._finals += 1
                self._committed = 0
                commits = True
            elif isinstance(event, Partial):
                count = sum(w.committed for w in event.words)
                commits = commits or count > self._committed
                self._committed = max(count, self._committed)
        if commits and self._resumable and not self._draining:
            self._maybe_ack(silence=False)

    def error(self, code: str, message: str, *, fatal: bool) -> Message:
        reply = wire.error(code, message, fatal=fatal)
        if code == RESUME_REJECTED:
            reply["reason"] = self._reject_reason
        return reply

    def on_shutdown(self) -> None:
        """A resumable stream finishes its open utterance, then moves (``on_finished``)."""
        if self._resumable and not self.session.ended:
            self._draining = True
            self.stream.close_with(*MOVED)

    def on_finished(self) -> None:
        if self._draining:
            state = self.session.resume_state()
            text = "this server is shutting down: reconnect and resume with this token"
            self.stream.put(wire.moved(state.replay, self._token(state), text))
            self._count("moved")

    # -- resume -----------------------------------------------------------------------

    def _resume(self, token: str) -> None:
        session = self.session
        if session.started or session.audio_started:
            raise StreamError("resume_after_start", "resume must be the first message")
        signer = self._signer
        try:
            if signer is None:
                raise ResumeError("unavailable", "this server does not resume streams")
            claims = signer.verify(token, model=self.stream.model_name, now=time.time())
            self.driver.set_hotwords(tuple(Hotword(p, w) for p, w in claims.hotwords))
            session.resume(claims.state)
        except (ResumeError, StreamError) as exc:
            self._reject_reason = exc.reason if isinstance(exc, ResumeError) else exc.code
            text = f"cannot resume this stream: {exc.message}; start a new stream"
            self._count("rejected")
            self.stream.send_error(RESUME_REJECTED, text, fatal=True)
            self.stream.close_with(1008, RESUME_REJECTED)
            self.driver.end("end")
            return
        self._stream_id = claims.stream
        self._resumable = True
        state = claims.state
        self.stream.put(wire.resumed(claims.stream, state.replay, session.format, state.next_id))
        self.log.info("resumed stream %s at input sample %d", claims.stream, state.replay)
        self._count("resumed")

    def _count(self, outcome: str) -> None:
        if self.driver.metrics is not None:
            self.driver.metrics.resumes.labels(outcome).inc()

    def _maybe_ack(self, *, silence: bool) -> None:
        """Send ``ack`` + token when every final made so far is out (an LM final may still
        be decoding) and, in silence, once the offset moved ``ACK_EVERY_S`` on."""
        if self._finals != self.session.finals_sent:
            return
        state = self.session.resume_state()
        rate = state.sample_rate
        if silence and state.replay - self._acked < ACK_EVERY_S * rate:
            return
        self._acked = state.replay
        self.stream.put(wire.ack(state.replay, self._token(state)))

    def _token(self, state: ResumeState) -> str:
        assert self._signer is not None
        expires = int(time.time() + self.config.resume_ttl_s)
        hotwords = tuple((h.phrase, h.weight) for h in self.driver.hotwords)
        claims = Claims(self._stream_id, self.stream.model_name, expires, state, hotwords)
        return self._signer.sign(claims)

    def on_limit(self, code: str, limit_s: float) -> None:
        if code == "idle_timeout":
            text = f"no message for {limit_s:g} s; ending the stream"
        else:
            text = f"stream longer than the limit of {limit_s:g} s"
        self.stream.send_error(code, text, fatal=True)
        self.stream.close_with(1008, code)
