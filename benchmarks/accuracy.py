"""Accuracy: streaming final text vs offline decoding vs the Hugging Face ASR pipeline.

For each window setting (chunk = hop, left and right context), every held-out test
utterance (training voices, sentences never trained on; 0.5 s of silence before, 1 s after)
goes through the pure ``streaming.session.Session`` — the exact code the server runs —
in simulated real time (100 ms chunks, every due window run at once), and its finals are
scored against the reference. The same audio is decoded

* offline: one model call over the whole utterance, greedy CTC (the reference point:
  target streaming WER ≤ 1.02 × offline WER);
* by ``transformers.pipeline("automatic-speech-recognition", chunk_length_s=L+C+R,
  stride_length_s=(L, R))``: Hugging Face's own chunked decoding with the same context.

Stability: ``retracted`` = words shown as tentative that never became committed (per
committed word); ``changes`` = displayed words rewritten by a later partial (per committed
word). Latency columns are algorithmic (zero model time: the window plan alone, simulated
clock); ``cost`` = audio the model reads per second of speech (window overlap).

One server-level run checks that the real server (separate process, real-time clients)
gives the same text as the simulated Session for the default setting.

The script recommends a default: the lowest-latency setting whose WER ≤ 1.02 × offline
and whose cost ≤ ``--max-cost``.

    python -m benchmarks.accuracy                      # tiny-en, 40 utterances, 9 settings
    python -m benchmarks.accuracy --grid full          # the full 36-setting grid
    python -m benchmarks.accuracy --utterances 10 --grid default   # a quick look

Writes ``benchmarks/results/accuracy-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import (
    cli,
    figures,
    machine,
    models,
    paths,
    reporting,
    server_process,
    simulate,
    testset,
)
from evaluation import scoring

FULL_CHUNKS = (320, 480, 640, 960)
FULL_LEFTS = (480, 960, 1600)
FULL_RIGHTS = (160, 320, 480)


@dataclass(frozen=True)
class Setting:
    chunk: int
    left: int
    right: int

    @property
    def label(self) -> str:
        return f"C{self.chunk}/L{self.left}/R{self.right}"

    @property
    def cost(self) -> float:
        """Audio read by the model per second of speech (steady state)."""
        return (self.left + self.chunk + self.right) / self.chunk


def server_default() -> Setting:
    """The server's default window, read from its config so the two never drift apart."""
    from streaming.config import WindowConfig

    w = WindowConfig()
    return Setting(w.chunk_ms, w.left_context_ms, w.right_context_ms)


def grid(name: str) -> list[Setting]:
    if name == "full":
        return [
            Setting(c, lft, r)
            for c, lft, r in itertools.product(FULL_CHUNKS, FULL_LEFTS, FULL_RIGHTS)
        ]
    default = server_default()
    if name == "default":
        return [default]
    c0, l0, r0 = default.chunk, default.left, default.right
    axes = [Setting(c, l0, r0) for c in FULL_CHUNKS]
    axes += [Setting(c0, lft, r0) for lft in FULL_LEFTS if lft != l0]
    axes += [Setting(c0, l0, r) for r in FULL_RIGHTS if r != r0]
    axes += [Setting(320, 960, 160)]  # the low-latency corner
    return axes


def pad(audio: np.ndarray, lead_s: float = 0.5, tail_s: float = 1.0) -> np.ndarray:
    sr = testset.SAMPLE_RATE
    return np.concatenate(
        [np.zeros(int(lead_s * sr), np.float32), audio, np.zeros(int(tail_s * sr), np.float32)]
    )


def offline_text(model: Any, audio: np.ndarray) -> str:
    from streaming.decoding import best_path, greedy_words, words_text

    ids, probs = best_path(model.infer(audio[None, :])[0])
    return words_text(greedy_words(ids, probs, model.vocab))


def stability(run: simulate.SimulatedRun) -> tuple[int, int]:
    """(displayed words later rewritten, words shown but never committed)."""
    changes = 0
    shown: dict[int, list[str]] = {}
    for _, msg in run.messages:
        if msg["type"] not in ("partial", "final"):
            continue
        words = str(msg["text"]).split()
        prev = shown.get(msg["utterance_id"], [])
        keep = 0
        while keep < min(len(prev), len(words)) and prev[keep] == words[keep]:
            keep += 1
        changes += len(prev) - keep
        shown[msg["utterance_id"]] = words
    retracted = sum(1 for w in run.tracker.words if w.retracted)
    return changes, retracted


def run_setting(
    model: Any,
    setting: Setting,
    audios: list[np.ndarray],
    refs: list[str],
    lm: Any = None,
    stream_context: str = "off",
) -> dict[str, Any]:
    from streaming.config import WindowConfig

    window = WindowConfig(
        chunk_ms=setting.chunk,
        left_context_ms=setting.left,
        right_context_ms=setting.right,
        stream_context=stream_context,
    )
    counts = scoring.ErrorCounts()
    trackers: list[Any] = []
    changes = retracted = committed = windows = 0
    model_s = audio_s = 0.0
    hyps = []
    for audio, ref in zip(audios, refs):
        run = simulate.simulate_session(model, audio, window, compute="zero")
        counts.add(ref, run.transcript)
        hyps.append(run.transcript)
        trackers.append(run.tracker)
        c, r = stability(run)
        changes += c
        retracted += r
        committed += sum(1 for w in run.tracker.words if not w.retracted)
        windows += run.windows
        model_s += run.model_seconds
        audio_s += run.audio_s
    lm_counts = None
    if lm is not None:  # the server's --lm: the same windows, finals by LM beam search
        lm_counts = scoring.ErrorCounts()
        for audio, ref in zip(audios, refs):
            run = simulate.simulate_session(
                model, audio, window, compute="zero", rescore=lm.decode_words
            )
            lm_counts.add(ref, run.transcript)
    return {
        "setting": setting.label,
        "chunk_ms": setting.chunk,
        "left_ms": setting.left,
        "right_ms": setting.right,
        "cost": round(setting.cost, 2),
        "streaming": counts.to_json(),
        "streaming_lm": lm_counts.to_json() if lm_counts else None,
        **reporting.latency_summary(trackers),
        "changes_per_word": round(changes / max(1, committed), 3),
        "retracted_per_word": round(retracted / max(1, committed), 3),
        "windows": windows,
        "model_rtf": round(model_s / audio_s, 4) if audio_s else None,
        "hypotheses": hyps,
    }


def hf_pipeline_wer(
    source: str, setting: Setting | None, audios: list[np.ndarray], refs: list[str]
) -> dict[str, Any]:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=source, device="cpu")
    counts = scoring.ErrorCounts()
    kwargs: dict[str, Any] = {}
    if setting is not None:
        kwargs = {
            "chunk_length_s": (setting.left + setting.chunk + setting.right) / 1000,
            "stride_length_s": (setting.left / 1000, setting.right / 1000),
        }
    for audio, ref in zip(audios, refs):
        out: Any = asr({"raw": audio.copy(), "sampling_rate": testset.SAMPLE_RATE}, **kwargs)
        counts.add(ref, str(out["text"]))
    return counts.to_json()


def server_check(source: str, files: list[testset.ComposedFile], model: Any) -> dict[str, Any]:
    """The default setting through the real server (separate process, real-time clients)
    vs the simulated Session on the same files."""
    from client.api import stream_file
    from streaming.config import WindowConfig

    async def stream_all(url: str) -> list[Any]:
        return list(await asyncio.gather(*(stream_file(str(f.path), url) for f in files)))

    with server_process.ServerProcess(
        source, [], log_path=paths.OUT_DIR / "accuracy-server.log"
    ) as srv:
        results = asyncio.run(stream_all(srv.url))
    server_counts = scoring.ErrorCounts()
    sim_counts = scoring.ErrorCounts()
    same = 0
    for f, res in zip(files, results):
        server_counts.add(f.reference, res.transcript)
        import soundfile as sf

        audio, _ = sf.read(str(f.path), dtype="float32")
        sim = simulate.simulate_session(model, audio, WindowConfig(), compute="zero")
        sim_counts.add(f.reference, sim.transcript)
        same += int(
            scoring.normalize_text(sim.transcript) == scoring.normalize_text(res.transcript)
        )
    return {
        "files": len(files),
        "server": server_counts.to_json(),
        "simulated_session": sim_counts.to_json(),
        "identical_transcripts": same,
        "failures": [r.failure for r in results if r.failure],
    }


def parse_setting(label: str) -> Setting:
    """``C320/L960/R160`` → Setting(320, 960, 160)."""
    try:
        c, lft, r = (int(part[1:]) for part in label.strip().upper().split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a setting like C320/L960/R160: {label!r}") from None
    return Setting(c, lft, r)


def recommend(
    rows: list[dict[str, Any]],
    offline_wer: float,
    max_cost: float,
    max_partial_ms: float = float("inf"),
) -> dict[str, Any]:
    limit = 1.02 * offline_wer
    ok = [
        r
        for r in rows
        if r["streaming"]["wer"] <= limit + 1e-9
        and r["cost"] <= max_cost
        and (r["partial_ms"]["p50"] or 0) <= max_partial_ms
    ]
    if not ok:
        best = min(rows, key=lambda r: (r["streaming"]["wer"], r["commit_ms"]["p50"] or 0))
        accurate = sum(1 for r in rows if r["streaming"]["wer"] <= limit + 1e-9)
        why = (
            f"{accurate} of {len(rows)} settings meet WER ≤ 1.02 × offline, but none also "
            f"within cost ≤ {max_cost:g} (--max-cost) and algorithmic p50 partial ≤ "
            f"{max_partial_ms:g} ms (--max-partial-ms): the lowest WER"
        )
    else:
        best = min(ok, key=lambda r: ((r["commit_ms"]["p95"] or 0), r["cost"]))
        why = (
            f"lowest p95 commit latency among settings with WER ≤ 1.02 × offline "
            f"({limit:.4f}), cost ≤ {max_cost:g} and algorithmic p50 partial latency "
            f"≤ {max_partial_ms:g} ms"
        )
    return {
        "setting": best["setting"],
        "chunk_ms": best["chunk_ms"],
        "left_context_ms": best["left_ms"],
        "right_context_ms": best["right_ms"],
        "why": why,
        "wer": best["streaming"]["wer"],
        "commit_p95_ms": best["commit_ms"]["p95"],
        "cost": best["cost"],
        "meets_wer_target": bool(ok),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info("cpu")
    machine.header("accuracy", info)
    import torch

    torch.set_num_threads(args.threads)
    bench = models.freeze_model(models.resolve_model(args.model))
    model, _ = models.load_bench_model(bench.source, dtype=args.dtype, threads=args.threads)
    print(f"# model {bench.described}, {model.dtype}")
    utts = testset.held_out_utterances(args.utterances)
    audios = [pad(u.audio()) for u in utts]
    refs = [u.text for u in utts]
    seconds = sum(len(a) for a in audios) / testset.SAMPLE_RATE
    print(
        f"# {len(utts)} held-out utterances, {seconds:.0f} s, "
        f"voices {sorted({u.voice for u in utts})}"
    )
    began = time.monotonic()
    offline = scoring.error_rates([(r, offline_text(model, a)) for a, r in zip(audios, refs)])
    lm = offline_lm = None
    if args.lm:
        from streaming.lm import LMDecoder

        lm = LMDecoder.from_model_dir(bench.source)
        offline_lm = scoring.error_rates(
            [(r, lm.decode(model.infer(a[None, :])[0])) for a, r in zip(audios, refs)]
        )
        print(f"offline + LM WER {offline_lm.wer:.4f} CER {offline_lm.cer:.4f}")
    hf_whole = hf_pipeline_wer(bench.source, None, audios, refs) if args.hf else None
    print(
        f"offline WER {offline.wer:.4f} CER {offline.cer:.4f}"
        + (f"; HF pipeline unchunked WER {hf_whole['wer']:.4f}" if hf_whole else "")
    )
    rows = []
    for setting in args.settings or grid(args.grid):
        row = run_setting(model, setting, audios, refs, lm, args.stream_context)
        row["stream_context"] = args.stream_context
        row["hf_pipeline"] = (
            hf_pipeline_wer(bench.source, setting, audios, refs) if args.hf else None
        )
        row["wer_ratio"] = round(row["streaming"]["wer"] / offline.wer, 4) if offline.wer else None
        rows.append(row)
        hf = row["hf_pipeline"]
        print(
            f"{setting.label:18s} WER {row['streaming']['wer']:.4f} (x{row['wer_ratio']}) "
            f"HF {hf['wer'] if hf else '-'} commit p50/p95 {row['commit_ms']['p50']}/"
            f"{row['commit_ms']['p95']} ms changes {row['changes_per_word']} "
            + (f"LM WER {row['streaming_lm']['wer']:.4f} " if row["streaming_lm"] else "")
            + f"[{time.monotonic() - began:.0f} s]",
            flush=True,
        )
    check = None
    if args.server_check:
        files = testset.session_files(args.server_files, per_file=3)
        check = server_check(bench.source, files, model)
        print(
            f"server check: server WER {check['server']['wer']}, simulated Session WER "
            f"{check['simulated_session']['wer']}, "
            f"identical {check['identical_transcripts']}/{check['files']}"
        )
    table = [
        {
            "setting": r["setting"],
            "cost": r["cost"],
            "WER": r["streaming"]["wer"],
            "CER": r["streaming"]["cer"],
            "xOffline": r["wer_ratio"],
            "HF WER": r["hf_pipeline"]["wer"] if r["hf_pipeline"] else None,
            **({"+LM WER": r["streaming_lm"]["wer"]} if r["streaming_lm"] else {}),
            "partial p50": r["partial_ms"]["p50"],
            "commit p50": r["commit_ms"]["p50"],
            "commit p95": r["commit_ms"]["p95"],
            "final p50": r["final_ms"]["p50"],
            "changes/w": r["changes_per_word"],
            "retract/w": r["retracted_per_word"],
        }
        for r in rows
    ]
    reporting.print_table(
        table,
        list(table[0]),
        f"accuracy ({len(utts)} utterances; offline WER "
        f"{offline.wer:.4f}, CER {offline.cer:.4f}"
        + (f"; offline + LM WER {offline_lm.wer:.4f}" if offline_lm else "")
        + "; latencies algorithmic, ms)",
    )
    rec = recommend(rows, offline.wer, args.max_cost, args.max_partial_ms)
    print(
        f"\nrecommended default: --chunk-ms {rec['chunk_ms']} --left-context-ms "
        f"{rec['left_context_ms']} --right-context-ms {rec['right_context_ms']} ({rec['why']}; "
        f"WER {rec['wer']}, p95 commit {rec['commit_p95_ms']} ms, cost {rec['cost']})"
    )
    data = {
        **reporting.result_header(args, info, bench),
        "dtype": model.dtype,
        "utterances": [{"id": u.id, "voice": u.voice, "text": u.text} for u in utts],
        "audio_s": round(seconds, 1),
        "offline": offline.to_json(),
        "offline_lm": offline_lm.to_json() if offline_lm else None,
        "hf_pipeline_unchunked": hf_whole,
        "settings": rows,
        "server_check": check,
        "recommendation": rec,
        "target": "streaming final WER ≤ 1.02 × offline WER",
    }
    reporting.save_results(data, args, plot)
    return data


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    rows = data["settings"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["streaming"]["wer"] for r in rows], 0.4, label="streaming final")
    if rows and rows[0]["hf_pipeline"]:
        ax.bar(x + 0.2, [r["hf_pipeline"]["wer"] for r in rows], 0.4, label="HF pipeline (chunked)")
    ax.axhline(data["offline"]["wer"], color="k", ls="--", lw=1, label="offline (whole utterance)")
    ax.axhline(1.02 * data["offline"]["wer"], color="r", ls=":", lw=1, label="1.02 × offline")
    ax.set_xticks(x, [r["setting"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("WER")
    lo = min([r["streaming"]["wer"] for r in rows] + [data["offline"]["wer"]])
    ax.set_ylim(max(0.0, lo - 0.1), None)
    ax.legend(fontsize=8)
    ax.set_title(f"{data['model']}: {len(data['utterances'])} held-out utterances", fontsize=10)
    for r in rows:
        ax2.scatter(r["commit_ms"]["p95"], r["streaming"]["wer"], s=20 + 12 * r["cost"])
        ax2.annotate(r["setting"], (r["commit_ms"]["p95"], r["streaming"]["wer"]), fontsize=6)
    ax2.axhline(1.02 * data["offline"]["wer"], color="r", ls=":", lw=1)
    ax2.set_xlabel("p95 commit latency, algorithmic (ms)")
    ax2.set_ylabel("streaming WER (marker size = cost)")
    ax2.set_title(f"recommended: {data['recommendation']['setting']}", fontsize=10)
    ax2.grid(True, alpha=0.3)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en")
    p.add_argument("--utterances", type=int, default=40)
    p.add_argument(
        "--grid",
        choices=("axes", "full", "default"),
        default="axes",
        help="axes: vary one of chunk/left/right around the default (9 settings); "
        "full: 4×3×3; default: the current default only",
    )
    p.add_argument(
        "--settings",
        type=lambda text: [parse_setting(x) for x in text.split(",")],
        default=None,
        help="explicit settings instead of a grid, e.g. C320/L960/R160,C480/L960/R320",
    )
    p.add_argument("--no-hf", dest="hf", action="store_false", help="skip the HF pipeline")
    p.add_argument(
        "--lm",
        action="store_true",
        help="also score finals decoded with the model folder's lm.arpa.gz, as the server's "
        "--lm does, against offline decoding with the same LM (needs pyctcdecode + kenlm)",
    )
    p.add_argument("--no-server-check", dest="server_check", action="store_false")
    p.add_argument("--server-files", type=int, default=4)
    p.add_argument(
        "--max-cost",
        type=float,
        default=6.0,
        help="largest model-audio per speech second for a recommended default",
    )
    p.add_argument(
        "--max-partial-ms",
        type=float,
        default=300.0,
        help="largest algorithmic p50 partial latency for a recommended default; the live"
        " server adds 20-130 ms of batching and model time (live target: 400 ms)",
    )
    p.add_argument(
        "--stream-context",
        choices=("on", "off"),
        default="off",
        help="the server's --stream-context: an utterance's first windows take left context "
        "from the audio before it (here the padding silence); off is the CPU default",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto (the server's default: bf16 on CPUs with native bf16, else fp32), fp32 or "
        "bf16 (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is steadier on a shared 2-core machine)",
    )
    cli.add_result_options(p)
    return cli.parse_benchmark_args(p, "accuracy", argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
