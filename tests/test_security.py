"""Token auth, TLS, origin allow-list, metrics endpoint, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import server_config
from tls_support import server_certificate
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsclient import recv_json

from streaming.model import LoadedModel
from streaming.security import load_tokens, presented_token, token_allowed
from streaming.server import Server

SECRET = "s3cret-token-value"


def test_tokens_come_from_flags_files_and_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# team tokens\nfile-token\n\n")
    tokens = load_tokens(["flag-token"], [str(token_file)], env={"STREAMING_AUTH_TOKENS": "a,b"})
    assert tokens == ("flag-token", "file-token", "a", "b")


def test_presented_token_reads_bearer_token_scheme_and_query() -> None:
    assert presented_token("/", {"Authorization": "Bearer abc"}) == "abc"
    assert presented_token("/", {"Authorization": "Token abc"}) == "abc"
    assert presented_token("/v1/listen?model=x&token=q1", {}) == "q1"
    assert presented_token("/", {"Authorization": "Basic abc"}) is None


def test_token_check_accepts_any_configured_token_only() -> None:
    assert token_allowed("b", ("a", "b"))
    assert not token_allowed("c", ("a", "b"))
    assert not token_allowed(None, ("a",))


@pytest.fixture
async def auth_server(tiny_model_dir: Path, tiny_model: LoadedModel):  # type: ignore[no-untyped-def]
    config = server_config(tiny_model_dir, auth_tokens=(SECRET, "other"))
    async with Server(config, model=tiny_model) as srv:
        yield srv


async def test_missing_or_wrong_token_is_refused_with_401(auth_server: Server) -> None:
    for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer nope"}}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(auth_server.url, **kwargs):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 401


async def test_valid_token_by_header_or_query_is_accepted(auth_server: Server) -> None:
    async with connect(
        auth_server.url, additional_headers={"Authorization": f"Bearer {SECRET}"}
    ) as ws:
        assert (await recv_json(ws))["type"] == "ready"
    async with connect(auth_server.url + "?token=other") as ws:
        assert (await recv_json(ws))["type"] == "ready"


async def test_secrets_never_reach_the_logs(
    auth_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(auth_server.url + f"?token={SECRET}") as ws:
        await recv_json(ws)
    with pytest.raises(InvalidStatus):
        async with connect(auth_server.url + "?token=wrong-guess"):
            pass
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    )
    assert "token=***" in server_side  # websockets' request-line debug log, masked
    assert SECRET not in server_side and "wrong-guess" not in server_side
    assert SECRET not in repr(auth_server.config)


async def test_tls_serves_wss_with_the_given_certificate(
    tiny_model_dir: Path, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    ca, cert_file, key_file = server_certificate(tmp_path)
    config = server_config(tiny_model_dir, tls_cert_file=str(cert_file), tls_key_file=str(key_file))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with Server(config, model=tiny_model) as srv:
        assert srv.url.startswith("wss://")
        async with connect(srv.url, ssl=client_ctx) as ws:
            assert (await recv_json(ws))["type"] == "ready"
        with pytest.raises(ssl.SSLError):
            async with connect(srv.url, ssl=ssl.create_default_context()):
                pass


async def test_only_allowed_browser_origins_connect(
    tiny_model_dir: Path, tiny_model: LoadedModel
) -> None:
    config = server_config(tiny_model_dir, allowed_origins=("https://captions.example",))
    async with Server(config, model=tiny_model) as srv:
        async with connect(srv.url, origin="https://captions.example") as ws:  # type: ignore[arg-type]
            await recv_json(ws)
        async with connect(srv.url) as ws:  # no Origin: not a browser
            await recv_json(ws)
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv.url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_metrics_endpoint_exports_prometheus_counters(server: Server) -> None:
    from audio_fixtures import speech_with_pauses, to_s16
    from wsclient import stream_pcm

    audio, _ = speech_with_pauses(["counting words for metrics"], pause_s=1.0)
    await stream_pcm(server.url, to_s16(audio))
    base = server.url.replace("ws://", "http://")
    status, body = await asyncio.to_thread(http_get, base + "metrics")
    text = body.decode()
    assert status == 200
    assert "streaming_sessions_total" in text and "streaming_engine_batch_size_bucket" in text
    assert "streaming_finals_total 1.0" in text
    assert "streaming_audio_seconds_total" in text
    status, body = await asyncio.to_thread(http_get, base + "health")
    assert status == 200 and json.loads(body)["status"] == "ready"


async def test_metrics_require_the_token_when_auth_is_on(auth_server: Server) -> None:
    base = auth_server.url.replace("ws://", "http://")
    status, _ = await asyncio.to_thread(http_get, base + "metrics")
    assert status == 401
    status, _ = await asyncio.to_thread(
        http_get, base + "metrics", {"Authorization": f"Bearer {SECRET}"}
    )
    assert status == 200
