"""Deepgram-compatible live transcription (``/v1/listen``) over the shared engine.

Interim ``Results`` come from partials, ``is_final`` ones from finals (``speech_final``
when the VAD heard the speaker stop); ``SpeechStarted`` and ``UtteranceEnd`` are derived
from the VAD in stream time, so they do not depend on how fast the client sends.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

from ..audio import AudioFormat
from ..errors import StreamError
from ..events import ErrorEvent, Event, Final, Partial
from . import deepgram_format as dg
from .base import Codec, HttpReply, Stream, limit_text
from .deepgram_params import ListenParams, ParamError, handshake_refusal, parse_params
from .pcm import SampleAligner
from .wav import WavError, WavStream

POLICY = 1008  # Deepgram closes with 1008 for undecodable data (DATA-0000)
INTERNAL = 1011  # ... and 1011 when nothing arrives in time (NET-0001)
SPEECH_ENDED = ("vad", "end", "shutdown")  # finals after which the speaker has stopped


@dataclass(frozen=True)
class _PendingUtteranceEnd:
    utterance_id: int
    last_word_end_ms: int
    deadline_ms: int


class DeepgramCodec(Codec):
    name = "deepgram"
    supports_hotwords = True
    paths: ClassVar[tuple[str, ...]] = ("/v1/listen",)

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.info = dg.StreamInfo(
            str(uuid.uuid4()), stream.model_name, created.replace("+00:00", "Z")
        )
        self.params = ListenParams()
        self._wav: WavStream | None = None
        self._aligner = SampleAligner(2)
        self._step = 0  # bytes per feed; 0 = whole messages
        self._sha256 = hashlib.sha256()
        self._opened = 0
        self._speech_starts: dict[int, int] = {}
        self._pending_end: _PendingUtteranceEnd | None = None

    @classmethod
    def handshake_refusal(cls, path: str) -> HttpReply | None:
        """Deepgram answers a bad query with HTTP 400 (so its SDK raises at connect time);
        the codec still closes with 1008 if a handshake got past this."""
        return handshake_refusal(path)

    async def open(self) -> bool:
        query = self.stream.request_path.partition("?")[2]
        try:
            self.params = parse_params(query)
        except ParamError as exc:
            await self.stream.refuse(POLICY, f"INVALID_QUERY_PARAMETER: {exc}")
            return False
        if self.params.ignored:
            self.log.info("deepgram parameters ignored: %s", ", ".join(self.params.ignored))
        if self.session.ended:
            return False
        try:  # keywords/keyterm the model cannot write, or a server without the decoder
            self.driver.set_hotwords(self.params.hotwords)
        except StreamError as exc:
            await self.stream.refuse(POLICY, f"INVALID_QUERY_PARAMETER: {exc.message}")
            return False
        if self.params.format is None:
            self._wav = WavStream()
        else:
            self._start(self.params.format)
        return True

    def _start(self, fmt: AudioFormat) -> None:
        self.driver.begin(fmt)
        self._aligner = SampleAligner(fmt.sample_width)
        if self.params.vad_events or self.params.utterance_end_ms is not None:
            # Fed one VAD frame at a time, the stream position when the VAD opens an
            # utterance is known to a frame, however large the client's messages are.
            frame = fmt.sample_rate * self.config.vad.frame_ms // 1000
            self._step = frame * fmt.sample_width

    # -- client frames --------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._control(message)
        elif not message:
            self.driver.end("end")  # the pre-CloseStream way to end a stream
        else:
            self._audio(message)

    def _control(self, text: str) -> None:
        try:
            control = dg.parse_control(text)
        except dg.ControlError as exc:
            self.stream.put(dg.error("SchemaError", str(exc), text[:200]))
            return
        if control.kind == "Finalize":
            self.driver.flush()
        elif control.kind == "CloseStream":
            self.driver.end("end")
        elif control.kind == "Configure":
            self.stream.put(dg.configure_reply(self.info, control))
        # KeepAlive: receiving it already reset the idle timer

    def _audio(self, data: bytes) -> None:
        self._sha256.update(data)
        try:
            if self._wav is not None:
                data = self._wav.feed(data)
                if self._wav.format is not None and not self.session.started:
                    self._start(self._wav.format)
            pcm = self._aligner(data)
            step = self._step or len(pcm)
            for start in range(0, len(pcm), step):
                self.driver.feed(pcm[start : start + step])
                self._watch_speech()
        except (WavError, StreamError) as exc:
            reason = exc.message if isinstance(exc, StreamError) else str(exc)
            self.log.info("undecodable audio: %s", reason)
            self.stream.close_with(POLICY, f"DATA-0000: {reason}"[:120])
            self.driver.end("end")

    # -- VAD-derived messages -------------------------------------------------------

    def _watch_speech(self) -> None:
        """SpeechStarted for each utterance the VAD opened; UtteranceEnd once a gap of
        ``utterance_end_ms`` follows the last final word with no new speech."""
        opened = self.session.utterances_opened
        onset = self.config.vad.onset_ms
        for utterance_id in range(self._opened, opened):
            start = max(0, self.session.audio_ms - onset)
            self._speech_starts[utterance_id] = start
            if self.params.vad_events:
                self.stream.put(dg.speech_started(start))
        self._opened = opened
        self._check_utterance_end(at_end=False)

    def _check_utterance_end(self, *, at_end: bool) -> None:
        """Speech is detected ``onset_ms`` after it starts, so the gap is known to be
        silent only that much after its deadline."""
        pending = self._pending_end
        if pending is None:
            return
        next_start = self._speech_starts.get(pending.utterance_id + 1)
        known_silent = pending.deadline_ms + self.config.vad.onset_ms
        if next_start is not None and next_start < pending.deadline_ms:
            self._pending_end = None  # speech resumed within the gap
        elif at_end or next_start is not None or self.session.audio_ms >= known_silent:
            self._pending_end = None
            self.stream.put(dg.utterance_end(pending.last_word_end_ms))

    # -- session events -------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Partial):
                if self.params.interim_results:
                    message = dg.results(
                        event, self.info, punctuated_words=self.params.punctuated_words
                    )
                    self.stream.put(message, ("interim", event.utterance_id))
            elif isinstance(event, Final):
                self._final(event)
            elif isinstance(event, ErrorEvent):
                self.stream.put(dg.error("InferenceError", event.message))

    def _final(self, final: Final) -> None:
        self.stream.put(
            dg.results(
                final,
                self.info,
                speech_final=self.params.endpointing and final.reason in SPEECH_ENDED,
                from_finalize=final.reason == "flush",
                punctuated_words=self.params.punctuated_words,
            )
        )
        for utterance_id in [u for u in self._speech_starts if u < final.utterance_id]:
            del self._speech_starts[utterance_id]
        if self.params.utterance_end_ms is not None and final.words:
            self._check_utterance_end(at_end=False)
            last = final.words[-1].end_ms
            self._pending_end = _PendingUtteranceEnd(
                final.utterance_id, last, last + self.params.utterance_end_ms
            )
            self._check_utterance_end(at_end=False)

    # -- endings --------------------------------------------------------------------

    def on_limit(self, code: str, limit_s: float) -> None:
        message = limit_text(code, limit_s)
        if code == "idle_timeout":
            self.stream.close_with(INTERNAL, f"NET-0001: {message}")
        else:
            self.stream.close_with(POLICY, f"{code}: {message}")

    def on_finished(self) -> None:
        """After the last Results: the pending UtteranceEnd, then Metadata, then close."""
        self._check_utterance_end(at_end=True)
        self.stream.put(dg.metadata(self.info, self.session.audio_ms, self._sha256.hexdigest()))
