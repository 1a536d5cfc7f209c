"""Build the sentence lists (train / valid / test) from Debian's ``fortunes``.

A second, training-only source adds breadth: the usage examples of WordNet
(Debian's ``wordnet-base``; ~40 000 short sentences, twice the fortunes' words).
They go to ``train-wordnet.jsonl`` so that the fortunes splits, and with them
every test set, stay exactly what they were; examples that repeat a fortunes
sentence, or whose hash would put them in ``valid`` or ``test``, are dropped.

Each sentence is kept in two forms:

* ``tts``: what the speech synthesizers read -- numbers already spelled out,
  only letters, apostrophes and light punctuation (for natural prosody), so
  no engine can expand an abbreviation or a digit differently from the label;
* ``text``: the transcript label -- lowercase ``a-z``, apostrophe and single
  spaces, i.e. exactly what the 32-token CTC vocabulary can express.

The split is a hash of the label, so it is stable whatever order or subset of
fortune files is read, and a test sentence is never trained on by any voice.

Usage: ``python -m training.text`` (writes ``training/work/text/*.jsonl``;
``--no-wordnet`` skips the second source).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from evaluation import numbers

FORTUNE_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_SPLIT = "train-wordnet"
DEFAULT_OUT = Path(__file__).resolve().parent / "work" / "text"
MIN_WORDS = 3
MAX_WORDS = 15
TEST_PERCENT = 3
VALID_PERCENT = 1

# Characters that TTS engines would read aloud in unpredictable ways: drop the
# whole sentence rather than risk a label that does not match the audio.
_FORBIDDEN = re.compile(r"[A-Za-z]\.[A-Za-z]|[@#*_~^|\\/<>=+{}\[\]`]|https?:|www\.|\.com\b")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")
_ABBREVIATION = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Prof|Gen|Capt|Lt|Col|Sgt|Mt|No|Inc|Ltd|Co)\."
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ATTRIBUTION = re.compile(r"^\s*(--|―|—)")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "`": "'"})


@dataclass(frozen=True)
class Sentence:
    """One utterance text: stable id, TTS input and CTC label."""

    id: str
    tts: str
    text: str


def read_fortunes(directory: Path = FORTUNE_DIR) -> Iterator[str]:
    """Yield the raw fortunes (one string each) of every fortune file, sorted by name."""
    for path in sorted(directory.iterdir()):
        if path.suffix or not path.is_file():
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        for block in raw.split("\n%\n"):
            lines = [ln for ln in block.splitlines() if not _ATTRIBUTION.match(ln)]
            yield " ".join(ln.strip() for ln in lines if ln.strip())


def read_wordnet(directory: Path = WORDNET_DIR) -> Iterator[str]:
    """Yield WordNet's usage examples (the quoted parts of its glosses), first letter capitalized.

    WordNet examples rarely start with a capital; capitalizing keeps
    ``normalize`` and the synthesizers' prosody the same as for fortunes.
    """
    for pos in ("noun", "verb", "adj", "adv"):
        with open(directory / f"data.{pos}", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:  # licence header
                    continue
                for example in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                    example = example.strip()
                    if example:
                        yield example[0].upper() + example[1:]


def build_extra(raw: Iterable[str], exclude: set[str]) -> list[Sentence]:
    """Training-only sentences of a second source: new labels whose hash says ``train``."""
    items = [s for s in _new_sentences(raw, set(exclude)) if split_of(s.text) == "train"]
    items.sort(key=lambda s: s.id)
    return items


def split_sentences(fortune: str) -> Iterator[str]:
    """Split one fortune into sentences at ``.``, ``!`` or ``?`` followed by a capital."""
    for part in _SENTENCE_END.split(fortune):
        part = part.strip()
        if part:
            yield part


def _expand_number(match: re.Match[str]) -> str:
    token = match.group(0)
    money = token.startswith("$")
    token = token.lstrip("$").replace(",", "")
    suffix_match = re.fullmatch(r"(\d+)(st|nd|rd|th)", token)
    if suffix_match:
        return " " + numbers.ordinal(int(suffix_match.group(1))) + " "
    if "." in token:
        whole, frac = token.split(".", 1)
        words = numbers.cardinal(int(whole or "0")) + " point " + numbers.digits(frac)
    elif token.endswith("s"):  # 1960s, 60s
        value = int(token[:-1])
        words = numbers.year(value) if len(token) == 5 else numbers.cardinal(value)
        words = words[:-1] + "ies" if words.endswith("y") else words + "s"
    else:
        value = int(token)
        is_year = not money and len(token) == 4 and (1100 <= value <= 1999 or 2010 <= value <= 2099)
        words = numbers.year(value) if is_year else numbers.cardinal(value)
    if money:
        words += " dollar" if token == "1" else " dollars"
    return " " + words + " "


_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th|s)?\b")


def normalize(sentence: str) -> tuple[str, str] | None:
    """Return ``(tts, label)`` for a sentence, or ``None`` if it is unsafe to synthesize."""
    s = sentence.translate(_QUOTES)
    if _FORBIDDEN.search(s) or _ACRONYM.search(s) or _ABBREVIATION.search(s):
        return None
    s = s.replace("&", " and ").replace("%", " percent ")
    s = _NUMBER.sub(_expand_number, s)
    if re.search(r"\d|\$", s):
        return None
    s = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", s)  # well-known -> well known
    s = re.sub(r"[;:]", ",", s)
    s = re.sub(r"[\"()\-]+", " ", s)
    s = re.sub(r"(^|\s)'+|'+(\s|$)", r"\1 \2", s)  # quote marks, not apostrophes
    if re.search(r"[^A-Za-z' ,.!?]", s):
        return None
    tts = re.sub(r"\s+", " ", s).strip()
    tts = re.sub(r"\s+([,.!?])", r"\1", tts).lower()
    label = re.sub(r"[,.!?]", " ", tts)
    label = re.sub(r"\s+", " ", label).strip()
    if not re.search(r"[a-z]", label) or "''" in label:
        return None
    if not MIN_WORDS <= len(label.split()) <= MAX_WORDS:
        return None
    if not re.search(r"[.!?]$", tts):
        tts += "."
    return tts, label


def split_of(label: str) -> str:
    """Assign a sentence to ``train``, ``valid`` or ``test`` from a hash of its label."""
    bucket = int(hashlib.sha1(label.encode()).hexdigest(), 16) % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + VALID_PERCENT:
        return "valid"
    return "train"


def _new_sentences(raw: Iterable[str], seen: set[str]) -> Iterator[Sentence]:
    """Normalize raw sentences, skipping unsafe ones and labels already in ``seen`` (updated)."""
    for sentence in raw:
        normalized = normalize(sentence)
        if normalized is None or normalized[1] in seen:
            continue
        tts, label = normalized
        seen.add(label)
        yield Sentence(hashlib.sha1(label.encode()).hexdigest()[:12], tts, label)


def build_sentences(fortunes: Iterable[str]) -> dict[str, list[Sentence]]:
    """Normalize, de-duplicate and split all sentences, in a deterministic order."""
    splits: dict[str, list[Sentence]] = {"train": [], "valid": [], "test": []}
    raw = (sentence for fortune in fortunes for sentence in split_sentences(fortune))
    for item in _new_sentences(raw, set()):
        splits[split_of(item.text)].append(item)
    for items in splits.values():
        items.sort(key=lambda s: s.id)
    return splits


def load_split(name: str, directory: Path = DEFAULT_OUT) -> list[Sentence]:
    """Read one split written by :func:`main`."""
    with open(directory / f"{name}.jsonl", encoding="utf-8") as fh:
        return [Sentence(**json.loads(line)) for line in fh]


def main(argv: list[str] | None = None) -> None:
    """Write ``train/valid/test.jsonl`` and print their sizes."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-wordnet", action="store_true", help="fortunes only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[Sentence]] = build_sentences(read_fortunes())
    if not args.no_wordnet:
        if (WORDNET_DIR / "data.noun").exists():
            labels = {s.text for items in splits.values() for s in items}
            splits[WORDNET_SPLIT] = build_extra(read_wordnet(), labels)
        else:
            print(f"{WORDNET_DIR} missing (apt-get install wordnet-base): fortunes only")
    for name, items in splits.items():
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(asdict(item)) + "\n")
        words = sum(len(s.text.split()) for s in items)
        print(f"{name}: {len(items)} sentences, {words} words")


if __name__ == "__main__":
    main()
