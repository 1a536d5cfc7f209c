"""Render held-out sentences with fixed training-voice settings: the benchmarks' test set.

The benchmarks need speech the model never trained on. Which sentences are held out and
how each training voice reads them is training's knowledge, so it lives here; the
benchmarks run this command and read what it writes instead of importing ``training``:

* ``OUT/wav/<id>.wav``: 16 kHz mono 16-bit, one sentence (``<id>`` = sentence id and
  voice), rendered once and then reused;
* ``OUT/manifest.json``: ``{id: {"text", "voice"}}`` of every file rendered so far;
* with ``--list FILE``: the selection, in order, as a JSON list of
  ``{"id", "text", "voice", "path"}``.

The selection: the first ``--count`` sentences of the ``test`` split with
``--min-words`` to ``--max-words`` words, the voices taken round-robin.

Usage::

    python -m training.testset --count 24 --out benchmarks/out/testset --list list.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

from training.model import SAMPLE_RATE
from training.text import DEFAULT_OUT as TEXT_DIR
from training.text import Sentence, build_sentences, load_split, read_fortunes

DEFAULT_OUT = Path(__file__).resolve().parent / "work" / "testset"
#: Training voices (the model trained on them; never on these sentences), fixed settings.
TEST_VOICES = ("espeak:en-us+m3", "kal16", "espeak:en-gb-x-rp+f3", "awb", "joe", "kal")


def held_out_sentences(text_dir: Path = TEXT_DIR) -> list[Sentence]:
    """The ``test`` split: written by ``python -m training.text``, else built from fortunes."""
    if (text_dir / "test.jsonl").is_file():
        return load_split("test", text_dir)
    return build_sentences(read_fortunes())["test"]


def render_held_out(
    count: int,
    out: Path,
    voices: Sequence[str] = TEST_VOICES,
    min_words: int = 4,
    max_words: int = 14,
    text_dir: Path = TEXT_DIR,
) -> list[dict[str, str]]:
    """Render what is missing of the selection into ``out``; return the selection."""
    sentences = [
        s for s in held_out_sentences(text_dir) if min_words <= len(s.text.split()) <= max_words
    ]
    if len(sentences) < count:
        raise SystemExit(f"only {len(sentences)} test sentences available, {count} asked")
    manifest_path = out / "manifest.json"
    manifest: dict[str, dict[str, str]] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    selection: list[dict[str, str]] = []
    changed = False
    for i, sentence in enumerate(sentences[:count]):
        voice = voices[i % len(voices)]
        key = f"{sentence.id}-{re.sub(r'[^a-z0-9]+', '_', voice.lower())}"
        path = out / "wav" / f"{key}.wav"
        if not path.is_file():
            _render_to(path, voice, sentence.tts)
            manifest[key] = {"text": sentence.text, "voice": voice}
            changed = True
        selection.append({"id": key, "text": sentence.text, "voice": voice, "path": str(path)})
    if changed:
        manifest_path.write_text(json.dumps(manifest, indent=1))
    return selection


def _render_to(path: Path, voice: str, tts_text: str) -> None:
    import soundfile as sf

    from training.samples import render

    audio = render(voice, tts_text)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, required=True, help="sentences to select")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the WAVs")
    parser.add_argument("--voices", nargs="+", default=list(TEST_VOICES), help="round-robin")
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=14)
    parser.add_argument(
        "--text", type=Path, default=TEXT_DIR, help="folder of test.jsonl (training.text)"
    )
    parser.add_argument("--list", type=Path, default=None, help="write the selection here")
    args = parser.parse_args(argv)
    selection = render_held_out(
        args.count, args.out, args.voices, args.min_words, args.max_words, args.text
    )
    if args.list is not None:
        args.list.write_text(json.dumps(selection, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
