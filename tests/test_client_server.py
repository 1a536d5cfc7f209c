"""The client against the real server (tiny random model on 127.0.0.1, port 0).

The model's words are garbage, so these check mechanics: sessions complete, every final is
shown and timed, latency numbers are plausible, reports and subtitles are written.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import RATE, speech_with_pauses
from conftest import server_config

from client import StreamResult, stream_file
from client.__main__ import run
from streaming.server import Server


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sentences with a pause (16 kHz): two utterances for the VAD."""
    audio, _ = speech_with_pauses(["hello world", "this is a test"], pause_s=1.2, lead_s=0.3)
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    sf.write(str(path), audio, RATE)
    return path


@pytest.fixture(scope="module")
def espeak_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng's own 22.05 kHz output: the client resamples it to 16 kHz."""
    path = tmp_path_factory.mktemp("speech") / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(path), "testing one two three"], check=True
    )
    return path


def check_result(result: StreamResult, max_latency_ms: float = 5000) -> dict[str, Any]:
    assert result.ok, result.failure
    assert result.close_code == 1000
    assert result.errors == []
    assert result.finals, "no utterance was finalized"
    audio_ms = result.audio_s * 1000
    for i, f in enumerate(result.finals):
        assert f["utterance_id"] == i
        assert 0 <= f["start_ms"] < f["end_ms"] <= audio_ms + 1
        assert f["reason"] in ("vad", "end", "max_length", "flush")
    for u in result.tracker.utterances:
        assert u.final_latency_ms is not None
        assert 0 <= u.final_latency_ms < max_latency_ms
    for w in result.tracker.words:
        if w.partial_latency_ms is not None:
            assert 0 <= w.partial_latency_ms < max_latency_ms
        if w.commit_latency_ms is not None:
            assert w.partial_latency_ms is not None
            assert w.partial_latency_ms <= w.commit_latency_ms < max_latency_ms
    summary = result.summary()
    assert summary["latency_ms"]["final"]["count"] == len(result.finals)
    return summary


async def test_file_at_real_time_pace(server: Any, speech_wav: Path) -> None:
    result = await stream_file(speech_wav, server.url, speed=1.0)
    summary = check_result(result)
    duration = sf.info(str(speech_wav)).duration
    assert result.audio_s == pytest.approx(duration, abs=0.11)
    assert result.wall_s >= duration - 0.2  # paced like a microphone
    assert 0.5 <= summary["speed_x_realtime"] <= 1.05
    assert len(result.finals) >= 2  # the pause ends the first utterance
    assert result.finals[0]["reason"] == "vad"
    assert result.partials > 0
    lat = summary["latency_ms"]
    assert lat["partial"]["count"] > 0 and lat["commit"]["count"] > 0
    # at real-time pace a word cannot be shown before its audio was sent, nor seconds later
    assert 0 <= lat["partial"]["p50"] < 3000


async def test_file_full_speed(server: Any, espeak_wav: Path) -> None:
    result = await stream_file(espeak_wav, server.url, speed=0)
    check_result(result, max_latency_ms=30_000)
    assert result.sample_rate == 16000  # 22050 is not a server rate: resampled
    assert result.wall_s < sf.info(str(espeak_wav)).duration


async def test_cli_fast_with_report_and_subtitles(
    server: Any, speech_wav: Path, espeak_wav: Path, tmp_path: Path
) -> None:
    report, subs = tmp_path / "report.json", tmp_path / "subs"
    out, err = io.StringIO(), io.StringIO()
    code = await run(
        ["file", str(speech_wav), str(espeak_wav), "--url", server.url, "--fast",
         "--report", str(report), "--srt", str(subs), "--timestamps"],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    data = json.loads(report.read_text())
    assert data["overall"]["sessions"] == 2 and data["overall"]["ok"] is True
    shown = out.getvalue().splitlines()
    finals = [f for s in data["sessions"] for f in s["finals"] if f["text"]]
    assert len(shown) == len(finals) > 0
    for line, f in zip(shown, finals, strict=True):
        assert line.startswith("[") and line.endswith(f["text"])
    for session in data["sessions"]:
        s = session["summary"]
        assert s["ok"] and s["utterances"] == len(session["finals"])
        assert set(s["latency_ms"]) >= {"partial", "commit", "final"}
        assert all(u["final_latency_ms"] is not None for u in session["utterances"])
    srt = (subs / "two.srt").read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    assert (subs / "espeak.srt").exists()
    assert "overall (2 files)" in err.getvalue()


async def test_silence_only_gives_no_final(server: Any, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(RATE * 2, dtype=np.float32), RATE)
    result = await stream_file(path, server.url, speed=0)
    assert result.ok, result.failure
    assert result.finals == [] and result.summary()["latency_ms"]["final"]["count"] == 0


async def test_token_auth(tiny_model_dir: Path, tiny_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(str(path), np.zeros(RATE // 2, dtype=np.float32), RATE)
    config = server_config(tiny_model_dir, auth_tokens=("s3cret",))
    async with Server(config, model=tiny_model) as srv:
        out, err = io.StringIO(), io.StringIO()
        code = await run(["file", str(path), "--url", srv.url, "--fast"], out=out, err=err)
        assert code == 1
        last = err.getvalue().strip().splitlines()[-1]
        assert last.endswith("HTTP 401: missing or invalid token (see --token)")
        assert "retrying" not in err.getvalue()  # a wrong token does not fix itself
        result = await stream_file(path, srv.url, speed=0, token="s3cret")
        assert result.ok, result.failure


async def test_wss_with_cafile(tiny_model_dir: Path, tiny_model: Any, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    path = tmp_path / "tone.wav"
    sf.write(str(path), np.zeros(RATE // 2, dtype=np.float32), RATE)
    config = server_config(tiny_model_dir, tls_cert_file=str(cert_file), tls_key_file=str(key_file))
    async with Server(config, model=tiny_model) as srv:
        assert srv.url.startswith("wss://")
        result = await stream_file(path, srv.url, speed=0, cafile=str(ca_file))
        assert result.ok, result.failure
        out, err = io.StringIO(), io.StringIO()
        code = await run(["file", str(path), "--url", srv.url], out=out, err=err)
        assert code == 1
        assert "TLS certificate not trusted" in err.getvalue()
        assert "retrying" not in err.getvalue()
