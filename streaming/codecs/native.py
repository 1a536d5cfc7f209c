"""The native protocol (docs/protocol.md): JSON control frames, binary PCM, event messages.

The client may send ``start`` (input format), audio, ``flush`` and ``end``; every bad frame
gets an ``error`` reply and the stream goes on. Frames after ``end`` are still answered
(``after_end``) until the last final is out.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import StreamError
from ..events import Event, Partial
from . import native_format as wire
from .base import Codec, Message


class NativeCodec(Codec):
    name = "native"
    supports_hotwords = True
    paths: ClassVar[tuple[str, ...]] = ("/v1/stream",)
    root = True
    answers_after_end = True

    async def open(self) -> bool:
        self.stream.put(wire.ready(self.stream.session_id, self.stream.model_name))
        return True

    async def on_message(self, message: str | bytes) -> None:
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

    def _text(self, text: str) -> None:
        if self.stream.session.ended:
            raise StreamError("after_end", "message received after end")
        message = wire.parse_client_text(text)
        if isinstance(message, wire.Start):
            self.stream.driver.set_hotwords(message.hotwords)
            self.stream.driver.begin(message.format)
            self.stream.put(wire.started(message.format, len(message.hotwords)))
        elif isinstance(message, wire.Flush):
            self.stream.driver.flush()
        else:
            self.stream.driver.end("end")

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            key = ("partial", event.utterance_id) if isinstance(event, Partial) else None
            self.stream.put(wire.event_message(event), key)

    def error(self, code: str, message: str, *, fatal: bool) -> Message:
        return wire.error(code, message, fatal=fatal)

    def on_limit(self, code: str, limit_s: float) -> None:
        if code == "idle_timeout":
            text = f"no message for {limit_s:g} s; ending the stream"
        else:
            text = f"stream longer than the limit of {limit_s:g} s"
        self.stream.send_error(code, text, fatal=True)
        self.stream.close_with(1008, code)
