"""Deployment: the shipped images and manifests lint clean, and the shipped HAProxy config
balances real replica processes (bundled model) the way docs/deploy.md says."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from deploy_support import ROOT, Balancer, cluster, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from client.api import stream_file

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (the test extra installs it)")
    return path


def test_dockerfiles_pass_hadolint() -> None:
    files = [str(DEPLOY / "Dockerfile"), str(DEPLOY / "Dockerfile.gpu")]
    result = subprocess.run([_tool("hadolint"), *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_files_pass_yamllint() -> None:
    result = subprocess.run(
        [_tool("yamllint"), "-c", str(DEPLOY / ".yamllint"), str(DEPLOY)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    manifests = sorted(str(p) for p in (DEPLOY / "kubernetes").glob("*.yaml"))
    result = subprocess.run(
        [_tool("kubernetes-validate"), "-k", "1.30.0", "--strict", *manifests],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {"deployment", "service", "ingress", "poddisruptionbudget", "horizontalpodautoscaler"}
    assert all(f"passed for resource {kind}/" in result.stdout + result.stderr for kind in kinds)


def test_haproxy_config_is_valid() -> None:
    env = {
        "REPLICA1": "127.0.0.1:1",
        "REPLICA2": "127.0.0.1:2",
        "REPLICA3": "127.0.0.1:3",
        "HAPROXY_BIND": "127.0.0.1:18080",
        "HAPROXY_STATS_BIND": "127.0.0.1:18404",
        "HAPROXY_ERRORS": str(DEPLOY / "haproxy"),
    }
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail("haproxy is not installed (scripts/setup.sh installs it)")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- real replicas behind the real balancer ---------------------------------------------

PER_REPLICA = 5
REPLICA_ARGS = [
    "--model",
    "tiny-en",
    "--threads",
    "1",
    "--max-sessions",
    str(PER_REPLICA),
    # Judge admission by the session limit alone: a 2-core test machine running three
    # replicas is slow by design, and that must not make them refuse streams.
    "--max-engine-load",
    "1",
    "--lag-warning-s",
    "60",
]


@pytest.fixture(scope="module")
def balancer() -> Iterator[Balancer]:
    with cluster(REPLICA_ARGS) as running:
        assert wait_until(lambda: all(r.health()[0] == 200 for r in running.replicas))
        yield running


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample's first sentence ("the company was paying all the rest")."""
    audio, rate = sf.read(ROOT / "streaming" / "assets" / "demo.wav", dtype="int16")
    path = tmp_path_factory.mktemp("speech") / "first.wav"
    sf.write(path, audio[: int(3.2 * rate)], rate, subtype="PCM_16")
    return path


async def test_twelve_streams_spread_over_every_replica(
    balancer: Balancer, short_speech: Path
) -> None:
    before = [r.sessions_total() for r in balancer.replicas]
    results = await asyncio.gather(
        *(stream_file(short_speech, balancer.url, speed=1.0) for _ in range(12))
    )
    assert all(r.ok for r in results), [r.failure for r in results]
    assert all(r.finals for r in results)
    transcripts = {r.transcript for r in results}
    assert len(transcripts) == 1 and "all the rest" in transcripts.pop(), transcripts
    taken = [r.sessions_total() - b for r, b in zip(balancer.replicas, before)]
    assert sum(taken) == 12
    assert all(count >= 2 for count in taken), taken


async def test_full_replica_gets_no_new_streams_and_all_full_is_refused_plainly(
    balancer: Balancer, short_speech: Path
) -> None:
    first, *others = balancer.replicas
    held = [await connect(first.url) for _ in range(PER_REPLICA)]
    try:
        status, body = first.health()
        assert status == 503 and body["status"] == "full"
        before = [r.sessions_total() for r in others]
        results = await asyncio.gather(
            *(stream_file(short_speech, balancer.url, speed=0) for _ in range(4))
        )
        assert all(r.ok for r in results), [r.failure for r in results]
        assert sum(r.sessions_total() - b for r, b in zip(others, before)) == 4
        # Fill the others too: the balancer then refuses with a message a person can read.
        held += [await connect(r.url) for r in others for _ in range(PER_REPLICA)]
        assert wait_until(lambda: all(r.health()[0] == 503 for r in balancer.replicas))
        with pytest.raises(InvalidStatus) as refused:
            await connect(balancer.url)
        assert refused.value.response.status_code == 503
        # The last replica's own refusal, or HAProxy's once every replica is marked down.
        assert "full" in json.loads(refused.value.response.body)["error"]
    finally:
        await asyncio.gather(*(ws.close() for ws in held))
    assert wait_until(lambda: all(r.health()[0] == 200 for r in balancer.replicas))
