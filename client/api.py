"""The importable client API: stream a file or the microphone, get a `StreamResult`.

Benchmarks and tests use these directly; the CLI (`python -m client`) is a thin layer on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from client.connection import (
    DEFAULT_URL,
    NullListener,
    SessionOptions,
    StreamResult,
    stream_audio,
)
from client.files import chunk_samples, load_audio, paced_chunks, split_chunks
from client.latency import DEFAULT_TOLERANCE_MS

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+
    from typing_extensions import Unpack


async def stream_file(
    path: str | Path,
    url: str = DEFAULT_URL,
    *,
    speed: float = 1.0,
    chunk_ms: float = 100.0,
    **options: Unpack[SessionOptions],
) -> StreamResult:
    """Stream one audio file as one session, paced at `speed` × real time (1 = like a live
    microphone, 0 = as fast as the connection takes it). `options`: those of
    `stream_audio` (listener, retries, retry_delay, open_timeout, finish_timeout,
    tolerance_ms, token, cafile, stop, resume, max_unacked_s). With `resume` (the
    default) a dropped connection or a draining server does not end the stream: the client
    reconnects to `url` and resumes it (`result.resumes` lists each time).

    Raises `AudioFileError` for an unreadable file and `ConnectError` when no session could
    be opened; anything that goes wrong during the session is in `result.failure`.
    """
    if speed < 0:
        raise ValueError("speed must be >= 0")
    audio, rate = load_audio(path)
    chunks = split_chunks(audio, chunk_samples(rate, chunk_ms))
    return await stream_audio(
        paced_chunks(chunks, rate, speed, options.get("stop")),
        url=url,
        sample_rate=rate,
        name=str(path),
        **options,
    )


async def stream_files(
    paths: Sequence[str | Path],
    url: str = DEFAULT_URL,
    *,
    speed: float = 1.0,
    chunk_ms: float = 100.0,
    **options: Unpack[SessionOptions],
) -> list[StreamResult]:
    """Several files one after the other, each its own session (options: `stream_file`'s)."""
    stop = options.get("stop")
    results = []
    for path in paths:
        if stop is not None and stop.is_set():
            break
        results.append(await stream_file(path, url, speed=speed, chunk_ms=chunk_ms, **options))
    return results


async def stream_microphone(
    url: str = DEFAULT_URL,
    *,
    device: int | str | None = None,
    rate: int | None = None,
    chunk_ms: float = 100.0,
    seconds: float | None = None,
    max_queue_s: float = 5.0,
    **options: Unpack[SessionOptions],
) -> StreamResult:
    """Stream the microphone until `stop` is set or `seconds` have passed (`options`: those
    of `stream_audio`).

    Raises `MicError` when the device cannot be used as asked.
    """
    from client.mic import Microphone

    listener = options.get("listener") or NullListener()
    mic = Microphone(device, rate, chunk_ms, max_queue_s=max_queue_s, status=listener.status)
    listener.status(mic.describe())
    result = StreamResult(
        source=f"microphone [{mic.device_index}] {mic.device_name}",
        url=url,
        sample_rate=mic.rate,
        tolerance_ms=options.get("tolerance_ms", DEFAULT_TOLERANCE_MS),
    )
    try:
        await stream_audio(
            mic.blocks(options.get("stop"), seconds),
            url=url,
            sample_rate=mic.rate,
            result=result,
            **options,
        )
    finally:
        result.dropped_blocks = mic.stats.dropped_blocks
        result.dropped_ms = mic.stats.dropped_ms
        result.input_overflows = mic.stats.overflows
    return result
