"""Early commits with LM finals: how soon words commit, and what it costs in word errors.

With LM finals (the server's default) a greedy word may be respelled by the final, so
partials can only commit what a beam search settled: ``streaming.beam_commit`` searches the
spoken part of an utterance with the LM now and then, commits the words the searches
settle, and the final searches only the rest. This compares, on the same audio
and the same windows (the server's Session, the real webrtcvad, simulated real time with
each window's and each search's measured time on the clock, one stream alone):

- **greedy**: ``--lm none``: greedy finals, words commit as their letters become stable;
- **LM, commit at final**: ``--no-early-commits``: LM finals, nothing commits before them;
- **LM, early commits**: the default rule (``streaming.beam_commit.CommitRule``: a word
  commits once the next one starts in stable frames and the search before, or greedy
  decoding, read it alike), then the other rules tried (``--default-only`` skips them).

Per system: WER of the finals, commit latency (word spoken → committed), partial latency,
final latency, and the beam-search CPU time per second of speech (searches and finals).
Beside them, the same model and LM over each whole utterance at once (offline: one model
call, one beam search), the yardstick of the streaming finals' word errors.
Sentences: the out-of-domain sets read by the training voices (``benchmarks.oodset``;
``python -m training.ood`` renders them on first use), each padded with 0.5 s before and
1 s after.

    python -m benchmarks.early_commits                      # 4 per category, ~2.5 min
    python -m benchmarks.early_commits --per-category 1     # a quick look

Writes ``benchmarks/results/early_commits-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from benchmarks import cli, figures, machine, models, oodset, reporting, simulate
from benchmarks.accuracy import pad
from evaluation import scoring

GREEDY, AT_FINAL, EARLY = "greedy", "LM, commit at final", "LM, early commits"


def rules(default_only: bool) -> list[Any]:
    """The server's commit rule first, then the others tried."""
    from streaming.beam_commit import CommitRule

    tried = [
        CommitRule(agree="read"),
        CommitRule(agree="settled"),
        CommitRule(agree="none"),
        CommitRule(holdback=2, agree="none"),
        CommitRule(holdback=2, agree="read"),
    ]
    return [CommitRule()] + ([] if default_only else tried)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from streaming.config import LmConfig, WindowConfig
    from streaming.lm import LMDecoder

    info = machine.machine_info("cpu")
    machine.header("early commits with LM finals: commit latency and word errors", info)
    model, bench = models.load_bench_model(args.model, threads=args.threads)
    lm = LMDecoder.from_model_dir(bench.source)
    utterances = [
        u
        for u in oodset.ood_utterances(0, args.per_category)
        if u.group == "training" and u.category != oodset.IN_DOMAIN
    ]
    audios = [pad(u.audio()) for u in utterances]
    speech_s = sum(a.size for a in audios) / oodset.SAMPLE_RATE
    rows: list[dict[str, Any]] = []
    systems = [(GREEDY, None), (AT_FINAL, None)]
    systems += [(f"{EARLY} ({rule.label})", rule) for rule in rules(args.default_only)]
    for system, rule in systems:
        began = time.perf_counter()
        decoder = lm.decode_words if system != GREEDY else None
        pairs: list[tuple[str, str]] = []
        trackers = []
        searches = 0
        search_s = final_s = 0.0
        for utterance, audio in zip(utterances, audios):
            run_ = simulate.simulate_session(
                model,
                audio,
                WindowConfig(),
                compute="measured",
                rescore=decoder,
                early_commits=rule is not None,
                commit_rule=rule,
            )
            pairs.append((utterance.text, run_.transcript))
            trackers.append(run_.tracker)
            searches += run_.searches
            search_s += run_.search_s
            final_s += run_.final_decode_s
        row: dict[str, Any] = {
            "system": system,
            "rule": None if rule is None else dataclasses.asdict(rule),
            **scoring.error_rates(pairs).to_json(),
            **reporting.latency_summary(trackers),
            **reporting.word_counts(trackers),
        }
        if decoder is not None:
            row["searches"] = searches
            row["search_cpu_per_speech_s"] = round(search_s / speech_s, 4)
            row["final_cpu_per_speech_s"] = round(final_s / speech_s, 4)
        row["example"] = pairs[0][1] if pairs else ""
        rows.append(row)
        print(
            f"{system:>40s}: WER {row['wer']:.3f}  commit p50/p95 "
            f"{row['commit_ms']['p50']}/{row['commit_ms']['p95']} ms  "
            f"[{time.perf_counter() - began:.0f} s]"
        )
    table = [
        {
            "system": r["system"],
            "WER": r["wer"],
            "commit p50": r["commit_ms"]["p50"],
            "commit p95": r["commit_ms"]["p95"],
            "partial p50": r["partial_ms"]["p50"],
            "final p50": r["final_ms"]["p50"],
            "beam CPU/s": (r.get("search_cpu_per_speech_s") or 0)
            + (r.get("final_cpu_per_speech_s") or 0)
            if r["system"] != GREEDY
            else None,
        }
        for r in rows
    ]
    reporting.print_table(table, list(table[0]), "early commits (latencies in ms)")
    offline = scoring.error_rates(
        [(u.text, lm.decode(model.infer(a[None, :])[0])) for u, a in zip(utterances, audios)]
    ).to_json()
    print(
        f"offline (whole utterance + LM): WER {offline['wer']:.3f}; streaming finals "
        + ", ".join(f"{r['system']} {r['wer'] / offline['wer']:.3f} ×" for r in rows[1:3])
    )
    return {
        **reporting.result_header(args, info, bench),
        "dtype": model.dtype,
        "utterances": len(utterances),
        "voices": sorted({u.voice for u in utterances}),
        "speech_s": round(speech_s, 1),
        "lm": {"alpha": LmConfig.alpha, "beta": LmConfig.beta, "beam_width": lm.beam_width},
        "rows": rows,
        "offline_lm": offline,
    }


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    rows = data["rows"]
    names = [r["system"] for r in rows]
    xs = range(len(rows))
    colors = ["tab:gray", "tab:green"] + ["tab:blue"] * (len(rows) - 2)
    left.bar(xs, [r["wer"] for r in rows], color=colors)
    left.set_xticks(list(xs), names, fontsize=7, rotation=20, ha="right")
    if data.get("offline_lm"):
        left.axhline(data["offline_lm"]["wer"], color="black", ls="--", lw=1,
                     label="whole utterance + LM (offline)")  # fmt: skip
        left.legend(fontsize=8, loc="lower right")
    left.set_ylabel("WER of the finals")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3, axis="y")
    width = 0.38
    right.bar([x - width / 2 for x in xs], [r["commit_ms"]["p50"] for r in rows], width,
              label="commit p50")  # fmt: skip
    right.bar([x + width / 2 for x in xs], [r["commit_ms"]["p95"] for r in rows], width,
              label="commit p95")  # fmt: skip
    right.set_xticks(list(xs), names, fontsize=7, rotation=20, ha="right")
    right.set_ylabel("word spoken → committed (ms)")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.suptitle(
        f"{data['model']}: early commits with LM finals, {data['utterances']} out-of-domain "
        f"sentences ({machine.machine_label(data['machine'])})",
        fontsize=10,
    )
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en", help="see engine_throughput --help")
    p.add_argument(
        "--per-category", type=int, default=4, help="out-of-domain sentences per category"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--default-only",
        action="store_true",
        help="only the server's commit rule, not the others tried",
    )
    cli.add_result_options(p)
    return cli.parse_benchmark_args(p, "early_commits", argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reporting.save_results(run(args), args, plot)


if __name__ == "__main__":
    main()
