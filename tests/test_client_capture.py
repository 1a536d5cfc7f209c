"""Microphone capture logic with a scripted stand-in for sounddevice (no sound card needed):
the callback hand-over, the bounded queue and its drop accounting, stop / --seconds,
resampling, and device errors. tests/test_client_mic.py does the same on real PulseAudio.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import client.mic
from client.mic import MicError, Microphone, parse_device


@dataclass
class Status:
    input_overflow: bool = False


class FakeStream:
    """Calls the callback from its own thread, like PortAudio, `blocks` times."""

    def __init__(self, sd: FakeSd, **kw: Any) -> None:
        self.sd = sd
        self.kw = kw
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = self.kw["blocksize"]
        for k in range(self.sd.blocks):
            if self._stop.wait(self.sd.period):
                return
            data = np.full((n, 1), k, dtype=np.int16)
            t0 = time.perf_counter()
            self.kw["callback"](data, n, None, Status(k in self.sd.overflow_at))
            self.sd.callback_s = max(self.sd.callback_s, time.perf_counter() - t0)
            self.sd.produced += 1

    def __enter__(self) -> FakeStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class FakeSd:
    class PortAudioError(Exception):
        pass

    def __init__(self, rate: int = 16000, blocks: int = 10, period: float = 0.01) -> None:
        self.rate = rate
        self.blocks = blocks
        self.period = period
        self.overflow_at: set[int] = set()
        self.produced = 0
        self.callback_s = 0.0
        self.no_default = False
        self.streams: list[FakeStream] = []
        self.default = type("Default", (), {"device": (0, 0)})()

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        devices = [
            {"index": 0, "name": "fake mic", "hostapi": 0, "max_input_channels": 2,
             "default_samplerate": float(self.rate)},
            {"index": 1, "name": "fake speaker", "hostapi": 0, "max_input_channels": 0,
             "default_samplerate": 48000.0},
        ]  # fmt: skip
        if kind is None and device is None:
            return devices
        if device is None and self.no_default:
            raise self.PortAudioError("Error querying device -1")
        if device in (None, 0, "fake mic", "fake"):
            return devices[0]
        raise ValueError(f"No input device matching {device!r}")

    def query_hostapis(self) -> Any:
        return [{"name": "FakeAPI"}]

    def check_input_settings(self, **kw: Any) -> None:
        if kw["samplerate"] == 1234:
            raise self.PortAudioError("Invalid sample rate")

    def InputStream(self, **kw: Any) -> FakeStream:
        stream = FakeStream(self, **kw)
        self.streams.append(stream)
        return stream


@pytest.fixture
def sd(monkeypatch: pytest.MonkeyPatch) -> FakeSd:
    fake = FakeSd()
    monkeypatch.setattr(client.mic, "_sd", lambda: fake)
    return fake


async def test_blocks_arrive_in_order_and_stop_drains_the_queue(sd: FakeSd) -> None:
    sd.blocks, sd.period = 1000, 0.005
    lines: list[str] = []
    mic = Microphone(None, None, 100, status=lines.append)
    assert (mic.rate, mic.blocksize, mic.device_name) == (16000, 1600, "fake mic")
    stop = asyncio.Event()
    got = []
    async for block in mic.blocks(stop):
        got.append(int(block[0]))
        assert block.dtype == np.int16 and len(block) == 1600
        if len(got) == 5:
            stop.set()
    assert got == list(range(len(got))) and len(got) >= 5  # nothing lost or reordered
    assert len(got) == mic.stats.blocks  # every block handed over was yielded
    assert lines[0].startswith("listening")
    assert sd.streams[0].kw["channels"] == 1 and sd.streams[0].kw["dtype"] == "int16"


async def test_slow_consumer_drops_blocks_counts_them_and_never_blocks_the_callback(
    sd: FakeSd,
) -> None:
    sd.blocks, sd.period = 40, 0.002
    lines: list[str] = []
    mic = Microphone(None, None, 100, max_queue_s=0.5, status=lines.append)  # 5 blocks
    assert mic.max_queue == 5
    got = []
    async for block in mic.blocks(seconds=1.0):
        got.append(int(block[0]))
        await asyncio.sleep(0.05)  # the network is slow
    assert sd.produced == 40
    assert mic.stats.dropped_blocks > 0
    assert len(got) + mic.stats.dropped_blocks == 40
    assert mic.stats.dropped_ms == pytest.approx(100 * mic.stats.dropped_blocks)
    assert got == sorted(got)
    assert any("network too slow, dropped 1 audio block(s) (0.1 s of audio)" in x for x in lines)
    assert sd.callback_s < 0.01  # the audio thread only copies and hands over


async def test_seconds_limit_starts_with_the_first_block(sd: FakeSd) -> None:
    sd.blocks, sd.period = 10_000, 0.01
    mic = Microphone(None, None, 100)
    t0 = time.monotonic()
    got = [b async for b in mic.blocks(seconds=0.3)]
    assert 0.25 <= time.monotonic() - t0 < 1.5
    assert 10 <= len(got) <= 60


async def test_no_audio_from_the_device_is_an_error(sd: FakeSd) -> None:
    sd.blocks = 0
    mic = Microphone(None, None, 100)
    mic.first_block_timeout_s = 0.2
    with pytest.raises(MicError, match=r"delivered no audio within 0\.2 s"):
        async for _ in mic.blocks():
            pass


async def test_overflow_is_counted_and_reported(sd: FakeSd) -> None:
    sd.overflow_at = {2}
    lines: list[str] = []
    mic = Microphone(None, None, 100, status=lines.append)
    got = [b async for b in mic.blocks(seconds=0.5)]
    assert len(got) == 10 and mic.stats.overflows == 1
    assert any("input overflow" in x for x in lines)


async def test_unsupported_capture_rate_is_resampled_to_16k(
    sd: FakeSd, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd.rate = 22050
    mic = Microphone(None, None, 100)
    assert (mic.capture_rate, mic.rate, mic.blocksize) == (22050, 16000, 2205)
    assert "resampled to 16000 Hz" in mic.describe()
    got = [b async for b in mic.blocks(seconds=0.5)]
    total = sum(len(b) for b in got)
    assert abs(total - 10 * 1600) <= 2  # 1 s at 16 kHz, including the resampler's tail


def test_device_errors(sd: FakeSd) -> None:
    with pytest.raises(MicError, match="input device 'nope'"):
        Microphone("nope")
    with pytest.raises(MicError, match="cannot record mono 16-bit at 1234 Hz"):
        Microphone(None, 1234)
    assert Microphone("fake", 48000).rate == 48000
    sd.no_default = True
    with pytest.raises(MicError, match="no default input device"):
        Microphone()


def test_parse_device() -> None:
    assert parse_device(None) is None and parse_device("") is None
    assert parse_device("3") == 3
    assert parse_device("pulse") == "pulse"


def test_list_devices(sd: FakeSd) -> None:
    table = client.mic.list_devices()
    assert "*  0  fake mic" in table and "FakeAPI" in table
    assert "speaker" not in table  # output-only devices are not listed


async def test_cli_list_devices(sd: FakeSd) -> None:
    from client.__main__ import run

    out = io.StringIO()
    assert await run(["mic", "--list-devices"], out=out, err=io.StringIO()) == 0
    assert "fake mic" in out.getvalue()


async def test_cli_bad_device_is_a_usage_error(sd: FakeSd) -> None:
    from client.__main__ import run

    err = io.StringIO()
    assert await run(["mic", "--device", "nope"], out=io.StringIO(), err=err) == 2
    assert "error: input device 'nope'" in err.getvalue()


async def test_stream_microphone_against_a_fake_server(sd: FakeSd) -> None:
    from test_client_session import FakeServer

    from client import stream_microphone

    sd.blocks, sd.period = 25, 0.1  # 2.5 s at real-time pace
    stop = asyncio.Event()

    async def stop_when_the_device_is_done() -> None:
        while sd.produced < sd.blocks:
            await asyncio.sleep(0.02)
        stop.set()

    async with FakeServer() as fake:
        watcher = asyncio.create_task(stop_when_the_device_is_done())
        result = await stream_microphone(fake.url, seconds=30, stop=stop)
        await watcher
    assert result.ok, result.failure
    assert result.interrupted  # ended by `stop`, like Ctrl-C
    assert result.source == "microphone [0] fake mic"
    assert fake.received[0]["sample_rate"] == 16000
    assert result.audio_s == pytest.approx(2.5)
    assert [f["text"] for f in result.finals] == ["u0a u0b", "u1a u1b", "u2a"]
    assert result.dropped_blocks == 0
    assert 0 <= result.summary()["latency_ms"]["partial"]["p50"] < 1000
