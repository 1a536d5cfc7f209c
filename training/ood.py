"""Out-of-domain evaluation sets: text the training corpus never drew from, read by training
voices and by voices held out from training.

The in-domain test set shares its source (Debian ``fortunes``) with the training text, so
it hides what a user meets first: unfamiliar words and sentence shapes. This module builds
five categories from other sources, normalized exactly as training text is
(:func:`training.text.normalize`: lowercase, numbers spelled out, the model's alphabet):

* ``docs``: technical documentation -- the docstrings of a fixed list of Python
  standard-library modules (``pydoc`` prose);
* ``licenses``: legal, RFC-like prose ("must", "shall") -- Debian's
  ``/usr/share/common-licenses`` (package ``base-files``);
* ``addresses``, ``dates_numbers``, ``names``: template sentences filled by the PyPI
  package ``faker`` (``en_US``, seeded) -- street addresses, dates, times, amounts,
  phone numbers, people, companies and towns.

A sentence is kept only if its label is not a training, validation or test label and
fewer than :data:`MAX_NGRAM_OVERLAP` of its word 4-grams occur in that text. The chosen
sentences are committed (``training/ood_sentences.jsonl``, the canonical list: Python and
Faker versions change their text); ``build`` regenerates it, ``render`` speaks it:

* each sentence once by a training voice (``training.testset.TEST_VOICES``, round robin)
  and once by a held-out voice (flite ``rms`` and ``slt``, never trained on);
* ``--in-domain N`` also renders the first N held-out ``test`` sentences the same two ways,
  so in-domain and out-of-domain are compared on the same voices;
* ``OUT/wav/<id>.wav`` (16 kHz mono PCM16, cached) and, with ``--list``, the selection as
  JSON: ``[{"id", "text", "voice", "group", "category", "path"}]``.

Usage::

    python -m training.ood build                     # rewrite training/ood_sentences.jsonl
    python -m training.ood render --out benchmarks/out/ood --in-domain 60 --list sel.json
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evaluation import numbers
from training.model import SAMPLE_RATE
from training.testset import TEST_VOICES, held_out_sentences
from training.text import (
    DEFAULT_OUT as TEXT_DIR,
)
from training.text import (
    WORDNET_DIR,
    build_extra,
    build_sentences,
    normalize,
    read_fortunes,
    read_wordnet,
    split_sentences,
)

SENTENCES_FILE = Path(__file__).resolve().parent / "ood_sentences.jsonl"
DEFAULT_OUT = Path(__file__).resolve().parent / "work" / "ood"
CATEGORIES = ("docs", "licenses", "addresses", "dates_numbers", "names")
PER_CATEGORY = 70
#: Voices never trained on (``training.synth`` refuses ``rms`` and ``slt`` for training).
HELD_OUT_VOICES = ("flite:rms", "flite:slt")
TRAINING_VOICES = TEST_VOICES
NGRAM = 4
MAX_NGRAM_OVERLAP = 0.5
MIN_OOD_WORDS = 4
SEED = 33
LICENSES_DIR = Path("/usr/share/common-licenses")
LICENSES = ("Apache-2.0", "GPL-3", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "Artistic", "CC0-1.0")
DOC_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email.message", "enum", "fnmatch", "fractions", "ftplib", "functools",
    "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser",
    "http.client", "http.cookiejar", "imaplib", "inspect", "io", "ipaddress", "itertools",
    "json", "locale", "logging", "mailbox", "mimetypes", "multiprocessing", "numbers",
    "operator", "optparse", "os", "pathlib", "pickle", "platform", "plistlib", "poplib",
    "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shlex",
    "shutil", "signal", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics",
    "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time",
    "timeit", "tokenize", "trace", "traceback", "typing", "unittest", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom", "zipfile",
    "zlib",
)  # fmt: skip
# Code, not prose: identifiers, calls, operators, dotted names, CamelCase, ellipses.
_CODE = re.compile(r"[()_=<>\[\]{}`*#@|\\/:;]|\w\.\w|[a-z][A-Z]|\.\.\.|>>>|\bNone\b|\bTrue\b")
_CODE_START = re.compile(r"(?:import|from|def|class|return)\s+\w+\s*$|import\s")
_ENUMERATOR = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.|\(?[a-z0-9]{1,3}\))\s+")


@dataclass(frozen=True)
class OodSentence:
    """One out-of-domain sentence: stable id, category, where it came from, TTS input, label."""

    id: str
    category: str
    source: str
    tts: str
    text: str


# --------------------------------------------------------------------------- sources


def _prose_sentences(paragraphs: Iterable[str]) -> Iterator[str]:
    """Hard-wrapped paragraphs → sentences (enumerators like ``2.`` or ``(a)`` stripped)."""
    for paragraph in paragraphs:
        flat = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
        flat = _ENUMERATOR.sub("", flat)
        for sentence in split_sentences(flat):
            if not _CODE.search(sentence) and not _CODE_START.match(sentence):
                yield sentence


def doc_sentences() -> Iterator[tuple[str, str]]:
    """``(source, sentence)`` from the docstrings of :data:`DOC_MODULES` and their members."""
    import importlib
    import warnings

    for name in DOC_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(module) or ""]
        with warnings.catch_warnings():  # deprecated aliases (typing.re) warn when read
            warnings.simplefilter("ignore", DeprecationWarning)
            for member_name, member in sorted(vars(module).items()):
                if member_name.startswith("_") or inspect.getmodule(member) is not module:
                    continue
                docs.append(inspect.getdoc(member) or "")
        for doc in docs:
            for sentence in _prose_sentences(re.split(r"\n\s*\n", doc)):
                yield f"python:{name}", sentence


def license_sentences(directory: Path = LICENSES_DIR) -> Iterator[tuple[str, str]]:
    """``(source, sentence)`` from the licence texts Debian installs with ``base-files``."""
    for name in LICENSES:
        path = directory / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for sentence in _prose_sentences(re.split(r"\n\s*\n", text)):
                yield f"license:{name}", sentence


def _spoken_time(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50))
    tail = "o'clock" if minute == 0 else ("oh " if minute < 10 else "") + numbers.cardinal(minute)
    return f"{numbers.cardinal(hour)} {tail} {rng.choice(('in the morning', 'in the evening'))}"


def _spoken_date(fake: object, rng: random.Random) -> str:
    day = fake.date_between(start_date="-40y", end_date="+10y")  # type: ignore[attr-defined]
    return f"{day.strftime('%B')} {numbers.ordinal(day.day)}, {numbers.year(day.year)}"


def _amount(rng: random.Random) -> str:
    dollars = rng.choice((rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 98000)))
    cents = rng.choice((0, 0, 0, 5, 25, 49, 99))
    text = f"{numbers.cardinal(dollars)} dollars"
    return text + (f" and {numbers.cardinal(cents)} cents" if cents else "")


def _phone(rng: random.Random) -> str:
    area = str(rng.randint(201, 989))
    return numbers.digits(area) + ", " + numbers.digits(f"{rng.randint(0, 9999999):07d}")


def generated_sentences(category: str, seed: int = SEED) -> Iterator[tuple[str, str]]:
    """``(source, sentence)``: endless template sentences of one generated category."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(f"{seed}-{category}")
    rng = random.Random(f"{seed}-{category}")
    templates: dict[str, Sequence[Callable[[], str]]] = {
        "addresses": (
            lambda: (
                f"Please ship the parcel to {numbers.cardinal(int(fake.building_number()))} "
                f"{fake.street_name()}, {fake.city()}, {fake.state()}."
            ),
            lambda: (
                f"The new office is at {numbers.cardinal(rng.randint(1, 999))} "
                f"{fake.street_name()} in {fake.city()}."
            ),
            lambda: (
                f"Turn left onto {fake.street_name()} and stop at number "
                f"{numbers.cardinal(rng.randint(2, 400))}."
            ),
            lambda: (
                f"Her mailing address is {numbers.cardinal(rng.randint(1, 9999))} "
                f"{fake.street_name()}, zip code {numbers.digits(fake.postcode()[:5])}."
            ),
            lambda: f"We moved from {fake.city()}, {fake.state()} to {fake.city()} last year.",
        ),
        "dates_numbers": (
            lambda: f"The invoice dated {_spoken_date(fake, rng)} comes to {_amount(rng)}.",
            lambda: f"Your appointment is on {_spoken_date(fake, rng)} at {_spoken_time(rng)}.",
            lambda: f"Call me back at {_phone(rng)} before {_spoken_time(rng)}.",
            lambda: (
                f"Sales grew by {numbers.cardinal(rng.randint(2, 95))} percent to "
                f"{_amount(rng)} in {numbers.year(rng.randint(1985, 2030))}."
            ),
            lambda: (
                f"The train leaves from platform {numbers.cardinal(rng.randint(1, 24))} "
                f"at {_spoken_time(rng)}, {_spoken_date(fake, rng)}."
            ),
            lambda: (
                f"Order {numbers.cardinal(rng.randint(3, 480))} boxes by the "
                f"{numbers.ordinal(rng.randint(1, 31))} of {fake.month_name()}."
            ),
        ),
        "names": (
            lambda: f"{fake.name()} from {fake.company()} will call you about the contract.",
            lambda: (
                f"Please forward the report to {fake.first_name()} {fake.last_name()} "
                f"in {fake.city()}."
            ),
            lambda: (
                f"{fake.first_name()} and {fake.first_name()} {fake.last_name()} "
                f"met at {fake.company()}."
            ),
            lambda: f"Our new manager, {fake.name()}, used to work for {fake.company()}.",
            lambda: f"Ask {fake.first_name()} whether {fake.last_name()} signed the lease.",
        ),
    }
    chosen = templates[category]
    while True:
        yield f"faker:{category}", chosen[rng.randrange(len(chosen))]()


# --------------------------------------------------------------------------- selection


def _ngrams(label: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = label.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class TrainingText:
    """The labels of every sentence of the training text source (and its splits) and their
    word n-grams, to keep out-of-domain sentences out of them."""

    labels: set[str]
    ngrams: set[tuple[str, ...]]

    @classmethod
    def load(cls) -> TrainingText:
        """Fortunes (train, valid, test) and WordNet examples, as ``training.text`` builds them."""
        splits = build_sentences(read_fortunes())
        labels = {s.text for items in splits.values() for s in items}
        if (WORDNET_DIR / "data.noun").exists():
            labels |= {s.text for s in build_extra(read_wordnet(), labels)}
        grams: set[tuple[str, ...]] = set()
        for label in labels:
            grams |= _ngrams(label)
        return cls(labels, grams)

    def overlap(self, label: str) -> float:
        """Fraction of the label's word 4-grams found in the training text (0 if none)."""
        grams = _ngrams(label)
        return sum(g in self.ngrams for g in grams) / len(grams) if grams else 0.0

    def admits(self, label: str) -> bool:
        return label not in self.labels and self.overlap(label) < MAX_NGRAM_OVERLAP


def select(
    category: str,
    raw: Iterable[tuple[str, str]],
    training: TrainingText,
    count: int,
    *,
    pool: int | None = None,
) -> list[OodSentence]:
    """``count`` admissible sentences of one category: normalized, de-duplicated, then
    picked in the order of a hash of their label (spread over sources, stable)."""
    found: dict[str, OodSentence] = {}
    for source, sentence in raw:
        normalized = normalize(sentence)
        if normalized is None:
            continue
        tts, label = normalized
        if len(label.split()) < MIN_OOD_WORDS or label in found or not training.admits(label):
            continue
        digest = hashlib.sha1(f"{category}:{label}".encode()).hexdigest()
        found[label] = OodSentence(f"{category[:4]}-{digest[:10]}", category, source, tts, label)
        if pool is not None and len(found) >= pool:
            break
    chosen = sorted(found.values(), key=lambda s: s.id)[:count]
    if len(chosen) < count:
        raise SystemExit(f"{category}: only {len(chosen)} admissible sentences, {count} asked")
    return chosen


def build(training: TrainingText, per_category: int = PER_CATEGORY) -> list[OodSentence]:
    """Every category's sentences, in category order (deterministic)."""
    out: list[OodSentence] = []
    for category in CATEGORIES:
        if category == "docs":
            out += select(category, doc_sentences(), training, per_category)
        elif category == "licenses":
            out += select(category, license_sentences(), training, per_category)
        else:  # endless generators: a pool 4x the count to pick from
            raw = generated_sentences(category)
            out += select(category, raw, training, per_category, pool=4 * per_category)
    return out


def write_sentences(items: Sequence[OodSentence], path: Path = SENTENCES_FILE) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(asdict(item)) + "\n")


def load_sentences(path: Path = SENTENCES_FILE) -> list[OodSentence]:
    """The committed out-of-domain sentences."""
    with open(path, encoding="utf-8") as fh:
        return [OodSentence(**json.loads(line)) for line in fh if line.strip()]


# --------------------------------------------------------------------------- rendering


def render_voice(voice: str, text: str) -> np.ndarray:
    """A training voice (``training.samples.render``) or a held-out flite voice, fixed
    settings, edge silence trimmed, peak 0.7."""
    if not voice.startswith("flite:"):
        from training.samples import render

        return render(voice, text)
    from training.synth import _read_resampled, trim_silence

    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        cmd = ["flite", "-voice", voice.split(":", 1)[1], "-t", text, "-o", wav]
        subprocess.run(cmd, check=True, capture_output=True)
        audio = trim_silence(_read_resampled(wav), keep_s=0.0)
    return audio * (0.7 / max(1e-6, float(np.abs(audio).max())))


def plan(
    sentences: Sequence[OodSentence], per_category: int | None = None
) -> list[tuple[OodSentence, str, str]]:
    """``(sentence, voice, group)``: every sentence (the first ``per_category`` of each
    category) once by a training voice and once by a held-out voice, both round robin."""
    jobs: list[tuple[OodSentence, str, str]] = []
    seen: dict[str, int] = {}
    for sentence in sentences:
        i = seen.get(sentence.category, 0)
        seen[sentence.category] = i + 1
        if per_category is not None and i >= per_category:
            continue
        jobs.append((sentence, TRAINING_VOICES[i % len(TRAINING_VOICES)], "training"))
        jobs.append((sentence, HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)], "held-out"))
    return jobs


def in_domain(count: int, text_dir: Path = TEXT_DIR) -> list[OodSentence]:
    """The first ``count`` held-out fortunes test sentences (4-14 words), as category
    ``in-domain``: the same sentences ``training.testset`` renders."""
    chosen = [s for s in held_out_sentences(text_dir) if 4 <= len(s.text.split()) <= 14]
    return [OodSentence(s.id, "in-domain", "fortunes:test", s.tts, s.text) for s in chosen[:count]]


def render(jobs: Sequence[tuple[OodSentence, str, str]], out: Path) -> list[dict[str, str]]:
    """Render what is missing into ``out/wav``; return the selection records."""
    import soundfile as sf

    selection = []
    for sentence, voice, group in jobs:
        key = f"{sentence.id}-{re.sub(r'[^a-z0-9]+', '_', voice.lower())}"
        path = out / "wav" / f"{key}.wav"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), render_voice(voice, sentence.tts), SAMPLE_RATE, subtype="PCM_16")
        selection.append(
            {
                "id": key,
                "text": sentence.text,
                "voice": voice,
                "group": group,
                "category": sentence.category,
                "path": str(path),
            }
        )
    return selection


def main(argv: list[str] | None = None) -> None:
    """``build``: rewrite the sentence list; ``render``: speak it (and in-domain sentences)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="select the sentences from their sources")
    b.add_argument("--per-category", type=int, default=PER_CATEGORY)
    b.add_argument("--sentences", type=Path, default=SENTENCES_FILE)
    r = sub.add_parser("render", help="synthesize the sentences with both voice groups")
    r.add_argument("--sentences", type=Path, default=SENTENCES_FILE)
    r.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the WAVs")
    r.add_argument("--per-category", type=int, default=None, help="first N of each category")
    r.add_argument("--in-domain", type=int, default=0, help="also N in-domain test sentences")
    r.add_argument("--text", type=Path, default=TEXT_DIR, help="folder of training.text output")
    r.add_argument("--list", type=Path, default=None, help="write the selection here (JSON)")
    args = parser.parse_args(argv)
    if args.command == "build":
        items = build(TrainingText.load(), args.per_category)
        write_sentences(items, args.sentences)
        for category in CATEGORIES:
            chosen = [s for s in items if s.category == category]
            words = sum(len(s.text.split()) for s in chosen)
            print(f"{category}: {len(chosen)} sentences, {words} words")
        print(f"wrote {len(items)} sentences to {args.sentences}", file=sys.stderr)
        return
    sentences = in_domain(args.in_domain, args.text) if args.in_domain else []
    sentences += load_sentences(args.sentences)
    selection = render(plan(sentences, args.per_category), args.out)
    if args.list is not None:
        args.list.write_text(json.dumps(selection, indent=1) + "\n", encoding="utf-8")
    print(f"{len(selection)} utterances in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
