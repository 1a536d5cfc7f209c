"""What hotwords cost a final: milliseconds of beam search per utterance, with and without.

Partials stay greedy (no cost); a final is decoded once, in a worker thread, from the whole
utterance's log-probabilities (``streaming.rescoring``). This times that decode on the
bundled tiny-en model's output for espeak-ng sentences: greedy, the beam search without an
LM and with the model's LM, each with no hotwords, the 10 of tests/test_hotwords.py, and
100 (the per-stream limit)::

    python -m benchmarks.hotword_cost  # -> benchmarks/results/hotword_cost-<machine>.json
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import header, machine_info, machine_slug
from benchmarks.reporting import print_table, summarize, write_json

SENTENCES = [
    "please send the report to stella before noon",
    "my name is priya and i live in bangalore",
    "the postgres database needs a vacuum tonight",
    "we met gandalf and frodo near the river",
    "the nginx proxy forwards requests to django",
    "anastasia bought a ticket to the show",
    "the train leaves the station at seven in the morning",
    "she wrote a long letter to her brother last week",
    "we need to buy bread and milk on the way home",
    "the children played in the garden until it got dark",
    "kubernetes runs the containers on every node of the cluster",
    "call doctor okonkwo about the prescription before friday",
]
NAMES = ["stella", "priya", "bangalore", "postgres", "frodo", "django", "anastasia",
         "kubernetes", "okonkwo", "nginx"]  # fmt: skip
# 90 more made-up words, as a client near the limit might send (letters only).
FILLER = [f"{a}{b}{c}" for a in ("zor", "vel", "quin") for b in ("ab", "ek", "ix") for c in
          ("tor", "mun", "das", "lif", "rok", "pen", "sy", "wal", "gar", "nu")]  # fmt: skip


def synthesize(text: str, voice: str = "en-us") -> np.ndarray:
    import soundfile as sf
    import soxr

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "160", "--stdout", text], check=True, capture_output=True
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return np.asarray(soxr.resample(audio, rate, 16000), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="decodes of each utterance")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    from streaming.config import ModelConfig
    from streaming.decoding import best_path, greedy_words
    from streaming.hotwords import hotword
    from streaming.lm import LMDecoder
    from streaming.model import load_model, resolve_model

    source = resolve_model("tiny-en")
    model = load_model(ModelConfig(name=source, warmup=False), threads=1)
    vocab = model.info.vocab
    audio = [synthesize(s) for s in SENTENCES]
    scores = [model.infer_ragged([a])[0] for a in audio]
    seconds = sum(a.size for a in audio) / 16000
    info = machine_info("cpu")
    header("hotword cost per final (tiny-en, whole-utterance beam search)", info)

    lists = {0: (), 10: tuple(hotword(w) for w in NAMES)}
    lists[100] = lists[10] + tuple(hotword(w) for w in FILLER)
    decoders: dict[str, Any] = {"beam, no LM": LMDecoder(vocab)}
    lm_file = Path(source) / "lm.arpa.gz"
    if lm_file.is_file():
        decoders["beam + LM"] = LMDecoder(vocab, lm_file)

    def greedy(x: np.ndarray) -> object:
        ids, probs = best_path(x)
        return greedy_words(ids, probs, vocab)

    rows = []

    def timed(label: str, count: int, decode: Any) -> None:
        decode(scores[0])  # warm caches (the hotword scorer is built once per list)
        times = []
        for _ in range(args.repeats):
            for x in scores:
                start = time.perf_counter()
                decode(x)
                times.append((time.perf_counter() - start) * 1000)
        total_s = sum(times) / 1000 / args.repeats
        rows.append(
            {"decoder": label, "hotwords": count, "ms_per_final": summarize(times, 2),
             "decode_s_per_audio_s": round(total_s / seconds, 4)}
        )  # fmt: skip
        print(f"{label:12s} {count:3d} hotwords: {summarize(times, 2)}")

    timed("greedy", 0, greedy)
    for label, decoder in decoders.items():
        for count, words in lists.items():
            timed(label, count, lambda x, d=decoder, w=words: d.decode_words(x, w))

    table = [
        {"decoder": r["decoder"], "hotwords": r["hotwords"], "p50 ms": r["ms_per_final"]["p50"],
         "p95 ms": r["ms_per_final"]["p95"], "mean ms": r["ms_per_final"]["mean"]}
        for r in rows
    ]  # fmt: skip
    print_table(table, ["decoder", "hotwords", "p50 ms", "p95 ms", "mean ms"])
    data = {
        "benchmark": "hotword_cost",
        "command": " ".join(["python -m benchmarks.hotword_cost", *(argv or sys.argv[1:])]),
        "machine": info,
        "model": "tiny-en",
        "utterances": len(SENTENCES),
        "audio_s": round(seconds, 2),
        "mean_utterance_s": round(seconds / len(SENTENCES), 2),
        "beam_width": LMDecoder(vocab).beam_width,
        "rows": rows,
    }
    print(f"wrote {write_json('hotword_cost', machine_slug(info), data, args.results_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
