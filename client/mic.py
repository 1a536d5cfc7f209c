"""Microphone capture with sounddevice (PortAudio), as an async stream of s16 blocks.

The PortAudio callback runs on the audio thread and must never wait, so it only copies the
block and hands it to the event loop (`call_soon_threadsafe`). On the loop, blocks go into a
bounded queue: when the network cannot keep up, new blocks are dropped, counted and reported,
instead of blocking the audio thread or growing memory without limit.

sounddevice is imported lazily so that the file client works on machines without PortAudio.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from client.files import FALLBACK_RATE, SERVER_RATES, chunk_samples, to_int16


class MicError(Exception):
    """The device cannot be used as asked (a usage error: wrong name, rate, no input)."""


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise MicError(f"cannot use the microphone: {exc}") from exc
    return sounddevice


def list_devices() -> str:
    """Input devices as a table, default marked with '*'."""
    sd = _sd()
    try:
        default_in = sd.default.device[0]
    except Exception:  # pragma: no cover - depends on the host
        default_in = -1
    hostapis = sd.query_hostapis()
    lines = ["  #  name                                      inputs  default rate  host API"]
    for dev in sd.query_devices():
        if dev["max_input_channels"] <= 0:
            continue
        mark = "*" if dev["index"] == default_in else " "
        api = hostapis[dev["hostapi"]]["name"]
        lines.append(
            f"{mark}{dev['index']:>3}  {dev['name'][:40]:<40}  {dev['max_input_channels']:>6}"
            f"  {dev['default_samplerate']:>9.0f} Hz  {api}"
        )
    if len(lines) == 1:
        lines.append("  (no input devices found)")
    return "\n".join(lines)


def parse_device(value: str | None) -> int | str | None:
    """`--device` value: an index ("3") or a name fragment ("pulse")."""
    if value is None or value == "":
        return None
    return int(value) if value.strip().isdigit() else value


@dataclass
class CaptureStats:
    blocks: int = 0
    dropped_blocks: int = 0
    dropped_ms: float = 0.0
    overflows: int = 0


class Microphone:
    """One input device, opened at its native rate (or `rate`), read in `chunk_ms` blocks.

    Audio is sent at the capture rate when the server accepts it, else resampled to 16 kHz.
    """

    def __init__(
        self,
        device: int | str | None = None,
        rate: int | None = None,
        chunk_ms: float = 100.0,
        *,
        max_queue_s: float = 5.0,
        status: Callable[[str], None] | None = None,
    ) -> None:
        sd = _sd()
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            if device is None:
                raise MicError(
                    "no default input device (see --list-devices; on a machine without a"
                    " sound card, scripts/virtual-mic.sh makes one)"
                ) from exc
            raise MicError(f"input device {device!r}: {exc} (see --list-devices)") from exc
        self.device_index: int = int(info["index"])
        self.device_name: str = str(info["name"])
        self.native_rate = int(info["default_samplerate"])
        self.capture_rate = int(rate or self.native_rate)
        try:
            sd.check_input_settings(
                device=self.device_index, channels=1, dtype="int16", samplerate=self.capture_rate
            )
        except Exception as exc:
            raise MicError(
                f"device {self.device_name!r} cannot record mono 16-bit at {self.capture_rate} Hz:"
                f" {exc}"
            ) from exc
        self.rate = self.capture_rate if self.capture_rate in SERVER_RATES else FALLBACK_RATE
        self.chunk_ms = chunk_ms
        self.blocksize = chunk_samples(self.capture_rate, chunk_ms)
        self.max_queue = max(2, round(max_queue_s * 1000.0 / chunk_ms))
        self.stats = CaptureStats()
        self.first_block_timeout_s = 10.0
        self._status = status or (lambda _text: None)

    def describe(self) -> str:
        resample = "" if self.rate == self.capture_rate else f", resampled to {self.rate} Hz"
        return (
            f"recording from [{self.device_index}] {self.device_name} at {self.capture_rate} Hz"
            f"{resample}, {self.chunk_ms:g} ms chunks"
        )

    async def blocks(
        self, stop: asyncio.Event | None = None, seconds: float | None = None
    ) -> AsyncIterator[npt.NDArray[np.int16]]:
        """Captured blocks until `stop` is set or `seconds` have passed; what was already
        captured when it stops is still yielded (it is part of what the person said)."""
        sd = _sd()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[npt.NDArray[np.int16]] = asyncio.Queue(self.max_queue)
        stats = self.stats

        def on_block(block: npt.NDArray[np.int16], overflow: bool) -> None:  # on the loop
            stats.blocks += 1
            if overflow:
                stats.overflows += 1
                if stats.overflows in (1, 10) or stats.overflows % 100 == 0:
                    self._status(
                        f"warning: audio input overflow ({stats.overflows} so far): the sound"
                        " card delivered audio faster than it was read"
                    )
            try:
                queue.put_nowait(block)
            except asyncio.QueueFull:
                stats.dropped_blocks += 1
                stats.dropped_ms += len(block) * 1000.0 / self.capture_rate
                if stats.dropped_blocks in (1, 10) or stats.dropped_blocks % 100 == 0:
                    self._status(
                        f"warning: network too slow, dropped {stats.dropped_blocks} audio"
                        f" block(s) ({stats.dropped_ms / 1000:.1f} s of audio) so far"
                    )

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio thread: copy and hand over, nothing else.
            with contextlib.suppress(RuntimeError):  # loop closed while the stream stops
                loop.call_soon_threadsafe(
                    on_block, indata[:, 0].copy(), bool(status.input_overflow)
                )

        resampler = _Resampler(self.capture_rate, self.rate)
        stop_task = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            stream = sd.InputStream(
                device=self.device_index,
                channels=1,
                samplerate=self.capture_rate,
                dtype="int16",
                blocksize=self.blocksize,
                callback=callback,
            )
        except sd.PortAudioError as exc:
            stop_task.cancel()
            raise MicError(f"cannot open device {self.device_name!r}: {exc}") from exc
        # Some hosts (PulseAudio under load) take seconds to deliver the first block: the
        # `--seconds` clock and the "listening" message start with the first real audio.
        deadline = time.monotonic() + self.first_block_timeout_s
        listening = False
        try:
            with stream:
                while True:
                    timeout = None if deadline == math.inf else deadline - time.monotonic()
                    if timeout is not None and timeout <= 0:
                        if not listening:
                            raise MicError(
                                f"device {self.device_name!r} delivered no audio within"
                                f" {self.first_block_timeout_s:g} s"
                            )
                        break
                    get = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {get, stop_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if get not in done:
                        get.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await get
                        if stop_task in done or listening:
                            break
                        continue  # first-block timeout: raised above
                    if not listening:
                        listening = True
                        deadline = math.inf if seconds is None else time.monotonic() + seconds
                        limit = f", stops by itself after {seconds:g} s" if seconds else ""
                        self._status(f"listening … (Ctrl-C to stop{limit})")
                    out = resampler(get.result())
                    if len(out):
                        yield out
            # The stream is closed: send what was captured but not yet sent.
            await asyncio.sleep(0)  # run pending call_soon_threadsafe hand-overs
            while not queue.empty():
                out = resampler(queue.get_nowait())
                if len(out):
                    yield out
            tail = resampler.flush()
            if len(tail):
                yield tail
        finally:
            stop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_task


class _Resampler:
    """Streaming soxr resampling for capture rates the server does not take (e.g. 22050)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self._stream: Any = None
        if rate_in != rate_out:
            import soxr

            self._stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32")

    def __call__(self, block: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if self._stream is None:
            return block
        x = block.astype(np.float32) / 32768.0
        return to_int16(self._stream.resample_chunk(x))

    def flush(self) -> npt.NDArray[np.int16]:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        return to_int16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
