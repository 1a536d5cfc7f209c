"""The WhisperLive websocket protocol over the shared engine.

The client opens with a JSON options frame (``uid`` and optional settings), gets
``SERVER_READY``, streams float32 16 kHz mono frames and ends with the binary frame
``END_OF_AUDIO``. Every change in the transcript sends a snapshot: the last completed
segments (one per finished utterance) plus the utterance in progress.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, ClassVar

from websockets.exceptions import ConnectionClosed

from ..audio import AudioFormat
from ..config import MODEL_SAMPLE_RATE
from ..errors import StreamError
from ..events import ErrorEvent, Event, Final, Partial
from . import whisperlive_format as wl
from .base import Codec, HttpReply, Socket, Stream, encode
from .pcm import SampleAligner

POLICY = 1008
TRY_AGAIN_LATER = 1013
# WhisperLive reports minutes until its oldest session times out; sessions here have no
# wall-clock limit, so this is only a retry hint.
WAIT_HINT_MINUTES = 1.0


class WhisperLiveCodec(Codec):
    name = "whisperlive"
    supports_hotwords = True  # an extension: the stock client sends no hotwords
    paths: ClassVar[tuple[str, ...]] = ("/whisperlive",)
    root = True

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.options = wl.Options(uid=None)
        self._aligner = SampleAligner(4)
        self._completed: deque[dict[str, Any]] = deque(maxlen=wl.DEFAULT_LAST_N_SEGMENTS)
        self._completed_count = 0
        self._last_end_ms = 0
        self._live: tuple[int, dict[str, Any]] | None = None

    @classmethod
    def full_reply(cls, message: str) -> HttpReply | None:
        """WhisperLive clients expect a ``WAIT`` message, not an HTTP 503, when the server
        is full: the handshake is accepted and answered by ``answer_full``."""
        return None

    @classmethod
    async def answer_full(cls, socket: Socket, timeout: float) -> None:
        await send_wait(socket, wait_minutes=WAIT_HINT_MINUTES, timeout=timeout)

    async def open(self) -> bool:
        try:
            frame = await self.stream.receive(self.config.idle_timeout_s)
        except asyncio.TimeoutError:
            await self.stream.refuse(POLICY, "no options frame")
            return False
        try:
            self.options = wl.parse_options(frame)
        except wl.OptionsError as exc:
            await self.stream.send_now(wl.status(exc.uid, "ERROR", str(exc)))
            await self.stream.refuse(POLICY, str(exc))
            return False
        if self.session.ended:  # the server began shutting down meanwhile
            return False
        try:  # phrases the model cannot write, or a server without the decoder
            self.driver.set_hotwords(self.options.hotwords)
        except StreamError as exc:
            await self.stream.send_now(wl.status(self.options.uid, "ERROR", exc.message))
            await self.stream.refuse(POLICY, exc.message)
            return False
        self._completed = deque(maxlen=self.options.send_last_n_segments)
        self.driver.begin(AudioFormat(MODEL_SAMPLE_RATE, "pcm_f32le"))
        await self.stream.send_now(wl.server_ready(self.options.uid))
        if self.options.translate:
            self._warn("translation is not supported here; transcribing instead")
        return True

    # -- client frames --------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._warn("text frames after the options are not part of the protocol; ignored")
        elif message == wl.END_OF_AUDIO:
            self.driver.end("end")
        else:
            pcm = self._aligner(message)
            if pcm:
                try:
                    self.driver.feed(pcm)
                except StreamError as exc:
                    self._warn(f"audio frame dropped: {exc.message}")

    def _warn(self, text: str) -> None:
        self.log.info("warning to client: %s", text)
        self.stream.put(wl.status(self.options.uid, "WARNING", text))

    # -- session events -------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Partial):
                self._live = (event.utterance_id, wl.live_segment(event, self._last_end_ms))
                self._send_snapshot()
            elif isinstance(event, Final):
                self._final(event)
            elif isinstance(event, ErrorEvent):
                self._warn(event.message)

    def _final(self, final: Final) -> None:
        """First the segment in progress with the text it completes with, then completed.

        WhisperLive completes a segment only once its text stopped changing, and the stock
        client relies on that: it writes its last in-progress segment to the .srt unless
        the last completed one has the same text.
        """
        if self._live is not None and self._live[0] == final.utterance_id:
            self._live = None
        if not final.text:  # heard, but no words: the segment in progress just goes away
            self._send_snapshot()
            return
        segment = wl.completed_segment(final, self._last_end_ms)
        if self._live is None:
            self._live = (final.utterance_id, {**segment, "completed": False})
            self._send_snapshot()
            self._live = None
        self._completed.append(segment)
        self._completed_count += 1
        self._last_end_ms = round(float(segment["end"]) * 1000)
        self._send_snapshot()

    def _send_snapshot(self) -> None:
        segments = list(self._completed)
        if self._live is not None:
            segments.append(self._live[1])
        if segments:
            # A newer snapshot replaces an unsent one unless a segment was completed since.
            key = ("segments", self._completed_count)
            self.stream.put(wl.segments(self.options.uid, segments), key)

    # -- endings --------------------------------------------------------------------

    def on_limit(self, code: str, limit_s: float) -> None:
        """WhisperLive tells the client ``DISCONNECT`` at its limit, then closes normally."""
        self.stream.put(wl.disconnect(self.options.uid))
        self.stream.close_with(1000, code)

    def on_shutdown(self) -> None:
        self.stream.put(wl.disconnect(self.options.uid))


async def send_wait(ws: Socket, *, wait_minutes: float, timeout: float) -> None:
    """Answer a client the server has no room for, as WhisperLive does: read its options
    frame, reply ``{"uid", "status": "WAIT", "message": minutes}`` and close."""
    uid: Any = None
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        uid = wl.parse_options(frame).uid
    except wl.OptionsError as exc:
        uid = exc.uid
    except (asyncio.TimeoutError, ConnectionClosed):
        pass
    try:
        await ws.send(encode(wl.status(uid, "WAIT", wait_minutes)))
        await ws.close(TRY_AGAIN_LATER, "server full")
    except ConnectionClosed:
        pass
