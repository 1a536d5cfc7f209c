"""Accuracy in domain and out of domain, side by side: streaming finals vs whole-utterance
decoding vs the Hugging Face pipeline's chunking, per set and voice group, and where the
extra streaming errors sit relative to the window edges.

The in-domain test sentences share their source (``fortunes``) with the training text; the
out-of-domain sets (``python -m training.ood``) do not: Python documentation, licence prose,
addresses, dates and numbers, names. Every sentence is read once by a training voice and
once by a voice held out from training (flite ``rms``, ``slt``), so the table has four
corners: {in-domain, out-of-domain} × {training voices, held-out voices}.

Each utterance (0.5 s of silence before, 1 s after) is decoded

* **streaming**: through the pure ``streaming.session.Session`` (the server's code) in
  simulated real time, 100 ms feeds, every due window run at once; its finals are scored;
* **whole utterance**: one model call over the padded utterance, greedy CTC;
* **HF chunked**: ``transformers.pipeline("automatic-speech-recognition", chunk_length_s=
  (L+C+R)/1000, stride_length_s=(L/1000, R/1000))`` on the same model, offline (fp32).

Where the extra errors sit: a reference word that whole-utterance decoding gets right and
streaming gets wrong is a *streaming-only error*. Its time (from the whole-utterance
decode) is placed against the *stitch points* of the windows that decoded it (where one
window's kept frames end and the next one's begin): the histogram is of the signed
distance to the nearest stitch point (negative = just before it, where the window that
kept the word saw only R ms of audio after its chunk), as a rate per word in that bin.
Words the final window kept beyond half a chunk from any stitch point are counted apart.
Edits are split into substitutions, deletions and insertions, and every break between two
streaming words is placed against the stitch points too, counting those that fall inside a
word the whole-utterance decode reads as one (a split word).

Several ``--settings`` measure which window lever moves the streaming/whole ratio (the HF
pipeline runs for the first setting only unless ``--hf-all``). Latency columns are
algorithmic (model time zero).

    python -m benchmarks.accuracy_ood                  # 70 in-domain + 350 OOD sentences × 2 voices
    python -m benchmarks.accuracy_ood --quick          # 12 utterances, seconds
    python -m benchmarks.accuracy_ood --voices training --no-hf --tag levers \
        --settings C240/L1600/R480,C240/L1600/R320,C240/L1600/R640,C240/L1600/R800,...
    python -m benchmarks.accuracy_ood --voices training --no-hf --norm running --tag norm-running
    python -m benchmarks.accuracy_ood --voices training --no-hf --norm window --tag no-reuse
    python -m benchmarks.accuracy_ood --voices training --no-hf --compile --tag reuse-compile

Writes ``benchmarks/results/accuracy_ood[-<tag>]-<machine>.json/.png``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import cli, figures, machine, models, oodset, reporting
from benchmarks.accuracy import Setting, pad, parse_setting, server_default
from benchmarks.testset import SAMPLE_RATE
from evaluation import scoring

LEAD_S = 0.5
GROUPS = ("training", "held-out")
BIN_MS = 20
TARGET = 1.02


@dataclass
class StreamRun:
    """One stream through a Session: its finals, and the plan of every window it ran."""

    transcript: str
    words: list[tuple[str, float, float]]  # the finals' words: word, start ms, end ms
    stitches_ms: list[float]  # where a window's kept frames begin (> utterance start)
    final_spans_ms: list[tuple[float, float]]  # what each utterance's final window kept
    tracker: Any  # client.latency.LatencyTracker
    windows: int


@dataclass
class Decoded:
    """All decodings of one utterance."""

    ref: list[str]
    whole: list[tuple[str, float, float]]  # word, start ms, end ms (padded-audio time)
    streams: list[StreamRun] = field(default_factory=list)  # one per setting
    hf: list[str | None] = field(default_factory=list)  # one per setting


class _Normalized:
    """The model with each window scaled by other statistics than its own (an experiment:
    the server normalizes every window alone, whole-utterance decoding the whole input).

    ``utterance``: the mean and variance of the whole padded utterance (what whole-utterance
    decoding uses; an oracle); ``running``: of all the stream's audio fed so far (causal).
    """

    def __init__(self, model: Any, audio: np.ndarray, mode: str) -> None:
        import dataclasses

        self.vocab, self.geometry = model.vocab, model.geometry
        self.raw = dataclasses.replace(model, normalize=False)
        self._audio, self._mode = audio, mode
        self.fed = len(audio)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        seen = self._audio if self._mode == "utterance" else self._audio[: self.fed]
        mean, var = float(seen.mean()), float(seen.var())
        out: np.ndarray = self.raw.infer((batch - mean) / np.sqrt(var + 1e-7))
        return out


def run_stream(
    model: Any, audio: np.ndarray, setting: Setting, feed_ms: int = 100, norm: str = "reuse"
) -> StreamRun:
    """Feed ``audio`` to a Session in ``feed_ms`` pieces and run each due window at once
    (what ``benchmarks.simulate`` does with zero model time), keeping every window plan.
    ``norm``: ``reuse`` (the server's on the CPU: each window by its own statistics, the
    front-end features of frames an earlier window read reused; ``--reuse-features``),
    ``window`` (every window computed whole, as with ``--reuse-features off`` and the remote
    engines), ``running`` or ``utterance`` (see :class:`_Normalized`)."""
    from client.latency import LatencyTracker, SendLog
    from streaming.codecs.native_format import event_message
    from streaming.config import VadConfig, WindowConfig
    from streaming.events import Final
    from streaming.session import Session

    window = WindowConfig(
        chunk_ms=setting.chunk,
        left_context_ms=setting.left,
        right_context_ms=setting.right,
        stream_context="off",
    )
    session = Session(model.vocab, model.geometry, VadConfig(), window)
    from streaming.feature_cache import FeatureCache

    runner = (
        model
        if norm in ("window", "reuse")
        else _Normalized(model, audio, "running" if norm == "reuse-running" else norm)
    )
    cache = FeatureCache()

    def infer(request: Any) -> np.ndarray:
        if norm == "reuse":
            out: np.ndarray = model.infer_reusing([request.samples], [request.key], cache)[0]
            return out
        if norm == "reuse-running":
            assert isinstance(runner, _Normalized)
            seen = audio[: runner.fed]
            scaled = (request.samples - seen.mean()) / np.sqrt(seen.var() + 1e-7)
            raw = runner.raw
            return np.asarray(raw.infer_reusing([scaled], [request.key], cache)[0])
        return np.asarray(runner.infer(request.samples[None, :])[0])

    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    step = SAMPLE_RATE * feed_ms // 1000
    send_log = SendLog()
    tracker = LatencyTracker(send_log, 100.0)
    finals: list[Final] = []
    plans: list[tuple[int, Any]] = []
    clock = 0.0

    def emit(events: Sequence[Any]) -> None:
        for event in events:
            tracker.on_message(event_message(event), clock)
            if isinstance(event, Final):
                finals.append(event)

    def drain() -> None:
        while (request := session.next_request()) is not None:
            plans.append((request.utterance_id, request.plan))
            emit(session.complete(request, infer(request)))

    for pos in range(0, len(pcm), step):
        end = min(len(pcm), pos + step)
        clock = end / SAMPLE_RATE
        if isinstance(runner, _Normalized):
            runner.fed = end
        send_log.record(clock, end * 1000.0 / SAMPLE_RATE)
        emit(session.feed(pcm[pos:end].tobytes()))
        drain()
    emit(session.end())
    drain()
    frame_ms = 1000.0 * model.geometry.stride / SAMPLE_RATE
    starts = {f.utterance_id: f.start_ms for f in finals}
    stitches, spans = [], []
    for uid, plan in plans:
        if uid not in starts:
            continue
        begin = starts[uid] + plan.keep_from * frame_ms
        if plan.keep_from > 0:
            stitches.append(begin)
        if plan.final:
            spans.append((begin, starts[uid] + plan.keep_to * frame_ms))
    transcript = " ".join(f.text for f in finals if f.text)
    words = [(w.word, float(w.start_ms), float(w.end_ms)) for f in finals for w in f.words]
    return StreamRun(transcript, words, sorted(set(stitches)), spans, tracker, len(plans))


def whole_words(model: Any, audio: np.ndarray) -> list[tuple[str, float, float]]:
    """Greedy CTC over the whole (padded) utterance, with word times in ms."""
    from streaming.decoding import best_path, greedy_words

    ids, probs = best_path(model.infer(audio[None, :])[0])
    frame_ms = 1000.0 * model.geometry.stride / SAMPLE_RATE
    return [
        (w.text, w.start_frame * frame_ms, w.end_frame * frame_ms)
        for w in greedy_words(ids, probs, model.vocab)
    ]


def _alignment(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """A minimum-edit alignment as (reference index, hypothesis index) pairs, in order;
    None on one side is a deletion or an insertion."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1])
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def matched(ref: Sequence[str], hyp: Sequence[str]) -> list[int | None]:
    """For each reference word, the hypothesis word a minimum-edit alignment pairs it with
    when the two are equal (a correct word), else None."""
    out: list[int | None] = [None] * len(ref)
    for i, j in _alignment(ref, hyp):
        if i is not None and j is not None and ref[i] == hyp[j]:
            out[i] = j
    return out


def edit_kinds(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit alignment."""
    pairs = _alignment(ref, hyp)
    subs = sum(1 for i, j in pairs if i is not None and j is not None and ref[i] != hyp[j])
    dels = sum(1 for _, j in pairs if j is None)
    return subs, dels, sum(1 for i, _ in pairs if i is None)


@dataclass
class Positions:
    """Words that whole-utterance decoding gets right, by signed distance to the nearest
    stitch point, and how many of them streaming gets wrong."""

    half_chunk_ms: float
    words: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    far_words: int = 0  # final-window words beyond half a chunk from any stitch point
    far_errors: int = 0
    straddling: list[int] = field(default_factory=lambda: [0, 0])  # words, errors
    inside: list[int] = field(default_factory=lambda: [0, 0])
    whole_only_errors: int = 0  # streaming right where the whole-utterance decode is wrong
    # streaming word breaks by |distance| to the nearest stitch point: all of them, and those
    # inside a word that the whole-utterance decode reads as one (a split word)
    breaks: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    splits: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, decoded: Decoded, run: StreamRun) -> None:
        self._add_breaks(decoded, run)
        ref = decoded.ref
        by_whole = matched(ref, [w for w, _, _ in decoded.whole])
        by_stream = matched(ref, run.transcript.split())
        stitches = np.asarray(run.stitches_ms)
        for i, j in enumerate(by_whole):
            if j is None:
                self.whole_only_errors += by_stream[i] is not None
                continue
            wrong = by_stream[i] is None
            _, start, end = decoded.whole[j]
            mid = (start + end) / 2
            cross = bool(stitches.size and ((stitches > start) & (stitches < end)).any())
            bucket = self.straddling if cross else self.inside
            bucket[0] += 1
            bucket[1] += wrong
            signed = (stitches - mid)[np.argmin(np.abs(stitches - mid))] if stitches.size else None
            if signed is None or abs(signed) >= self.half_chunk_ms:
                self.far_words += 1
                self.far_errors += wrong
                continue
            # signed > 0: the stitch point is after the word (the word ends a window's chunk)
            key = int(np.floor(-signed / BIN_MS))
            self.words[key] += 1
            self.errors[key] += wrong

    def _add_breaks(self, decoded: Decoded, run: StreamRun, margin_ms: float = 20.0) -> None:
        stitches = np.asarray(run.stitches_ms)
        far = int(self.half_chunk_ms // BIN_MS)
        for (_, _, end), (_, start, _) in zip(run.words, run.words[1:]):
            gap = (end + start) / 2
            dist = float(np.min(np.abs(stitches - gap))) if stitches.size else np.inf
            key = min(int(dist // BIN_MS), far)
            self.breaks[key] += 1
            self.splits[key] += any(
                a < end - margin_ms and b > start + margin_ms for _, a, b in decoded.whole
            )

    def to_json(self) -> dict[str, Any]:
        far = int(self.half_chunk_ms // BIN_MS)
        breaks = [
            {
                "from_ms": key * BIN_MS,
                "to_ms": (key + 1) * BIN_MS if key < far else None,
                "breaks": self.breaks[key],
                "inside_a_whole_word": self.splits[key],
                "rate": round(self.splits[key] / self.breaks[key], 4) if self.breaks[key] else None,
            }
            for key in sorted(self.breaks)
        ]
        rows = [
            {
                "from_ms": key * BIN_MS,
                "to_ms": (key + 1) * BIN_MS,
                "words": self.words[key],
                "streaming_only_errors": self.errors[key],
                "rate": round(self.errors[key] / self.words[key], 4) if self.words[key] else None,
            }
            for key in sorted(self.words)
        ]
        total_words = sum(self.words.values()) + self.far_words
        total_errors = sum(self.errors.values()) + self.far_errors
        return {
            "distance": "word centre − nearest stitch point, ms (negative: before it)",
            "bins": rows,
            "far": {"words": self.far_words, "streaming_only_errors": self.far_errors},
            "straddling_a_stitch": _rate(*self.straddling),
            "not_straddling": _rate(*self.inside),
            "streaming_only_errors": total_errors,
            "whole_only_errors": self.whole_only_errors,
            "words_whole_correct": total_words,
            "word_breaks": {
                "distance": "|gap between two streaming words − nearest stitch point|, ms "
                "(the last bin: half a chunk or more)",
                "bins": breaks,
            },
        }


def _rate(words: int, errors: int) -> dict[str, Any]:
    return {
        "words": words,
        "streaming_only_errors": errors,
        "rate": round(errors / words, 4) if words else None,
    }


def set_names(utt: oodset.SetUtterance) -> list[str]:
    """The rows an utterance counts in: its domain and, out of domain, its category."""
    return [utt.domain] if utt.domain == utt.category else [utt.domain, utt.category]


def score_sets(
    utts: Sequence[oodset.SetUtterance], decoded: Sequence[Decoded], k: int
) -> list[dict[str, Any]]:
    """WER/CER of setting ``k`` per (set, voice group): whole, streaming and HF chunked."""
    cells: dict[tuple[str, str], dict[str, scoring.ErrorCounts]] = {}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for utt, dec in zip(utts, decoded):
        ref = " ".join(dec.ref)
        whole = " ".join(w for w, _, _ in dec.whole)
        hyps = {"whole": whole, "streaming": dec.streams[k].transcript}
        hf = dec.hf[k] if k < len(dec.hf) else None
        if hf is not None:
            hyps["hf_chunked"] = hf
        for name in set_names(utt):
            for group in (utt.group, "all"):
                cell = cells.setdefault((name, group), {})
                counts[(name, group)] += 1
                for kind, hyp in hyps.items():
                    cell.setdefault(kind, scoring.ErrorCounts()).add(ref, hyp)
                    edits = edit_kinds(dec.ref, scoring.normalize_text(hyp).split())
                    total = kinds[(name, group, kind)]
                    for e, count in enumerate(edits):
                        total[e] += count
    order = [oodset.IN_DOMAIN, "out-of-domain"]
    order += sorted({u.category for u in utts} - {oodset.IN_DOMAIN})
    rows = []
    for name in order:
        for group in (*GROUPS, "all"):
            if (name, group) not in cells:
                continue
            cell = cells[(name, group)]
            row: dict[str, Any] = {
                "set": name,
                "voices": group,
                "utterances": counts[(name, group)],
            }
            for kind, c in cell.items():
                subs, dels, ins = kinds[(name, group, kind)]
                row[kind] = {**c.to_json(), "sub": subs, "del": dels, "ins": ins}
            base = cell["whole"].wer
            row["streaming_x_whole"] = round(cell["streaming"].wer / base, 4) if base else None
            if "hf_chunked" in cell:
                row["hf_x_whole"] = round(cell["hf_chunked"].wer / base, 4) if base else None
            rows.append(row)
    return rows


def hf_transcripts(
    source: str, setting: Setting, audios: Sequence[np.ndarray], batch_size: int
) -> list[str]:
    """The Hugging Face ASR pipeline's chunked decoding with the same context as ``setting``."""
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=source, device="cpu")
    kwargs = {
        "chunk_length_s": (setting.left + setting.chunk + setting.right) / 1000,
        "stride_length_s": (setting.left / 1000, setting.right / 1000),
        "batch_size": batch_size,
    }
    out = []
    for audio in audios:
        result: Any = asr({"raw": audio.copy(), "sampling_rate": SAMPLE_RATE}, **kwargs)
        out.append(scoring.normalize_text(str(result["text"])))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine.machine_info("cpu")
    machine.header("accuracy_ood", info)
    import torch

    torch.set_num_threads(args.threads)
    bench = models.freeze_model(models.resolve_model(args.model))
    model, _ = models.load_bench_model(bench.source, dtype=args.dtype, threads=args.threads)
    if args.compile:  # the server's --compile: the transformer after reused features
        from streaming.config import WindowConfig
        from streaming.windowing import warmup_lengths

        steady = warmup_lengths(WindowConfig(), model.geometry, SAMPLE_RATE)[-1]
        print(f"# compiled the transformer in {model.compile_tail(steady):.0f} s")
    print(f"# model {bench.described}, {model.dtype}")
    utts = oodset.ood_utterances(args.in_domain, args.per_category)
    utts = [u for u in utts if args.voices in ("all", u.group)]
    audios = [pad(u.audio(), LEAD_S) for u in utts]
    seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    settings: list[Setting] = args.settings or [server_default()]
    categories = sorted({u.category for u in utts})
    print(
        f"# {len(utts)} utterances ({seconds:.0f} s): "
        + ", ".join(f"{c} {sum(u.category == c for u in utts)}" for c in categories)
        + f"; voices {sorted({u.voice for u in utts})}",
        flush=True,
    )
    began = time.monotonic()
    decoded = [
        Decoded(scoring.normalize_text(u.text).split(), whole_words(model, a))
        for u, a in zip(utts, audios)
    ]
    print(f"whole-utterance decodes [{time.monotonic() - began:.0f} s]", flush=True)
    results = []
    for k, setting in enumerate(settings):
        for dec, audio in zip(decoded, audios):
            dec.streams.append(run_stream(model, audio, setting, norm=args.norm))
        hf_done = args.hf and (k == 0 or args.hf_all)
        hf = hf_transcripts(bench.source, setting, audios, args.hf_batch) if hf_done else None
        for i, dec in enumerate(decoded):
            dec.hf.append(hf[i] if hf else None)
        positions: dict[str, Positions] = {}
        for utt, dec in zip(utts, decoded):
            for domain in (utt.domain, "all"):
                for group in (utt.group, "all"):
                    key = f"{domain}|{group}"
                    positions.setdefault(key, Positions(setting.chunk / 2))
                    positions[key].add(dec, dec.streams[k])
        sets = score_sets(utts, decoded, k)
        result = {
            "setting": setting.label,
            "norm": args.norm,
            "chunk_ms": setting.chunk,
            "left_ms": setting.left,
            "right_ms": setting.right,
            "cost": round(setting.cost, 2),
            "hf_pipeline": bool(hf),
            "sets": sets,
            **reporting.latency_summary(d.streams[k].tracker for d in decoded),
            "windows": sum(d.streams[k].windows for d in decoded),
            "error_positions": {key: p.to_json() for key, p in sorted(positions.items())},
        }
        results.append(result)
        print_setting(result)
        print(f"[{time.monotonic() - began:.0f} s]", flush=True)
    data = {
        **reporting.result_header(args, info, bench),
        "dtype": model.dtype,
        "hf_dtype": "fp32",
        "audio_s": round(seconds, 1),
        "utterances": [
            {
                "id": u.id,
                "voice": u.voice,
                "group": u.group,
                "category": u.category,
                "text": u.text,
                "whole": " ".join(w for w, _, _ in d.whole),
                "streaming": [s.transcript for s in d.streams],
                "hf_chunked": d.hf,
            }
            for u, d in zip(utts, decoded)
        ],
        "settings": results,
        "target": f"streaming final WER ≤ {TARGET} × whole-utterance WER out of domain",
        "wall_s": round(time.monotonic() - began, 1),
    }
    if len(results) > 1:
        print_levers(results)
    reporting.save_results(data, args, plot)
    return data


def _cell(result: dict[str, Any], name: str, group: str) -> dict[str, Any] | None:
    return next((r for r in result["sets"] if r["set"] == name and r["voices"] == group), None)


def print_setting(result: dict[str, Any]) -> None:
    table = []
    for row in result["sets"]:
        hf = row.get("hf_chunked")
        table.append(
            {
                "set": row["set"],
                "voices": row["voices"],
                "utts": row["utterances"],
                "whole WER": row["whole"]["wer"],
                "stream WER": row["streaming"]["wer"],
                "HF WER": hf["wer"] if hf else None,
                "whole CER": row["whole"]["cer"],
                "stream CER": row["streaming"]["cer"],
                "HF CER": hf["cer"] if hf else None,
                "ins whole/stream": f"{row['whole']['ins']}/{row['streaming']['ins']}",
                "stream/whole": row["streaming_x_whole"],
                "HF/whole": row.get("hf_x_whole"),
            }
        )
    reporting.print_table(
        table,
        list(table[0]),
        f"{result['setting']} (commit p50/p95 {result['commit_ms']['p50']}/"
        f"{result['commit_ms']['p95']} ms, algorithmic)",
    )
    key = "out-of-domain|training"
    pos = result["error_positions"].get(key) or result["error_positions"]["all|all"]
    rows = [
        {"distance ms": f"{b['from_ms']}..{b['to_ms']}", "words": b["words"],
         "stream-only errors": b["streaming_only_errors"], "rate": b["rate"]}
        for b in pos["bins"]
    ]  # fmt: skip
    far = pos["far"]
    rows.append(
        {
            "distance ms": "far (final window, start)",
            "words": far["words"],
            "stream-only errors": far["streaming_only_errors"],
            "rate": round(far["streaming_only_errors"] / max(1, far["words"]), 4),
        }
    )
    splits = [
        f"{b['from_ms']}+: {b['inside_a_whole_word']}/{b['breaks']}"
        for b in pos["word_breaks"]["bins"]
    ]
    print("streaming word breaks inside a whole-decode word, by |distance to stitch| (ms): ")
    print("  " + ", ".join(splits))
    reporting.print_table(
        rows,
        list(rows[0]),
        "streaming-only errors by word centre − nearest stitch point (out of domain, training "
        "voices); "
        f"straddling a stitch {pos['straddling_a_stitch']['rate']}, not "
        f"{pos['not_straddling']['rate']}; whole-only errors {pos['whole_only_errors']}",
    )


def print_levers(results: Sequence[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        row: dict[str, Any] = {"setting": r["setting"], "cost": r["cost"]}
        for name, short in ((oodset.IN_DOMAIN, "ID"), ("out-of-domain", "OOD")):
            for group, g in (("training", "trn"), ("held-out", "held")):
                cell = _cell(r, name, group)
                row[f"{short} {g} x"] = cell["streaming_x_whole"] if cell else None
        row["partial p50"] = r["partial_ms"]["p50"]
        row["commit p50"] = r["commit_ms"]["p50"]
        row["commit p95"] = r["commit_ms"]["p95"]
        rows.append(row)
    reporting.print_table(rows, list(rows[0]), "levers: streaming WER ÷ whole-utterance WER")


def plot(data: dict[str, Any], name: str, slug: str, results_dir: Any = None) -> Any:
    plt = figures.pyplot()
    first = data["settings"][0]
    results = data["settings"]
    fig, axes = plt.subplots(
        1, 4 if len(results) > 1 else 3, figsize=(22 if len(results) > 1 else 17, 4.8)
    )
    ax = axes[0]
    cells = [
        r for r in first["sets"]
        if r["set"] in (oodset.IN_DOMAIN, "out-of-domain") and r["voices"] in GROUPS
    ]  # fmt: skip
    x = np.arange(len(cells))
    kinds = [("whole", "whole utterance"), ("streaming", "streaming final")]
    if first["hf_pipeline"]:
        kinds.append(("hf_chunked", "HF pipeline, chunked"))
    width = 0.8 / len(kinds)
    for i, (kind, label) in enumerate(kinds):
        ax.bar(x + (i - (len(kinds) - 1) / 2) * width, [c[kind]["wer"] for c in cells], width,
               label=label)  # fmt: skip
    ax.set_xticks(x, [f"{c['set']}\n{c['voices']} voices" for c in cells], fontsize=8)
    ax.set_ylabel("WER")
    ax.set_title(f"{data['model']}, {first['setting']}", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = [r for r in first["sets"] if r["voices"] in GROUPS]
    labels = sorted({r["set"] for r in rows}, key=[r["set"] for r in rows].index)
    x = np.arange(len(labels))
    for i, group in enumerate(GROUPS):
        vals = [
            next((r["streaming_x_whole"] or 0 for r in rows
                  if r["set"] == s and r["voices"] == group), 0)
            for s in labels
        ]  # fmt: skip
        ax.bar(x + (i - 0.5) * 0.4, vals, 0.4, label=f"{group} voices")
    ax.axhline(TARGET, color="r", ls=":", lw=1, label=f"{TARGET} (target)")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.8, None)
    ax.set_ylabel("streaming WER ÷ whole-utterance WER")
    ax.legend(fontsize=8)
    ax = axes[2]
    for key in ("in-domain|training", "out-of-domain|training", "all|held-out"):
        if key not in first["error_positions"]:
            continue
        bins = first["error_positions"][key]["bins"]
        label = key.replace("|", ", ") + " voices"
        centres = [(b["from_ms"] + b["to_ms"]) / 2 for b in bins]
        ax.plot(centres, [100 * (b["rate"] or 0) for b in bins], marker="o", label=label)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("word centre − nearest stitch point (ms; < 0: before it)")
    ax.set_ylabel("streaming-only errors, % of words")
    ax.set_title("where the extra streaming errors sit", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    if len(results) > 1:
        ax = axes[3]
        for domain in (oodset.IN_DOMAIN, "out-of-domain"):
            for group in GROUPS:
                cells = [_cell(r, domain, group) for r in results]
                if any(c is None for c in cells):
                    continue
                commit = [r["commit_ms"]["p95"] for r in results]
                ratios = [c["streaming_x_whole"] for c in cells if c is not None]
                ax.scatter(commit, ratios, label=f"{domain}, {group} voices")
                if domain == "out-of-domain":
                    for r, x, y in zip(results, commit, ratios):
                        ax.annotate(r["setting"], (x, y), fontsize=6)
        ax.axhline(TARGET, color="r", ls=":", lw=1)
        ax.set_xlabel("p95 commit latency, algorithmic (ms)")
        ax.set_ylabel("streaming WER ÷ whole-utterance WER")
        ax.set_title("levers: window settings", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    return figures.save_figure(fig, name, slug, results_dir)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.arg_parser(__doc__)
    p.add_argument("--model", default="tiny-en")
    p.add_argument("--in-domain", type=int, default=70, help="in-domain test sentences")
    p.add_argument(
        "--per-category", type=int, default=None, help="first N sentences of each OOD category"
    )
    p.add_argument(
        "--settings",
        type=lambda text: [parse_setting(x) for x in text.split(",")],
        default=None,
        help="window settings, the first with the HF pipeline (default: the server's)",
    )
    p.add_argument(
        "--voices",
        choices=("all", *GROUPS),
        default="all",
        help="voice group(s): training voices, held-out voices or both",
    )
    p.add_argument(
        "--norm",
        choices=("reuse", "window", "running", "utterance", "reuse-running"),
        default="reuse",
        help="how streaming windows are computed: reuse = each window scaled by its own "
        "statistics, with the front-end features of audio an earlier window read reused (the "
        "server's default on the CPU); window = every window computed whole (--reuse-features "
        "off, the remote engines); experiments: running = scaled by the stream so far, "
        "utterance = by the whole utterance (an oracle)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="the server's --compile: torch.compile the transformer (with --norm reuse)",
    )
    p.add_argument("--no-hf", dest="hf", action="store_false", help="skip the HF pipeline")
    p.add_argument("--hf-all", action="store_true", help="the HF pipeline for every setting")
    p.add_argument("--hf-batch", type=int, default=1, help="HF pipeline batch size")
    p.add_argument("--quick", action="store_true", help="1 sentence per set (12 utterances)")
    p.add_argument("--dtype", default="auto", help="auto (the server's default), fp32 or bf16")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    cli.add_result_options(p)
    args = cli.parse_benchmark_args(p, "accuracy_ood", argv)
    if args.quick:
        args.in_domain, args.per_category = 1, 1
        args.tag = args.tag or "quick"
    return args


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
