"""Deployment: the shipped images and manifests lint clean, and the shipped HAProxy config
balances real replica processes (bundled model) the way docs/deploy.md says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from deploy_support import ROOT, Balancer, Replica, cluster, free_port, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from client.api import stream_file
from client.connection import StreamResult

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
RESUME_KEY = "the key every replica of this test shares"
# Added to the image's command (the model comes from STREAMING_MODEL, as in a container).
REPLICA_ARGS = [
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
    # Streams survive a replica: every replica signs resume tokens with the same key.
    "--resume-key",
    RESUME_KEY,
    # Greedy finals: partials then commit words, and the resume tests check that none of
    # them is lost or repeated (with LM finals every partial word stays tentative).
    "--lm",
    "none",
]


@pytest.fixture(scope="module")
def balancer() -> Iterator[Balancer]:
    with cluster(REPLICA_ARGS) as running:
        assert wait_until(lambda: all(r.health()[0] == 200 for r in running.replicas))
        yield running


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample's first two sentences (7.6 s; the second from 3.1 s to 7.2 s)."""
    audio, rate = sf.read(ROOT / "streaming" / "assets" / "demo.wav", dtype="int16")
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    sf.write(path, audio[: int(7.6 * rate)], rate, subtype="PCM_16")
    return path


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


@contextlib.contextmanager
def nginx_in_front(replicas: list[Replica], tmp: Path) -> Iterator[str]:
    """The shipped nginx config, its upstream pointed at ``replicas``, as a process."""
    nginx = shutil.which("nginx") or pytest.fail("nginx is not installed (scripts/setup.sh)")
    port = free_port()
    site = (DEPLOY / "nginx" / "recognizer.conf").read_text()
    servers = "".join(f"    server {r.address} max_fails=2 fail_timeout=5s;\n" for r in replicas)
    site = re.sub(r"(    server 127\.0\.0\.1:800\d [^\n]*\n)+", servers, site)
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    (tmp / "recognizer.conf").write_text(site)
    (tmp / "nginx.conf").write_text(
        f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; include {tmp}/recognizer.conf; }}\n"
    )
    process = subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    try:
        assert wait_until(lambda: _listening(port)), (tmp / "error.log").read_text()
        yield f"ws://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


async def test_nginx_config_spreads_streams_and_skips_a_full_replica(
    balancer: Balancer, short_speech: Path, tmp_path: Path
) -> None:
    first, *others = balancer.replicas
    with nginx_in_front(list(balancer.replicas), tmp_path) as url:
        before = [r.sessions_total() for r in balancer.replicas]
        results = await asyncio.gather(
            *(stream_file(short_speech, url, speed=1.0) for _ in range(6))
        )
        assert all(r.ok and r.finals for r in results), [r.failure for r in results]
        taken = [r.sessions_total() - b for r, b in zip(balancer.replicas, before)]
        assert sum(taken) == 6 and sum(1 for n in taken if n) >= 2, taken
        held = [await connect(first.url) for _ in range(PER_REPLICA)]
        try:
            before = [r.sessions_total() for r in others]
            results = await asyncio.gather(
                *(stream_file(short_speech, url, speed=0) for _ in range(3))
            )
            assert all(r.ok for r in results), [r.failure for r in results]
            assert sum(r.sessions_total() - b for r, b in zip(others, before)) == 3
        finally:
            await asyncio.gather(*(ws.close() for ws in held))
    assert wait_until(lambda: all(r.health()[0] == 200 for r in balancer.replicas))


# -- streams that survive a replica ------------------------------------------------------


class Shown:
    """A client's screen: every message it was shown, in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def status(self, text: str) -> None:
        self.messages.append({"type": "status", "text": text})

    def before_the_drop(self) -> list[dict[str, Any]]:
        """The partials shown before the connection dropped."""
        drop = next(i for i, m in enumerate(self.messages) if "reconnecting" in m.get("text", ""))
        return [m for m in self.messages[:drop] if m["type"] == "partial"]

    def message(self, msg: dict[str, Any], t: float) -> None:
        self.messages.append(msg)

    def check_committed_text_never_changes(self, result: StreamResult) -> None:
        """Committed words, once shown, stay: each later partial of the utterance and its
        final start with them; no final is shown twice."""
        finals = {f["utterance_id"]: f for f in result.finals}
        assert len(finals) == len(result.finals), "a final was shown twice"
        assert sorted(finals) == list(range(len(finals))), "utterance ids have a gap"
        committed: dict[int, list[str]] = {}
        for msg in self.messages:
            if msg.get("type") != "partial":
                continue
            words = msg["committed"].split()
            before = committed.get(msg["utterance_id"], [])
            assert words[: len(before)] == before, (before, words)
            committed[msg["utterance_id"]] = words
        for uid, words in committed.items():
            if uid in finals:
                assert finals[uid]["text"].split()[: len(words)] == words, (words, finals[uid])
        starts = [w["start_ms"] for f in result.finals for w in f["words"]]
        assert starts == sorted(starts) and len(set(starts)) == len(starts), "a word came twice"


async def _streams_with(
    balancer: Balancer, path: Path, count: int, event: Callable[[], None], after_s: float
) -> tuple[list[StreamResult], list[Shown], list[float]]:
    """``count`` real-time file clients through the balancer; ``event`` happens
    ``after_s`` seconds in. Returns the results, what each showed, and how many
    sessions each replica took."""
    before = [r.sessions_total() for r in balancer.replicas]
    shown = [Shown() for _ in range(count)]
    clients = [
        asyncio.ensure_future(stream_file(path, balancer.url, speed=1.0, listener=s)) for s in shown
    ]
    await asyncio.sleep(after_s)
    event()
    results = await asyncio.gather(*clients)
    taken = [
        r.sessions_total() - b if r.process and r.process.poll() is None else -1.0
        for r, b in zip(balancer.replicas, before)
    ]
    return list(results), shown, taken


async def test_kill_9_of_a_replica_mid_utterance_every_client_resumes_elsewhere(
    balancer: Balancer, two_sentences: Path
) -> None:
    """Nine clients over three replicas; one replica is killed (SIGKILL) in the middle of
    the second sentence. Its clients reconnect through the balancer and resume on the
    others; every transcript equals that of the clients whose replica lived."""
    victim = balancer.replicas[0]
    assert victim.process is not None
    results, shown, _ = await _streams_with(
        balancer, two_sentences, 9, victim.process.kill, after_s=4.5
    )
    try:
        assert all(r.ok for r in results), [r.failure for r in results]
        resumed = [r for r in results if r.resumes]
        intact = [r for r in results if not r.resumes]
        assert resumed and intact, [len(r.resumes) for r in results]
        assert all(not r.resumes[0].get("new_stream_at") for r in resumed), resumed[0].resumes
        # The kill came inside the second sentence, after some of its words were committed.
        for result, screen in zip(results, shown):
            if result.resumes:
                last = screen.before_the_drop()[-1]
                assert last["utterance_id"] == 1 and last["committed"], last
        reference = intact[0].transcript
        assert "all the rest" in reference and "happiness" in reference, reference
        assert all(r.transcript == reference for r in results), [r.transcript for r in results]
        for result, screen in zip(results, shown):
            screen.check_committed_text_never_changes(result)
    finally:
        victim.restart()
    assert wait_until(lambda: all(r.health()[0] == 200 for r in balancer.replicas), 20)


async def test_sigterm_finalizes_the_replicas_utterances_and_its_clients_move(
    balancer: Balancer, two_sentences: Path, short_speech: Path
) -> None:
    """SIGTERM: the replica says "draining" at once, takes no new stream, finalizes its
    open utterances (reason "shutdown"), tells its clients to move, and exits; they
    resume elsewhere and finish. (Last in this module: the replica stays down.)"""
    draining = balancer.replicas[1]
    assert draining.process is not None
    results, shown, _ = await _streams_with(
        balancer, two_sentences, 6, draining.process.terminate, after_s=4.5
    )
    status, body = draining.health() if draining.process.poll() is None else (503, {})
    assert all(r.ok for r in results), [r.failure for r in results]
    moved = [r for r in results if r.resumes]
    assert moved, "the draining replica had clients"
    for result in moved:
        assert result.resumes[0]["reason"].startswith("moved"), result.resumes
        assert any(f["reason"] == "shutdown" and f["text"] for f in result.finals), result.finals
        assert result.finals[-1]["reason"] == "end"
    for result, screen in zip(results, shown):
        screen.check_committed_text_never_changes(result)
    assert draining.process.wait(30) == 0
    assert status == 503 or body == {}


async def test_a_draining_replica_gets_no_new_streams(
    balancer: Balancer, short_speech: Path
) -> None:
    """From the moment of SIGTERM (well within one health-check interval) a replica takes
    no new stream: it refuses them at admission (503, "draining") and the balancer retries
    them on the replicas that are up; then it exits cleanly."""
    replica, alive = balancer.replicas[2], balancer.replicas[0]
    assert replica.process is not None
    before = alive.sessions_total()
    replica.process.terminate()
    results = await asyncio.gather(
        *(stream_file(short_speech, balancer.url, speed=0) for _ in range(3))
    )
    assert all(r.ok for r in results), [r.failure for r in results]
    assert alive.sessions_total() - before == 3
    assert replica.process.wait(30) == 0
