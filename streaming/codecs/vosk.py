"""The Vosk server websocket protocol over the shared engine.

Stock Vosk clients send one frame and then wait for exactly one reply. Vosk decodes each
frame before answering, so its reply accounts for all audio sent; here the reply waits
(briefly, bounded) until inference has caught up with the frame, then carries the oldest
final not yet delivered (as a ``result``), else the live ``partial``. That also paces a
client that sends faster than real time, as vosk-server does. ``{"eof": 1}`` and
``{"reset": 1}`` wait for every final and deliver them merged into one result.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import ClassVar

from ..audio import AudioFormat
from ..config import MODEL_SAMPLE_RATE
from ..errors import StreamError
from ..events import ErrorEvent, Event, Final, Partial
from . import vosk_format
from .base import Codec, Stream
from .pcm import SampleAligner

UNSUPPORTED_DATA = 1003  # vosk-server has no error message; a close frame says why
REPLY_WAIT_S = 2.0  # longest a reply waits for inference to catch up (overload: reply anyway)
POLL_S = 0.005


class VoskCodec(Codec):
    name = "vosk"
    supports_hotwords = True
    paths: ClassVar[tuple[str, ...]] = ("/vosk",)
    root = True

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.options = vosk_format.VoskOptions()
        self._aligner = SampleAligner(2)
        self._partials: dict[int, str] = {}
        self._finals: deque[Final] = deque()
        self._finals_seen = 0
        self._final_arrived = asyncio.Event()
        self._refused = False

    # -- client frames --------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._audio(message)
            await self._caught_up()
            self.stream.put(self._reply())
            return
        try:
            command = vosk_format.parse_text(message)
            if isinstance(command, vosk_format.Configure):
                self._configure(command)
            elif isinstance(command, vosk_format.Reset):
                await self._reset()
            else:
                self.driver.end("end")
        except vosk_format.VoskProtocolError as exc:
            self._refused = True
            await self.stream.refuse(UNSUPPORTED_DATA, str(exc))

    def _configure(self, command: vosk_format.Configure) -> None:
        """Config frames get no reply; vosk-server applies them until the first audio."""
        if self.session.audio_started:
            self.log.info("config after audio ignored, as vosk-server does")
            return
        self.options = vosk_format.apply_config(self.options, command.config)
        if "phrase_list" in command.config:
            try:
                self.driver.set_hotwords(self.options.hotwords)
            except StreamError as exc:
                raise vosk_format.VoskProtocolError(f"phrase_list: {exc.message}") from None
        ignored = sorted(set(command.config) & set(vosk_format.IGNORED_CONFIG))
        if ignored:
            self.log.info("vosk config fields not supported, ignored: %s", ignored)

    def _audio(self, data: bytes) -> None:
        if not self.session.started:
            self.driver.begin(AudioFormat(self.options.sample_rate, "pcm_s16le"))
        pcm = self._aligner(data)
        if pcm:
            try:
                self.driver.feed(pcm)
            except StreamError as exc:  # after end: the reply still keeps the client going
                self.log.info("audio not accepted: %s", exc.message)

    async def _caught_up(self) -> None:
        """Until no window is due: the open utterance owes less than one window and no
        earlier utterance still waits for its final."""
        window = self.config.window
        due = (window.chunk_ms + window.right_context_ms) * MODEL_SAMPLE_RATE // 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_WAIT_S
        while (
            self.session.backlog_samples >= due
            or self.session.utterances_opened - self._finals_seen > 1
        ) and not self.driver.done:
            if loop.time() >= deadline:
                self.log.info("inference behind the client; replying with what is known")
                return
            await asyncio.sleep(POLL_S)

    async def _reset(self) -> None:
        """Finalize now and answer with everything final so far; the stream goes on."""
        self.driver.flush()
        target = self.session.utterances_opened
        while self._finals_seen < target and not self.driver.done:
            self._final_arrived.clear()
            await self._final_arrived.wait()
        self.stream.put(self._take_all())

    def _reply(self) -> dict[str, object]:
        if self._finals:
            return vosk_format.result([self._finals.popleft()], self.options)
        latest = max(self._partials, default=None)
        return vosk_format.partial("" if latest is None else self._partials[latest])

    def _take_all(self) -> dict[str, object]:
        finals = list(self._finals)
        self._finals.clear()
        return vosk_format.result(finals, self.options)

    # -- session events -------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Partial):
                self._partials[event.utterance_id] = event.text
            elif isinstance(event, Final):
                self._partials.pop(event.utterance_id, None)
                self._finals.append(event)
                self._finals_seen += 1
                self._final_arrived.set()
            elif isinstance(event, ErrorEvent):
                self.log.warning("%s: %s", event.code, event.message)

    def on_finished(self) -> None:
        """The reply to eof (or the last word at a limit or shutdown): all finals, merged."""
        if not self._refused:
            self.stream.put(self._take_all())
