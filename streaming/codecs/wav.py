"""Reads the WAV header at the start of a byte stream, then passes the PCM through.

Deepgram clients that omit ``encoding`` send a container; the common one is WAV (a file
streamed as it is read). Its header may be split over several frames, so it is parsed
incrementally, and the ``data`` chunk's size stops trailing chunks being heard as audio.
"""

from __future__ import annotations

import struct

from ..audio import AudioFormat
from ..errors import StreamError

MAX_HEADER_BYTES = 1 << 16
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the data size unset


class WavError(Exception):
    """Not a WAV stream this server can decode (the message says why)."""


class WavStream:
    def __init__(self) -> None:
        self.format: AudioFormat | None = None
        self._header = b""
        self._remaining: int | None = None

    def feed(self, data: bytes) -> bytes:
        """PCM bytes in ``data`` (b"" while the header is still incomplete)."""
        if self.format is None:
            self._header += data
            data = self._parse()
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
        return data

    def _parse(self) -> bytes:
        buf = self._header
        if len(buf) >= 12 and (buf[:4] != b"RIFF" or buf[8:12] != b"WAVE"):
            raise WavError(
                "audio is not WAV; for raw audio give encoding (linear16 or linear32) and "
                "sample_rate"
            )
        fmt: AudioFormat | None = None
        pos = 12
        while len(buf) >= pos + 8:
            chunk, size = buf[pos : pos + 4], struct.unpack_from("<I", buf, pos + 4)[0]
            if chunk == b"data":
                if fmt is None:
                    raise WavError("WAV data chunk comes before its fmt chunk")
                self.format, self._header = fmt, b""
                self._remaining = None if size in _UNKNOWN_SIZES else size
                return buf[pos + 8 :]
            if len(buf) < pos + 8 + size:
                break
            if chunk == b"fmt ":
                fmt = _parse_fmt(buf[pos + 8 : pos + 8 + size])
            pos += 8 + size + (size & 1)
        if len(buf) > MAX_HEADER_BYTES:
            raise WavError(f"no WAV data chunk in the first {MAX_HEADER_BYTES} bytes")
        return b""


def _parse_fmt(chunk: bytes) -> AudioFormat:
    if len(chunk) < 16:
        raise WavError("WAV fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _EXTENSIBLE and len(chunk) >= 26:
        tag = struct.unpack_from("<H", chunk, 24)[0]
    if channels != 1:
        raise WavError(f"WAV has {channels} channels; only mono is supported")
    if (tag, bits) == (_PCM, 16):
        encoding = "pcm_s16le"
    elif (tag, bits) == (_FLOAT, 32):
        encoding = "pcm_f32le"
    else:
        raise WavError(f"WAV format {tag} with {bits}-bit samples is not supported; use 16-bit PCM")
    try:
        return AudioFormat(rate, encoding)
    except StreamError as exc:
        raise WavError(exc.message) from None
