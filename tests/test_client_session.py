"""The client's session mechanics and CLI against a scripted fake server on 127.0.0.1.

The fake speaks docs/protocol.md with results at known stream positions, so connection
handling, error reporting, retries, Ctrl-C and latency numbers can be checked exactly,
independent of the model. (tests/test_client_server.py runs the same client against the real
server.)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from status_recorder import StatusRecorder
from websockets.asyncio.server import ServerConnection, serve

from client import ConnectError, stream_file
from client.__main__ import main, run
from client.connection import stream_audio

REPO = Path(__file__).resolve().parent.parent


class FakeServer:
    """Utterance u covers stream ms [1000u, 1000u + 1000): word "u{u}a" ends at 1000u + 400,
    "u{u}b" at 1000u + 800. A word is shown (tentative) once 100 ms of audio past its end
    arrived, committed 300 ms past it; the final (ending with its last word) comes 400 ms
    past 1000u + 800, like a VAD hangover, or at `end` with the words heard so far.
    """

    def __init__(self, **behaviour: Any) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.received: list[dict[str, Any]] = []  # JSON messages the client sent
        self.audio_bytes = 0
        self.end_final: dict[str, Any] | None = None  # sent in reply to `end`
        self.authorization: str | None = None
        self.url = ""
        self._server: Any = None

    async def __aenter__(self) -> FakeServer:
        self._server = await serve(self.handler, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    @staticmethod
    def words(utt: int, audio_ms: float, final: bool = False) -> list[dict[str, Any]]:
        out = []
        for suffix, start, end in (("a", 100, 400), ("b", 500, 800)):
            s, e = 1000 * utt + start, 1000 * utt + end
            if (final and e <= audio_ms) or audio_ms >= e + 100:
                w = {"word": f"u{utt}{suffix}", "start_ms": s, "end_ms": e, "conf": 0.9}
                if not final:
                    w["committed"] = audio_ms >= e + 300
                out.append(w)
        return out

    def final(self, utt: int, audio_ms: float, reason: str) -> dict[str, Any]:
        words = self.words(utt, audio_ms, final=True)
        return {
            "type": "final", "utterance_id": utt, "text": " ".join(w["word"] for w in words),
            "start_ms": 1000 * utt + 100, "end_ms": words[-1]["end_ms"], "audio_ms": audio_ms,
            "words": words, "reason": reason,
        }  # fmt: skip

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        self.authorization = ws.request.headers.get("Authorization")
        b = self.behaviour
        if self.connections <= b.get("full_first", 0):
            await ws.close(1013, "server full")
            return
        await ws.send(json.dumps({
            "type": "ready", "session_id": f"s{self.connections}", "model": "fake",
            "sample_rate": 16000, "protocol_version": 1,
            "input": {"sample_rate": 16000, "encoding": "pcm_s16le"},
        }))  # fmt: skip
        rate, samples, utt = 16000, 0, 0
        async for raw in ws:
            if isinstance(raw, bytes):
                self.audio_bytes += len(raw)
                samples += len(raw) // 2
                audio_ms = samples * 1000 / rate
                if b.get("fatal_at_ms") is not None and audio_ms >= b["fatal_at_ms"]:
                    await ws.send(json.dumps({
                        "type": "error", "code": "session_too_long",
                        "message": "session longer than 1 s", "fatal": True,
                    }))  # fmt: skip
                    await ws.close(1008, "limit")
                    return
                if b.get("warn_at_ms") is not None and audio_ms >= b["warn_at_ms"]:
                    b["warn_at_ms"] = None
                    await ws.send(json.dumps({
                        "type": "error", "code": "frame_too_large",
                        "message": "frame of 5000000 bytes dropped", "fatal": False,
                    }))  # fmt: skip
                if audio_ms >= 1000 * utt + 1200:
                    await ws.send(json.dumps(self.final(utt, audio_ms, "vad")))
                    utt += 1
                words = self.words(utt, audio_ms)
                if words:
                    committed = " ".join(w["word"] for w in words if w["committed"])
                    tentative = " ".join(w["word"] for w in words if not w["committed"])
                    await ws.send(json.dumps({
                        "type": "partial", "utterance_id": utt, "committed": committed,
                        "tentative": tentative, "text": f"{committed} {tentative}".strip(),
                        "start_ms": 1000 * utt + 100, "audio_ms": audio_ms, "words": words,
                    }))  # fmt: skip
                continue
            msg = json.loads(raw)
            self.received.append(msg)
            if msg["type"] == "start":
                rate = msg.get("sample_rate", 16000)
                if rate not in (8000, 16000, 32000, 44100, 48000):
                    await ws.send(json.dumps({
                        "type": "error", "code": "unsupported_sample_rate",
                        "message": f"sample_rate {rate} not supported", "fatal": False,
                    }))  # fmt: skip
                    continue
                await ws.send(json.dumps({"type": "started", "sample_rate": rate,
                                          "encoding": "pcm_s16le"}))  # fmt: skip
            elif msg["type"] == "end":
                if b.get("hang_after_end"):
                    await ws.wait_closed()  # say nothing until the client gives up
                    return
                audio_ms = samples * 1000 / rate
                if self.words(utt, audio_ms, final=True):
                    self.end_final = self.final(utt, audio_ms, "end")
                    await ws.send(json.dumps(self.end_final))
                await ws.close(1000)
                return


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer() as server:
        yield server


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data, rate)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- library API ---------------------------------------------------------------------


async def test_fast_stream_collects_every_final(fake: FakeServer, tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 3.0)
    result = await stream_file(path, fake.url, speed=0)
    assert result.ok, result.failure
    assert [f["text"] for f in result.finals] == ["u0a u0b", "u1a u1b", "u2a u2b"]
    assert [f["reason"] for f in result.finals] == ["vad", "vad", "end"]
    assert result.transcript == "u0a u0b u1a u1b u2a u2b"
    assert fake.received[0] == {
        "type": "start",
        "sample_rate": 16000,
        "encoding": "pcm_s16le",
        "channels": 1,
        "resume": True,  # asks for acks and resume tokens (ignored by this fake)
    }
    assert fake.received[-1] == {"type": "end"}
    assert fake.audio_bytes == 3 * 16000 * 2
    assert result.audio_s == pytest.approx(3.0)
    assert result.session_id == "s1" and result.model == "fake"
    assert result.close_code == 1000
    lat = result.summary()["latency_ms"]
    assert lat["words_committed"] == 6 and lat["words_retracted"] == 0
    assert lat["final"]["count"] == 3
    assert all(v >= 0 for v in result.tracker.partial_latencies())


async def test_realtime_pace_and_latency(fake: FakeServer, tmp_path: Path) -> None:
    """At real-time pace the fake shows a word 100 ms of audio after its end, commits it
    300 ms after, finals 400 ms after: latencies must come out near those numbers."""
    path = write_tone(tmp_path / "a.wav", 2.5)
    t0 = time.monotonic()
    result = await stream_file(path, fake.url, speed=1.0, chunk_ms=100)
    elapsed = time.monotonic() - t0
    assert result.ok, result.failure
    assert elapsed >= 2.4  # paced, not dumped
    s = result.summary()
    assert 2.4 <= result.wall_s <= 4.0, s
    assert 0.6 <= s["speed_x_realtime"] <= 1.05, s
    lat = s["latency_ms"]
    assert lat["partial"]["count"] == 5, s  # u2b (ends at 2800 ms) was never sent
    # shown with the chunk holding end + 100 ms: 100 ms after the end was sent, plus delivery
    assert 50 <= lat["partial"]["p50"] <= 450, s
    assert 250 <= lat["commit"]["p50"] <= 650, s
    assert lat["final"]["count"] == 3, s  # the third final comes from `end`
    assert 350 <= lat["final"]["p50"] <= 800, s
    for w in result.tracker.words:
        assert w.partial_latency_ms is not None and w.commit_latency_ms is not None
        assert 0 <= w.partial_latency_ms <= w.commit_latency_ms


async def test_speed_10(fake: FakeServer, tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 3.0)
    t0 = time.monotonic()
    result = await stream_file(path, fake.url, speed=10)
    assert 0.25 <= time.monotonic() - t0 <= 2.5
    assert result.ok and len(result.finals) == 3


@pytest.mark.parametrize(
    ("rate", "channels", "sent_rate"),
    [(44100, 2, 44100), (8000, 1, 8000), (22050, 2, 16000), (11025, 1, 16000)],
)
async def test_file_rates_and_channels(
    fake: FakeServer, tmp_path: Path, rate: int, channels: int, sent_rate: int
) -> None:
    path = write_tone(tmp_path / "a.wav", 1.0, rate, channels)
    result = await stream_file(path, fake.url, speed=0)
    assert result.ok
    assert fake.received[0]["sample_rate"] == sent_rate
    assert abs(fake.audio_bytes - 2 * sent_rate) <= 4  # mono s16, one second
    assert result.audio_s == pytest.approx(1.0, abs=0.01)


async def test_flac(fake: FakeServer, tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    sf.write(str(tmp_path / "a.flac"), 0.2 * np.sin(2 * np.pi * 300 * t), 32000)
    result = await stream_file(tmp_path / "a.flac", fake.url, speed=0)
    assert result.ok and fake.received[0]["sample_rate"] == 32000


async def test_retries_while_server_is_full(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 1.0)
    rec = StatusRecorder()
    async with FakeServer(full_first=2) as fake:
        result = await stream_audio_file(path, fake.url, rec, retries=3)
    assert result.ok
    retries = [line for line in rec.lines if "retrying" in line]
    assert len(retries) == 2
    assert "server is full" in retries[0] and "retry 1 of 3" in retries[0]
    assert "retry 2 of 3" in retries[1]


async def stream_audio_file(path: Path, url: str, rec: StatusRecorder, retries: int) -> Any:
    from client.files import load_audio, paced_chunks, split_chunks

    audio, rate = load_audio(path)
    return await stream_audio(
        paced_chunks(split_chunks(audio, 1600), rate, 0), url=url, sample_rate=rate,
        listener=rec, retries=retries, retry_delay=0.01,
    )  # fmt: skip


async def test_connection_refused_retries_then_fails(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 0.5)
    rec = StatusRecorder()
    url = f"ws://127.0.0.1:{free_port()}/"
    t0 = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await stream_audio_file(path, url, rec, retries=2)
    assert time.monotonic() - t0 < 5
    assert "connection refused" in str(info.value) and "3 attempts" in str(info.value)
    assert sum("connecting to" in line for line in rec.lines) == 3
    assert [line for line in rec.lines if "retrying" in line][1].endswith("(retry 2 of 2)")


async def test_fatal_server_error_fails_the_session(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 3.0)
    async with FakeServer(fatal_at_ms=1000) as fake:
        result = await stream_file(path, fake.url, speed=0)
    assert not result.ok
    assert result.failure == "server error session_too_long (fatal): session longer than 1 s"
    assert [e["code"] for e in result.errors] == ["session_too_long"]


async def test_server_that_goes_quiet_after_end_times_out(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 0.5)
    async with FakeServer(hang_after_end=True) as fake:
        from client.files import load_audio, paced_chunks, split_chunks

        audio, rate = load_audio(path)
        t0 = time.monotonic()
        result = await stream_audio(
            paced_chunks(split_chunks(audio, 1600), rate, 0), url=fake.url, sample_rate=rate,
            finish_timeout=0.5,
        )  # fmt: skip
    assert 0.4 <= time.monotonic() - t0 < 5
    assert result.failure is not None and "sent nothing for 0.5 s" in result.failure


async def test_server_closing_early_is_a_failure(tmp_path: Path) -> None:
    async def one_message(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "ready", "session_id": "x"}))
        await ws.recv()  # start
        await ws.send(json.dumps({"type": "started"}))
        await ws.recv()
        await ws.close(1011, "internal error")

    async with serve(one_message, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        result = await stream_file(write_tone(tmp_path / "a.wav", 2.0), f"ws://127.0.0.1:{port}/")
    assert result.failure == "server closed the connection unexpectedly (code 1011 internal error)"


async def test_rejected_start_is_reported(tmp_path: Path, fake: FakeServer) -> None:
    from client.connection import StreamResult

    async def nothing() -> AsyncIterator[np.ndarray]:
        return
        yield  # pragma: no cover

    res = StreamResult(source="x", url=fake.url, sample_rate=12345)
    await stream_audio(nothing(), url=fake.url, sample_rate=12345, result=res)
    assert res.failure == "server error unsupported_sample_rate: sample_rate 12345 not supported"


# ---- CLI ---------------------------------------------------------------------------------


async def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_cli_file_plain_with_report_and_subtitles(fake: FakeServer, tmp_path: Path) -> None:
    path = write_tone(tmp_path / "talk.wav", 2.0)
    report, srt, vtt = tmp_path / "r.json", tmp_path / "t.srt", tmp_path / "t.vtt"
    code, out, err = await cli(
        "file", str(path), "--url", fake.url, "--fast", "--timestamps",
        "--report", str(report), "--srt", str(srt), "--vtt", str(vtt),
    )  # fmt: skip
    assert code == 0, err
    # stdout is not a TTY: plain, finals only
    assert out == "[0:00.1-0:00.8] u0a u0b\n[0:01.1-0:01.8] u1a u1b\n"
    assert f"connecting to {fake.url}" in err
    assert "latency (ms)" in err and "partial (word)" in err and "final (utterance)" in err
    assert "2 utterances, 2.0 s of audio sent" in err
    data = json.loads(report.read_text())
    assert data["overall"]["utterances"] == 2 and data["overall"]["ok"] is True
    (session,) = data["sessions"]
    assert session["summary"]["source"] == str(path)
    assert session["transcript"] == "u0a u0b u1a u1b"
    assert {"partial_latency_ms", "commit_latency_ms", "word", "end_ms"} <= set(session["words"][0])
    assert {"final_latency_ms", "reason"} <= set(session["utterances"][0])
    assert data["settings"]["fast"] is True
    assert srt.read_text() == (
        "1\n00:00:00,100 --> 00:00:00,800\nu0a u0b\n\n2\n00:00:01,100 --> 00:00:01,800\nu1a u1b\n"
    )
    assert vtt.read_text().startswith("WEBVTT\n\n00:00:00.100 --> 00:00:00.800\nu0a u0b\n")


async def test_cli_json_mode(fake: FakeServer, tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 1.5)
    code, out, _ = await cli("file", str(path), "--url", fake.url, "--speed", "0", "--json", "-q")
    assert code == 0
    kinds = [json.loads(line)["type"] for line in out.splitlines()]
    assert kinds[:2] == ["ready", "started"]
    assert "partial" in kinds and kinds.count("final") == 2


async def test_cli_several_files_and_a_folder(fake: FakeServer, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    write_tone(folder / "b.wav", 1.5)
    write_tone(folder / "a.flac", 1.5)
    (folder / "notes.txt").write_text("not audio")
    single = write_tone(tmp_path / "c.wav", 1.5)
    subs = tmp_path / "subs"
    code, out, err = await cli(
        "file", str(folder), str(single), "--url", fake.url, "--fast", "--srt", str(subs)
    )
    assert code == 0, err
    assert out.count("u0a u0b") == 3
    assert "[1/3]" in err and "[3/3]" in err
    assert "overall (3 files): 6 utterances" in err
    assert sorted(p.name for p in subs.iterdir()) == ["a.srt", "b.srt", "c.srt"]
    assert fake.connections == 3


async def test_cli_server_error_line_and_exit_code(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 3.0)
    async with FakeServer(fatal_at_ms=1000, warn_at_ms=500) as fake:
        code, _, err = await cli("file", str(path), "--url", fake.url, "--fast")
    assert code == 1
    assert "server error frame_too_large: frame of 5000000 bytes dropped\n" in err
    assert "server error session_too_long (fatal): session longer than 1 s\n" in err
    assert "FAILED: server error session_too_long" in err


async def test_cli_connection_refused(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 0.5)
    url = f"ws://127.0.0.1:{free_port()}/"
    code, _, err = await cli("file", str(path), "--url", url, "--retries", "0")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: cannot connect to {url}: connection refused (is the server running?)"
        " (gave up after 1 attempt)"
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["file"],
        ["file", "missing.wav"],
        ["file", "x.wav", "--speed", "-1"],
        ["file", "x.wav", "--speed", "2", "--fast"],
        ["file", "x.wav", "--url", "http://localhost/"],
        ["file", "x.wav", "--plain", "--json"],
        ["file", "x.wav", "--chunk-ms", "0"],
        ["mic", "--retries", "-1"],
        ["mic", "--rate", "abc"],
        ["radio"],
    ],
)
async def test_cli_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    code, _, err = await cli(*argv)
    assert code == 2
    assert "error" in err


async def test_cli_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await cli("file", str(tmp_path))
    assert code == 2 and "no audio files" in err


async def test_cli_unreadable_audio_is_a_usage_error(fake: FakeServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    good = write_tone(tmp_path / "good.wav", 1.5)
    code, out, err = await cli("file", str(bad), str(good), "--url", fake.url, "--fast")
    assert code == 2
    assert "cannot read audio" in err and out.count("u0a u0b") == 1


@pytest.mark.parametrize("sub", [None, "file", "mic"])
def test_help_explains_every_option(
    sub: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: phrases are not wrapped
    assert main(["--help"] if sub is None else [sub, "--help"]) == 0
    text = capsys.readouterr().out
    if sub is None:
        assert "mic" in text and "file" in text and "exit codes" in text
        return
    options = ["--url", "--retries", "--chunk-ms", "--plain", "--json", "--timestamps",
               "--report", "--srt", "--vtt", "--quiet", "--token", "--cafile",
               "--finish-timeout", "--word-tolerance-ms"]  # fmt: skip
    options += ["--speed", "--fast"] if sub == "file" else ["--device", "--list-devices",
                                                            "--rate", "--seconds"]  # fmt: skip
    for opt in options:
        assert opt in text
    assert "default: ws://127.0.0.1:8765/" in text and "default: 100" in text


async def test_ctrl_c_ends_the_stream_cleanly(tmp_path: Path) -> None:
    """SIGINT to a real-time file stream: `end` is sent, the last final arrives and is
    shown, the summary is printed, exit code 0."""
    path = write_tone(tmp_path / "long.wav", 20.0)
    async with FakeServer() as fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client", "file", str(path), "--url", fake.url, "--plain",
            "--report", str(tmp_path / "r.json"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert proc.stdout is not None
        # the second final arrives at 2.2 s of audio; stop during the third utterance
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        second = await asyncio.wait_for(proc.stdout.readline(), 30)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        stdout = first + second + stdout
    assert proc.returncode == 0, stderr.decode()
    assert fake.received[-1] == {"type": "end"}
    text = stdout.decode()
    assert text.startswith("u0a u0b\n")
    err = stderr.decode()
    assert "stopping: finishing the stream" in err
    assert "stopped on request (Ctrl-C)" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["overall"]["interrupted"] is True
    assert 1.0 <= report["overall"]["audio_s"] < 10
    finals = report["sessions"][0]["finals"]
    assert text.splitlines() == [f["text"] for f in finals]  # every final shown
    # the open utterance was finalized because of `end`, and shown last
    assert fake.end_final is not None
    assert finals[-1] == fake.end_final and finals[-1]["reason"] == "end"


async def spawn_client(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


async def wait_for_line(stream: asyncio.StreamReader | None, text: str) -> list[str]:
    assert stream is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30)).decode()
        assert line, f"{text!r} never printed; got {seen}"
        seen.append(line)
        if text in line:
            return seen


async def test_second_ctrl_c_quits_at_once(tmp_path: Path) -> None:
    """A server that never finishes after `end`: the second Ctrl-C does not wait for it."""
    path = write_tone(tmp_path / "a.wav", 20.0)
    async with FakeServer(hang_after_end=True) as fake:
        proc = await spawn_client("file", str(path), "--url", fake.url, "--plain")
        await wait_for_line(proc.stderr, "connecting")
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        await wait_for_line(proc.stderr, "stopping")
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 130
    assert stderr.decode().strip().endswith("aborted")


async def test_ctrl_c_while_retrying_quits_at_once(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 1.0)
    url = f"ws://127.0.0.1:{free_port()}/"
    proc = await spawn_client("file", str(path), "--url", url, "--retries", "9")
    await wait_for_line(proc.stderr, "retrying")
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 130, stderr.decode()


async def test_cli_unwritable_report_is_found_before_streaming(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 0.5)
    code, _, err = await cli("file", str(path), "--report", str(tmp_path), "--retries", "0")
    assert code == 2 and "is a folder, expected a file name" in err
    assert "connecting" not in err


async def test_token_is_sent_as_bearer(
    fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tone(tmp_path / "a.wav", 0.5)
    code, _, _ = await cli("file", str(path), "--url", fake.url, "--fast", "--token", "abc")
    assert code == 0 and fake.authorization == "Bearer abc"
    monkeypatch.setenv("STREAMING_TOKEN", "from-env")
    code, _, _ = await cli("file", str(path), "--url", fake.url, "--fast", "--report",
                           str(tmp_path / "r.json"))  # fmt: skip
    assert code == 0 and fake.authorization == "Bearer from-env"
    assert "from-env" not in (tmp_path / "r.json").read_text()  # secrets stay out of reports


async def test_stream_files_one_session_each(fake: FakeServer, tmp_path: Path) -> None:
    from client import stream_files

    paths = [write_tone(tmp_path / f"{n}.wav", 1.5) for n in ("a", "b")]
    results = await stream_files(paths, fake.url, speed=0)
    assert [r.source for r in results] == [str(p) for p in paths]
    assert [r.session_id for r in results] == ["s1", "s2"]
    assert all(r.ok and r.transcript == "u0a u0b u1a" for r in results)
