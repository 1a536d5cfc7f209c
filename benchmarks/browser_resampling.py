"""Where should the browser page resample: in its AudioWorklet, or on the server?

The captions page captures at the device rate (usually 48 kHz) and can either convert to
the model's 16 kHz in its AudioWorklet (``?resample=worklet``, the default) or send the
device rate in a ``start`` message and let the server resample (``?resample=server``).
This measures both, on the same machine, in alternating rounds:

* end to end, in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright)
  against the real server with the bundled model, the fake microphone playing
  ``streaming/assets/demo.wav``: per-word partial and commit latency, computed by the page
  as the terminal client does (word's last sample sent → word shown / committed);
* the delay each converter adds by construction: the worklet's windowed-sinc half-width,
  and what soxr (the server's ``Resampler``) holds back of a stream of 100 ms chunks;
* the bytes each sends per second of audio.

    python -m benchmarks.browser_resampling --rounds 3

Prints one JSON object (and writes it with ``--out FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from streaming.audio import Resampler
from streaming.config import LmConfig, ModelConfig, ServerConfig
from streaming.server import Server

DEMO = Path(__file__).resolve().parent.parent / "streaming" / "assets" / "demo.wav"
MODES = ("worklet", "server")


def soxr_delay_ms(rate: int, out_rate: int = 16000, chunks: int = 40) -> float:
    """Audio the server's resampler holds back, mean over 100 ms chunks, in ms: after each
    chunk, the input so far minus the output so far (soxr keeps its filter's look-ahead
    and emits whole blocks, so this moves with the block alignment)."""
    resampler = Resampler(rate, out_rate)
    chunk = np.random.default_rng(0).standard_normal(rate // 10).astype(np.float32) * 0.1
    produced = 0
    held = []
    for i in range(1, chunks + 1):
        produced += len(resampler.process(chunk))
        held.append(i * 100.0 - produced * 1000.0 / out_rate)
    return float(np.mean(held))


def soxr_cost_us(rate: int, out_rate: int = 16000, chunks: int = 200) -> float:
    """CPU time the server spends resampling one 100 ms chunk, in microseconds."""
    resampler = Resampler(rate, out_rate)
    chunk = np.random.default_rng(0).standard_normal(rate // 10).astype(np.float32) * 0.1
    start = time.perf_counter()
    for _ in range(chunks):
        resampler.process(chunk)
    return (time.perf_counter() - start) / chunks * 1e6


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank, as client/latency.py."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, int(np.ceil(p / 100 * len(ordered)))) - 1], 1)


async def one_round(browser: Any, url: str, mode: str, seconds: float) -> dict[str, Any]:
    page = await browser.new_page()
    await page.goto(f"{url}?resample={mode}")
    await page.click("#mic")
    await page.wait_for_function("() => window.captions.input !== undefined", timeout=30_000)
    await asyncio.sleep(seconds)
    data: dict[str, Any] = await page.evaluate(
        """() => ({
            input: window.captions.input,
            finals: window.captions.finals.length,
            partial: window.captions.stream.trackers.flatMap((t) => t.partialLatencies()),
            commit: window.captions.stream.trackers.flatMap((t) => t.commitLatencies()),
            final: window.captions.stream.trackers.flatMap((t) => t.finalLatencies()),
        })"""
    )
    data["worklet_delay_ms"] = await page.evaluate(
        """async (rate) => {
            const { Resampler } = await import(new URL("resample.js", document.baseURI));
            return new Resampler(rate, 16000).delayMs;
        }""",
        data["input"]["deviceRate"],
    )
    await page.close()
    return data


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    # Greedy finals, so that partials commit words as they go (LM finals commit only with
    # the final, which would make commit latency the final's).
    config = ServerConfig(
        host="127.0.0.1", port=0, model=ModelConfig(name=args.model), lm=LmConfig(path="none")
    )
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={DEMO}%noloop",
    ]
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}

    async def run_rounds(url: str) -> None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=args.chromium, args=flags)
            for _ in range(args.rounds):
                for mode in MODES:
                    rounds[mode].append(await one_round(browser, url, mode, args.seconds))
            await browser.close()

    if args.url:
        await run_rounds(args.url)
    else:
        async with Server(config) as server:
            await run_rounds(server.url.replace("ws", "http", 1))
    result: dict[str, Any] = {"rounds": args.rounds, "model": args.model, "modes": {}}
    for mode, runs in rounds.items():
        partial = [v for r in runs for v in r["partial"]]
        commit = [v for r in runs for v in r["commit"]]
        final = [v for r in runs for v in r["final"]]
        device_rate = runs[0]["input"]["deviceRate"]
        sent_rate = runs[0]["input"]["sentRate"]
        result["modes"][mode] = {
            "device_rate": device_rate,
            "sent_rate": sent_rate,
            "upload_kbit_s": sent_rate * 16 / 1000,
            "finals": [r["finals"] for r in runs],
            "words": len(commit),
            "partial_ms": {"p50": percentile(partial, 50), "p95": percentile(partial, 95)},
            "commit_ms": {"p50": percentile(commit, 50), "p95": percentile(commit, 95)},
            "final_ms": {"p50": percentile(final, 50), "p95": percentile(final, 95)},
            "round_commit_p50_ms": [percentile(r["commit"], 50) for r in runs],
            "converter_delay_ms": (
                round(runs[0]["worklet_delay_ms"], 2)
                if mode == "worklet"
                else round(soxr_delay_ms(device_rate), 2)
            ),
            "server_resample_us_per_100ms": (
                round(soxr_cost_us(device_rate), 1) if mode == "server" else 0.0
            ),
        }
    w, s = (result["modes"][m]["commit_ms"]["p50"] for m in MODES)
    result["commit_p50_difference_ms"] = None if w is None or s is None else round(s - w, 1)
    result["median_round_difference_ms"] = round(
        statistics.median(
            (b or 0) - (a or 0)
            for a, b in zip(
                result["modes"]["worklet"]["round_commit_p50_ms"],
                result["modes"]["server"]["round_commit_p50_ms"],
            )
        ),
        1,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode (alternating)")
    parser.add_argument("--seconds", type=float, default=15.0, help="listening time per round")
    parser.add_argument("--model", default="tiny-en")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--url", help="page of a running server (default: start one here)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
