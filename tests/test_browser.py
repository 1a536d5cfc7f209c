"""The captions page in a real headless Chromium, against the real server and bundled model.

Chromium's fake microphone plays ``streaming/assets/demo.wav`` (three sentences, text in
``demo.json``) to every page that opens it, after 1.5 s of silence. One browser serves every
test of the module (the machine has two cores). Screenshots go to the test's tmp dir, and also to
``$BROWSER_SCREENSHOTS`` when set (``BROWSER_SCREENSHOTS=docs/images`` refreshes the
README's ``browser-captions.png``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from browser_support import SCREENSHOT_ENV, ServerThread, chromium_path
from compat_support import cer
from test_golden_wire import golden_config
from test_resume_client import Proxy
from tls_support import server_certificate
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from client.captions import sanitize, timestamp_prefix
from client.subtitles import to_srt, to_vtt
from streaming.config import LmConfig, ModelConfig, ServerConfig
from streaming.model import LoadedModel, load_model
from streaming.page import is_page_path, is_websocket_upgrade, origin_allowed, page_response

try:
    from playwright import sync_api as playwright
except ImportError:  # the test extra has it; CI must not pass by skipping
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright is not installed (pip install -e .[test])", allow_module_level=True)

ASSETS = Path(__file__).resolve().parent.parent / "streaming" / "assets"
DEMO_WAV = ASSETS / "demo.wav"
SENTENCES = [s["text"] for s in json.loads((ASSETS / "demo.json").read_text())["sentences"]]
TIMEOUT_MS = 60_000
LEAD_S = 1.5
LOW_CONFIDENCE = 0.9  # transcript.js
#: Words of mixed lengths for a long utterance, and one with the WebVTT arrow in it.
LOREM = [*(("w" * (1 + i % 9)) + str(i) for i in range(19)), "a-->b"]


# ---- the page as HTTP (no browser) ------------------------------------------------------


def test_page_is_answered_at_the_root_and_under_app_with_revalidation() -> None:
    for path in ("/", "/?overlay=1&token=x", "/app", "/app/", "/app/index.html"):
        page = page_response(path)
        assert page is not None and page.status == HTTPStatus.OK, path
        assert page.content_type.startswith("text/html")
        assert b'type="module"' in page.body
        headers = dict(page.headers)
        assert headers["Cache-Control"] == "no-cache"
        assert "Content-Security-Policy" in headers
    # Files resolve from "/" via <base href="app/">, from "/app/" beside the page.
    assert b'<base href="app/">' in page_response("/").body  # type: ignore[union-attr]
    assert b'<base href="./">' in page_response("/app/").body  # type: ignore[union-attr]
    script = page_response("/app/app.js")
    assert script is not None and script.content_type.startswith("text/javascript")
    etag = dict(script.headers)["ETag"]
    again = page_response("/app/app.js", if_none_match=etag)
    assert again is not None and again.status == HTTPStatus.NOT_MODIFIED and again.body == b""


def test_page_refuses_other_files_and_path_traversal() -> None:
    for path in (
        "/app/missing.js",
        "/app/../server.py",
        "/app/..%2fserver.py",
        "/app/%2e%2e/page.py",
        "/app/.hidden.js",
        "/app/sub/app.js",
        "/app/app.py",
        "/app/app.js/",
    ):
        page = page_response(path)
        assert page is not None and page.status == HTTPStatus.NOT_FOUND, path
    # Not the page's: left to the protocol endpoints and /health, /metrics.
    for path in ("/v1/stream", "/health", "/metrics", "/apple"):
        assert not is_page_path(path) and page_response(path) is None
    assert is_websocket_upgrade({"Upgrade": "WebSocket"})
    assert not is_websocket_upgrade({})


def test_origin_rule_allows_the_servers_own_page_when_a_list_is_configured() -> None:
    assert origin_allowed("https://evil.example", "127.0.0.1:8765", ())  # no list: any
    listed = ("https://captions.example",)
    assert origin_allowed("https://captions.example", "127.0.0.1:8765", listed)
    assert origin_allowed(None, "127.0.0.1:8765", listed)  # not a browser
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", listed)  # its own page
    assert origin_allowed("https://asr.example", "ASR.example", listed)  # default port
    assert origin_allowed("http://[::1]:9000", "[::1]:9000", listed)
    assert not origin_allowed("https://evil.example", "127.0.0.1:8765", listed)
    assert not origin_allowed("http://127.0.0.1:8766", "127.0.0.1:8765", listed)
    assert not origin_allowed("null", "127.0.0.1:8765", listed)
    assert not origin_allowed("http://127.0.0.1:8765", None, listed)


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(ModelConfig(name="tiny-en"), threads=1)


def config(**changes: Any) -> ServerConfig:
    base = ServerConfig(host="127.0.0.1", port=0, model=ModelConfig(name="tiny-en"))
    return base.replace(**changes)


@pytest.fixture(scope="module")
def page_server(bundled: LoadedModel) -> Iterator[ServerThread]:
    with ServerThread(config(), bundled) as server:
        yield server


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo.wav after 1.5 s of silence: Chromium starts playing the file when a page opens
    the microphone, and the page needs a moment to connect its worklet."""
    audio, rate = soundfile.read(DEMO_WAV, dtype="int16")
    path = tmp_path_factory.mktemp("audio") / "fake-microphone.wav"
    soundfile.write(path, np.concatenate([np.zeros(int(rate * LEAD_S), np.int16), audio]), rate)
    return path


@pytest.fixture(scope="module")
def browser(fake_microphone: Path) -> Iterator[Any]:
    executable = chromium_path()
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=executable,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_microphone}%noloop",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Screenshots taken (tmp dir); copied to $BROWSER_SCREENSHOTS at the end when set."""
    taken: list[Path] = []
    yield taken
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copy(path, Path(target) / path.name)


def screenshot(page: Any, shots: list[Path], tmp: Path, name: str, **options: Any) -> None:
    path = tmp / name
    page.screenshot(path=str(path), **options)
    shots.append(path)


def open_page(browser: Any, url: str, **options: Any) -> Any:
    page = browser.new_page(**options)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(url)
    return page


COMMITTED_JS = """() => [...document.querySelectorAll('.utt')]
    .map((p) => p.querySelector('span').textContent).join(' ')"""


#: Words of the open (live) paragraph, committed ones (true) or tentative ones (false).
OPEN_WORDS_JS = """(committed) => {
    const open = document.querySelector('.utt.open');
    const part = open?.querySelector(committed ? 'span:not(.tentative)' : '.tentative');
    return (part?.textContent.trim().split(' ') || []).filter(Boolean).length; }"""


def committed_text(page: Any) -> str:
    """The committed words of every paragraph on the page."""
    return str(page.evaluate(COMMITTED_JS))


def heard(text: str, sentences: list[str]) -> tuple[set[str], set[str]]:
    """Words of 4+ letters of `sentences`, and those found in `text` (spaces ignored: the
    model sometimes runs two words together)."""
    words = {w for s in sentences for w in s.split() if len(w) >= 4}
    squeezed = text.replace(" ", "")
    return words, {w for w in words if w in squeezed}


def wait_finals(page: Any, count: int, timeout: float = TIMEOUT_MS) -> None:
    page.wait_for_function(f"() => window.captions.finals.length >= {count}", timeout=timeout)


# ---- the page in Chromium ------------------------------------------------------------------


def test_microphone_captions_commit_the_spoken_words_with_a_final_per_utterance_and_overlay(
    browser: Any, page_server: ServerThread, shots: list[Path], tmp_path: Path
) -> None:
    url = page_server.http_url
    page = open_page(browser, url, viewport={"width": 960, "height": 600})
    # The overlay streams the same microphone at the same time (two streams, one server).
    overlay = open_page(browser, url + "?overlay=1", viewport={"width": 1280, "height": 300})
    page.get_by_role("button", name="Start microphone").click()
    # Two utterances done, the third being spoken. The server's default (LM finals, where
    # pyctcdecode is installed) commits words only with the final: every live word tentative.
    page.wait_for_function(
        f"() => window.captions.finals.length >= 2 && ({OPEN_WORDS_JS})(false) >= 2",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_timeout(150)  # let the level meter's transition settle
    screenshot(page, shots, tmp_path, "browser-live.png")
    wait_finals(page, len(SENTENCES))

    finals = page.evaluate("() => window.captions.finals")
    assert len(finals) == len(SENTENCES)
    assert [f["utterance_id"] for f in finals] == list(range(len(SENTENCES)))
    paragraphs = page.locator(".utt.final")
    assert paragraphs.count() == len(SENTENCES)
    for i, final in enumerate(finals):
        # Thresholds well above what the model scores (test_bundled_model.py's reasoning).
        assert cer(final["text"], SENTENCES[i]) <= 0.45, (final["text"], SENTENCES[i])
        assert paragraphs.nth(i).locator("time").inner_text().startswith("0:")
    text = committed_text(page)
    words, found = heard(text, SENTENCES)
    assert 2 * len(found) >= len(words), f"heard {sorted(found)} in {text!r}"
    assert page.locator(".utt .tentative").all_inner_texts() == ["", "", ""]
    # Low-confidence words are marked, by the final's confidences.
    low = [w["word"] for f in finals for w in f["words"] if w["conf"] < LOW_CONFIDENCE]
    assert page.locator(".utt.final .low").all_inner_texts() == low
    # Screen readers get the committed words; the latency panel has numbers.
    assert finals[-1]["words"][-1]["word"] in page.locator("#announce").inner_text()
    assert int(page.locator("#lat-commit-n").inner_text()) >= len(words) // 2
    assert page.locator("#lat-commit-p50").inner_text().isdigit()
    assert page.evaluate("() => window.captions.input.sentRate") == 16000
    assert page.errors == []

    # The overlay: transparent, large type, the last two lines only, no controls.
    wait_finals(overlay, len(SENTENCES))
    assert overlay.evaluate("() => document.documentElement.classList.contains('overlay')")
    style = overlay.evaluate(
        """() => { const t = document.getElementById('transcript'); const s = getComputedStyle(t);
        return { body: getComputedStyle(document.body).backgroundColor, html:
        getComputedStyle(document.documentElement).backgroundColor, size: parseFloat(s.fontSize),
        line: parseFloat(s.lineHeight), height: t.clientHeight, mic:
        document.getElementById('mic').offsetParent === null }; }"""
    )
    assert style["body"] == style["html"] == "rgba(0, 0, 0, 0)"
    assert style["size"] >= 40
    assert style["height"] == pytest.approx(2 * style["line"], abs=2)  # two lines
    assert style["mic"], "the controls are hidden in the overlay"
    assert overlay.locator("#transcript").inner_text().strip()
    screenshot(overlay, shots, tmp_path, "browser-overlay.png", omit_background=True)
    assert overlay.errors == []
    page.get_by_role("button", name="Stop microphone").click()
    page.close()
    overlay.close()


def test_file_is_streamed_and_exports_match_the_terminal_clients_formats(
    browser: Any, page_server: ServerThread, shots: list[Path], tmp_path: Path
) -> None:
    page = open_page(browser, page_server.http_url + "app/", viewport={"width": 390, "height": 760})
    page.select_option("#speed", "4")
    page.set_input_files("#file", str(DEMO_WAV))
    wait_finals(page, len(SENTENCES))
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'idle'")
    screenshot(page, shots, tmp_path, "browser-file-phone.png")
    finals = page.evaluate("() => window.captions.finals")
    words, found = heard(" ".join(f["text"] for f in finals), SENTENCES)
    assert 2 * len(found) >= len(words), f"heard {sorted(found)}"

    def download(fmt: str) -> str:
        with page.expect_download() as info:
            page.click(f"[data-format={fmt}]")
        return Path(info.value.path()).read_text(encoding="utf-8")

    # One stream from 0: the page's times are the server's.
    assert download("srt") == to_srt(finals)
    assert download("vtt") == to_vtt(finals)
    expected_txt = "".join(
        timestamp_prefix(f["start_ms"], f["end_ms"]) + sanitize(f["text"]) + "\n" for f in finals
    )
    assert download("txt") == expected_txt
    # The formats' corners: a long utterance split at word times, "-->" and control characters.
    words_long: list[dict[str, Any]] = [
        {"word": w, "start_ms": 1000 + 300 * i, "end_ms": 1250 + 300 * i, "conf": 0.9}
        for i, w in enumerate(LOREM)
    ]
    tricky: list[dict[str, Any]] = [
        {
            "text": " ".join(w["word"] for w in words_long),
            "start_ms": 950,
            "end_ms": 7200,
            "words": words_long,
        },
        {"text": "tab\there\x07 bell", "start_ms": 3_723_456, "end_ms": 3_724_050, "words": []},
    ]
    exported = page.evaluate(
        """async (finals) => { const m = await import(new URL('transcript.js', document.baseURI));
        return [m.toSrt(finals), m.toVtt(finals), m.toTxt(finals)]; }""",
        tricky,
    )
    assert exported[0] == to_srt(tricky)
    assert exported[1] == to_vtt(tricky)
    assert exported[2] == "".join(
        timestamp_prefix(f["start_ms"], f["end_ms"]) + sanitize(str(f["text"])) + "\n"
        for f in tricky
    )
    assert page.errors == []
    page.close()


RESAMPLER_JS = """async ([inRate, freq]) => {
    const { Resampler } = await import(new URL('resample.js', document.baseURI));
    const r = new Resampler(inRate, 16000);
    const out = [];
    for (let block = 0; block < 40; block++) {  // 40 blocks of 128 frames, as the worklet
        const x = new Float32Array(128);
        const t0 = block * 128;
        for (let i = 0; i < 128; i++) x[i] = Math.sin((2 * Math.PI * freq * (t0 + i)) / inRate);
        out.push(...r.process(x));
    }
    const steady = out.slice(out.length / 2);
    const rms = Math.sqrt(steady.reduce((a, v) => a + v * v, 0) / steady.length);
    return { produced: out.length, rms, delayMs: r.delayMs };
}"""


def test_worklet_resampler_keeps_speech_and_rejects_what_would_alias(
    browser: Any, page_server: ServerThread
) -> None:
    page = open_page(browser, page_server.http_url)
    for rate in (44100, 48000):
        speech = page.evaluate(RESAMPLER_JS, [rate, 1000])
        alias = page.evaluate(RESAMPLER_JS, [rate, 11000])  # above 8 kHz: would fold to 5 kHz
        # Every input sample accounted for, less the converter's 1 ms look-ahead.
        expected = 40 * 128 * 16000 / rate - 16
        assert abs(speech["produced"] - expected) <= 2
        assert speech["delayMs"] == pytest.approx(1.0, abs=0.05)
        assert speech["rms"] == pytest.approx(0.5**0.5, rel=0.02)  # a sine's RMS, kept
        assert alias["rms"] < 0.01 * speech["rms"]  # -40 dB or better
    page.close()


def test_wrong_token_and_a_full_server_are_explained_and_the_page_recovers(
    browser: Any, bundled: LoadedModel, shots: list[Path], tmp_path: Path
) -> None:
    settings = config(
        auth_tokens=("open-sesame",),
        max_sessions=1,
        model=ModelConfig(name="tiny-en", warmup=False),
    )
    with ServerThread(settings, bundled) as server:
        status, _ = http_get(server.http_url)  # the page itself needs no token
        assert status == 200
        page = open_page(browser, server.http_url + "?token=wrong")
        page.click("#mic")
        problem = page.locator("#problem")
        problem.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert problem.get_attribute("data-kind") == "token"
        assert "access token" in problem.inner_text()
        assert page.locator("#state").get_attribute("data-state") == "failed"
        screenshot(page, shots, tmp_path, "browser-wrong-token.png")
        page.fill("#token", "open-sesame")  # the message opened the token field
        page.click("#mic")
        page.wait_for_function("() => document.getElementById('state').dataset.state === 'live'")
        assert problem.is_hidden()

        # A second page finds the one session in use: it says so and waits its turn.
        second = open_page(browser, server.http_url + "?token=open-sesame")
        second.click("#mic")
        second.wait_for_function(
            "() => window.captions.problems.some((p) => p.kind === 'full')", timeout=TIMEOUT_MS
        )
        assert "server is full" in second.locator("#problem").inner_text()
        assert "1 sessions in use" in second.locator("#problem").inner_text()
        page.close()
        second.wait_for_function(
            "() => document.getElementById('state').dataset.state === 'live'", timeout=TIMEOUT_MS
        )
        second.close()


def test_missing_microphone_is_explained(browser: Any, page_server: ServerThread) -> None:
    page = open_page(browser, page_server.http_url)
    page.wait_for_function("() => window.captions.devicesListed")
    page.evaluate(
        """() => { const select = document.getElementById('device');
        select.append(new Option('unplugged', 'gone')); select.value = 'gone'; }"""
    )
    page.click("#mic")
    problem = page.locator("#problem")
    problem.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert problem.get_attribute("data-kind") == "no_mic"
    assert "No microphone was found" in problem.inner_text()
    assert page.get_by_role("button", name="Start microphone").is_visible()
    page.close()


def test_dropped_connection_and_stopped_server_are_explained_and_the_transcript_is_kept(
    browser: Any, bundled: LoadedModel, shots: list[Path], tmp_path: Path
) -> None:
    # Greedy finals: partials commit words as they go (the LM would hold them to the final).
    settings = config(
        model=ModelConfig(name="tiny-en", warmup=False),
        lm=LmConfig(path="none"),
        shutdown_grace_s=2.0,
    )
    with ServerThread(settings, bundled) as server:
        page = open_page(browser, server.http_url, viewport={"width": 960, "height": 600})
        page.click("#mic")
        # Mid-utterance, committed words solid and a tentative tail: the README's picture.
        page.wait_for_function(
            f"() => window.captions.finals.length >= 2 && ({OPEN_WORDS_JS})(true) >= 2"
            f" && ({OPEN_WORDS_JS})(false) >= 2",
            timeout=TIMEOUT_MS,
        )
        page.wait_for_timeout(150)  # let the level meter's transition settle
        screenshot(page, shots, tmp_path, "browser-captions.png")
        assert (
            page.locator(".utt.open .tentative").evaluate("(el) => getComputedStyle(el).fontStyle")
            == "italic"
        )
        # Then the network drops the connection.
        server.call(abort_connections(server))
        problem = page.locator("#problem")
        page.wait_for_function(
            "() => window.captions.problems.some((p) => p.kind === 'dropped')",
            timeout=TIMEOUT_MS,
        )
        # It reconnects by itself and resumes the stream (the server's own key): the words
        # shown stay, and the unfinished sentence goes on in place, each final once.
        wait_finals(page, len(SENTENCES))
        assert page.locator(".utt.interrupted").count() == 0
        finals = page.evaluate("() => window.captions.finals")
        assert [f["utterance_id"] for f in finals] == list(range(len(SENTENCES)))
        resumes = page.evaluate("() => window.captions.stream.resumes")
        assert len(resumes) == 1 and resumes[0]["offset"] > 0, resumes
        assert cer(finals[2]["text"], SENTENCES[2]) <= 0.45, finals[2]["text"]
        assert committed_text(page).count(finals[0]["text"]) == 1
        starts = [p["start_ms"] for p in page.evaluate("() => window.captions.transcript.finals()")]
        # One clock across streams: the third sentence starts at 8.08 s of the file.
        assert starts == sorted(starts) and starts[-1] > 7000 + LEAD_S * 1000

        # The server stops: the page says so, retries, and keeps every word it showed.
        before = committed_text(page)
        server.stop()
        page.wait_for_function(
            "() => window.captions.problems.some((p) => p.kind === 'unreachable')",
            timeout=TIMEOUT_MS,
        )
        assert "Cannot reach the recognizer" in problem.inner_text()
        # It moved the stream (`moved` on drain) and keeps trying to resume it.
        assert page.locator("#state").get_attribute("data-state") == "reconnecting"
        assert page.locator("#state").inner_text().startswith("Reconnecting…")
        assert "moved" in [p["kind"] for p in page.evaluate("() => window.captions.problems")]
        assert committed_text(page) == before
        screenshot(page, shots, tmp_path, "browser-server-stopped.png")
        page.close()


def test_page_over_tls_streams_over_wss_and_its_own_origin_passes_an_allow_list(
    browser: Any, bundled: LoadedModel, tmp_path: Path
) -> None:
    ca, cert_file, key_file = server_certificate(tmp_path)
    settings = config(
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        allowed_origins=("https://captions.example",),
        model=ModelConfig(name="tiny-en", warmup=False),
    )
    with ServerThread(settings, bundled) as server:
        assert server.http_url.startswith("https://")
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(server.http_url)
        page.select_option("#speed", "10")
        page.set_input_files("#file", str(DEMO_WAV))
        wait_finals(page, len(SENTENCES))
        context.close()
        # Other pages still need the list (the server's own origin is its scheme, host, port).
        tls = ssl.create_default_context()
        ca.configure_trust(tls)
        url = server.http_url.replace("https://", "wss://") + "v1/stream"
        with ws_connect(url, ssl=tls, origin=Origin(server.http_url.rstrip("/"))) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url, ssl=tls, origin=Origin("https://evil.example"))
        assert refused.value.response.status_code == HTTPStatus.FORBIDDEN


async def abort_connections(server: ServerThread) -> None:
    """Cut every websocket's TCP connection, as a network failure would (no close frame)."""
    assert server.server is not None and server.server._ws is not None
    for connection in list(server.server._ws.connections):
        connection.transport.abort()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---- session resume (docs/protocol.md "Resume") ----------------------------------------------

RESUME_KEY = "a shared resume key for the browser tests"
RESUME_SPEED = "2"


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's first two sentences (7.6 s): a cut in the second leaves one to finish."""
    audio, rate = soundfile.read(DEMO_WAV, dtype="int16")
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    soundfile.write(path, audio[: int(7.6 * rate)], rate, subtype="PCM_16")
    return path


def resume_config(key: str = RESUME_KEY) -> ServerConfig:
    """The golden wire's settings (greedy finals: words commit as they go) and a resume key."""
    return golden_config(resume_key=key, model=ModelConfig(name="tiny-en", warmup=False))


@contextlib.contextmanager
def behind_proxy(
    bundled: LoadedModel, second_key: str = RESUME_KEY
) -> Iterator[tuple[ServerThread, ServerThread, Proxy]]:
    """Two servers and a TCP proxy to the first (run on the second's loop), as a balancer."""
    with (
        ServerThread(resume_config(), bundled) as first,
        ServerThread(resume_config(second_key), bundled) as second,
    ):
        assert first.server is not None
        proxy = Proxy(first.server.port)
        second.call(proxy.start())
        try:
            yield first, second, proxy
        finally:
            second.call(proxy.stop())


def repoint(proxy: Proxy, via: ServerThread, to: ServerThread, cut: bool) -> None:
    """New connections go to `to`; with `cut`, the open ones drop without a close frame."""
    assert to.server is not None
    port = to.server.port

    async def apply() -> None:
        if cut:
            proxy.cut(port)
        else:
            proxy.target = port

    via.call(apply())


def stream_file(page: Any, path: Path) -> None:
    page.select_option("#speed", RESUME_SPEED)
    page.set_input_files("#file", str(path))


#: Mid-utterance: one final shown and committed words of the next one on screen.
MID_SECOND_JS = f"() => window.captions.finals.length >= 1 && ({OPEN_WORDS_JS})(true) >= 2"
FINAL_TEXTS_JS = "() => window.captions.finals.map((f) => f.text)"
WORD_TIMES_JS = "() => window.captions.finals.flatMap((f) => f.words.map((w) => w.start_ms))"


def check_shown_once(page: Any) -> list[dict[str, Any]]:
    """Finals once each, ids 0, 1, …, word times rising; nothing interrupted left over."""
    finals: list[dict[str, Any]] = page.evaluate("() => window.captions.finals")
    assert [f["utterance_id"] for f in finals] == list(range(len(finals)))
    starts = [w["start_ms"] for f in finals for w in f["words"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), starts
    assert page.locator(".utt.interrupted").count() == 0
    assert page.locator(".utt.final").count() == len(finals)
    assert committed_text(page) == " ".join(f["text"] for f in finals)
    assert page.errors == []
    return finals


def wait_idle(page: Any) -> None:
    page.wait_for_function(
        "() => document.getElementById('state').dataset.state === 'idle'", timeout=TIMEOUT_MS
    )


def test_a_cut_stream_resumes_on_another_server_with_the_uncut_transcript(
    browser: Any, bundled: LoadedModel, two_sentences: Path
) -> None:
    with behind_proxy(bundled) as (_, second, proxy):
        url = f"http://127.0.0.1:{proxy.port}/"
        uncut = open_page(browser, url)
        stream_file(uncut, two_sentences)
        wait_idle(uncut)
        expected = uncut.evaluate(FINAL_TEXTS_JS)
        assert len(expected) == 2 and all(expected), expected
        uncut_times = uncut.evaluate(WORD_TIMES_JS)
        uncut.close()

        page = open_page(browser, url)
        stream_file(page, two_sentences)
        page.wait_for_function(MID_SECOND_JS, timeout=TIMEOUT_MS)
        shown = committed_text(page)
        repoint(proxy, second, second, cut=True)  # the replica dies; the balancer has another
        page.wait_for_function(
            "() => document.getElementById('state').dataset.state === 'reconnecting'"
            " || window.captions.stream.resumes.length > 0",
            timeout=TIMEOUT_MS,
        )
        assert committed_text(page).startswith(shown)  # nothing cleared while reconnecting
        wait_idle(page)
        assert page.evaluate(FINAL_TEXTS_JS) == expected
        # Times continue the stream's own: each word where the uncut run put it (a replay
        # read in catch-up windows may move one by a frame, docs/protocol.md).
        times = page.evaluate(WORD_TIMES_JS)
        assert len(times) == len(uncut_times)
        assert all(abs(a - b) <= 40 for a, b in zip(times, uncut_times, strict=True)), times
        check_shown_once(page)
        resumes = page.evaluate("() => window.captions.stream.resumes")
        assert len(resumes) == 1 and resumes[0]["reason"] == "dropped", resumes
        assert resumes[0]["offset"] > 0 and "newStreamAt" not in resumes[0]
        assert [p["kind"] for p in page.evaluate("() => window.captions.problems")] == ["dropped"]
        assert page.locator("#problem").is_hidden()  # live again: the message went
        page.close()


def test_a_draining_server_moves_the_page_to_another_which_finishes_the_stream(
    browser: Any, bundled: LoadedModel, two_sentences: Path
) -> None:
    with behind_proxy(bundled) as (first, second, proxy):
        page = open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        stream_file(page, two_sentences)
        page.wait_for_function(MID_SECOND_JS, timeout=TIMEOUT_MS)
        repoint(proxy, second, second, cut=False)  # the balancer stops sending it streams
        first.stop()  # SIGTERM: finals first, then `moved` and close 1012
        wait_idle(page)
        finals = check_shown_once(page)
        assert finals[1]["reason"] == "shutdown"  # finalized by the draining server
        assert len(finals) >= 3  # … and the rest of the sentence on the second
        kinds = [p["kind"] for p in page.evaluate("() => window.captions.problems")]
        assert kinds == ["moved"], kinds
        resumes = page.evaluate("() => window.captions.stream.resumes")
        assert [r["reason"] for r in resumes] == ["moved"] and "offset" in resumes[0]
        assert "happiness" in committed_text(page)
        page.close()


def test_a_refused_resume_is_explained_and_goes_on_as_a_new_stream_keeping_the_transcript(
    browser: Any, bundled: LoadedModel, two_sentences: Path
) -> None:
    with behind_proxy(bundled, second_key="another key, not the first server's") as servers:
        _, second, proxy = servers
        page = open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        stream_file(page, two_sentences)
        page.wait_for_function(MID_SECOND_JS, timeout=TIMEOUT_MS)
        shown = committed_text(page)
        repoint(proxy, second, second, cut=True)
        wait_idle(page)
        problem = page.locator("#problem")
        assert problem.get_attribute("data-kind") == "resume_rejected"
        assert "could not resume" in problem.inner_text()
        assert "new stream" in problem.inner_text()
        resumes = page.evaluate("() => window.captions.stream.resumes")
        assert resumes[0]["refused"] == "unknown_key" and resumes[1]["newStreamAt"] > 0
        finals = check_shown_once(page)
        assert committed_text(page).startswith(shown.rsplit(" ", 1)[0])
        assert "all the rest" in finals[0]["text"] and "happiness" in committed_text(page)
        page.close()


#: The page's Stream against a server from before resume (it refuses the `resume` field of
#: `start`, as native_format.py did): one in-page stand-in for WebSocket, to test the
#: fallback in isolation. Then the bound on kept audio, without any connection.
OLD_SERVER_JS = """async () => {
    const { Stream } = await import(new URL('connection.js', document.baseURI));
    const log = [];
    class OldServer {
        static OPEN = 1;
        constructor() {
            this.readyState = 0;
            this.bufferedAmount = 0;
            setTimeout(() => {
                this.readyState = 1;
                this.onopen?.();
                this.reply({ type: 'ready' });
            });
        }
        reply(m) { setTimeout(() => this.onmessage?.({ data: JSON.stringify(m) })); }
        send(d) {
            if (typeof d !== 'string') return log.push(d.length);
            const m = JSON.parse(d);
            log.push(m);
            if (m.type === 'start' && 'resume' in m) this.reply({ type: 'error',
                code: 'invalid_field', message: "start has unknown fields ['resume']",
                fatal: false });
            else if (m.type === 'start') this.reply({ type: 'started' });
            else if (m.type === 'end') {
                this.reply({ type: 'final', utterance_id: 0, text: 'hi', start_ms: 0,
                    end_ms: 100, words: [] });
                setTimeout(() => { this.readyState = 3; this.onclose?.({ code: 1000 }); }, 20);
            }
        }
        close() {}
    }
    const real = window.WebSocket;
    window.WebSocket = OldServer;
    const finals = [];
    try {
        await new Promise((done) => {
            const s = new Stream({ id: 'old', baseURI: document.baseURI, token: '', rate: 16000,
                hooks: { onMessage: (m) => m.type === 'final' && finals.push(m), onState() {},
                    onProblem() {}, onInterrupted() {}, onDone: done } });
            s.start();
            s.push(new Int16Array(1600));
            s.finish();
        });
    } finally { window.WebSocket = real; }
    const problems = [];
    const bounded = new Stream({ id: 'bound', baseURI: document.baseURI, token: '', rate: 16000,
        maxKeptMs: 1000, hooks: { onProblem: (kind) => problems.push(kind) } });
    bounded.resumable = true;  // the server acknowledges, but not this audio
    for (let i = 0; i < 20; i++) bounded.push(new Int16Array(1600));
    return { log, finals, problems, keptFrom: bounded.keptFrom, droppedMs: bounded.droppedMs };
}"""


def test_a_server_from_before_resume_gets_a_plain_start_and_kept_audio_is_bounded(
    browser: Any, page_server: ServerThread
) -> None:
    page = open_page(browser, page_server.http_url)
    result = page.evaluate(OLD_SERVER_JS)
    starts = [m for m in result["log"] if isinstance(m, dict) and m["type"] == "start"]
    assert [s.get("resume") for s in starts] == [True, None]  # asked, refused, plain start
    assert result["log"][2:] == [1600, {"type": "end"}]
    assert [f["text"] for f in result["finals"]] == ["hi"]
    # 2 s pushed, 1 s kept at most: the oldest second is gone, and the page says so once.
    assert result["keptFrom"] == 16000 and result["droppedMs"] == 1000
    assert result["problems"] == ["resume_gap"]
    page.close()
