"""Build the word n-gram LM for optional beam-search decoding (``streaming/lm.py``).

A 3-gram with modified Kneser-Ney smoothing, estimated by KenLM's ``lmplz`` from the
**train** split of ``training/text.py`` only. Test and validation sentences are held
out by construction (the split is a hash of the label); this script checks it again.

``lmplz`` is not in the kenlm wheel. On first use it is compiled from the kenlm sdist on
PyPI into ``training/work/kenlm/`` (about 2 minutes on 2 cores; needs Debian
``build-essential cmake libboost-program-options-dev libboost-system-dev
libboost-thread-dev zlib1g-dev``). A reference implementation beats a home-made
estimator that would need its own proof of correctness.

The output is gzip-compressed ARPA: text (diffable, portable, unlike KenLM's binary
format, which depends on the kenlm build), read directly by kenlm, about 1.8 MB for the
fortunes text (6 MB uncompressed), so it is small enough to ship with the model.

Usage::

    python -m training.lm              # -> training/work/lm/lm.arpa.gz (git-ignored)
    python -m training.lm --package    # also -> streaming/models/tiny-en/lm.arpa.gz
"""

from __future__ import annotations

import argparse
import gzip
import math
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from training.text import DEFAULT_OUT as TEXT_DIR
from training.text import load_split

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "work" / "lm" / "lm.arpa.gz"
PACKAGE_OUT = REPO / "streaming" / "models" / "tiny-en" / "lm.arpa.gz"
KENLM_DIR = HERE / "work" / "kenlm"
KENLM_VERSION = "0.3.0"


def lm_sentences(text_dir: Path = TEXT_DIR) -> list[str]:
    """Training-split labels; fails if any held-out (test/valid) sentence slipped in."""
    train = [s.text for s in load_split("train", text_dir)]
    held_out = {s.text for name in ("test", "valid") for s in load_split(name, text_dir)}
    leaked = held_out.intersection(train)
    if leaked:
        raise ValueError(f"{len(leaked)} held-out sentences in the LM text, e.g. {min(leaked)!r}")
    return train


def build_kenlm(directory: Path = KENLM_DIR, version: str = KENLM_VERSION) -> Path:
    """Compile ``lmplz`` from the kenlm sdist on PyPI; return its path."""
    lmplz = directory / "build" / "bin" / "lmplz"
    if lmplz.is_file():
        return lmplz
    source, build = directory / "src", directory / "build"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(build, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"kenlm=={version}", "--no-binary",
             ":all:", "--no-deps", "--no-build-isolation", "-q", "-d", tmp],
            check=True,
        )  # fmt: skip
        with tarfile.open(next(Path(tmp).glob("kenlm-*.tar.gz"))) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(next(p for p in Path(tmp).iterdir() if p.is_dir()), source)
    build.mkdir()
    log = directory / "build.log"
    print(f"compiling KenLM {version} into {directory} (log: {log})", flush=True)
    with open(log, "w", encoding="utf-8") as fh:
        for command in (
            ["cmake", "../src", "-DCMAKE_BUILD_TYPE=Release"],
            ["make", "-j2", "lmplz"],
        ):
            if subprocess.run(command, cwd=build, stdout=fh, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(
                    f"{' '.join(command)} failed, see {log} (Debian packages: "
                    "build-essential cmake libboost-program-options-dev "
                    "libboost-system-dev libboost-thread-dev zlib1g-dev)"
                )
    return lmplz


def find_lmplz() -> Path:
    """``lmplz`` from PATH, else our own build (compiled on first use)."""
    found = shutil.which("lmplz")
    return Path(found) if found else build_kenlm()


def build_lm(sentences: list[str], out: Path, order: int = 3, lmplz: Path | None = None) -> Path:
    """Run ``lmplz`` on the sentences and write a deterministic ``.arpa.gz`` to ``out``."""
    lmplz = lmplz or find_lmplz()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        arpa = subprocess.run(
            [str(lmplz), "-o", str(order), "-S", "512M", "-T", tmp, "--discount_fallback"],
            input="\n".join(sentences) + "\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as fh:
        fh.write(arpa.encode("utf-8"))  # mtime=0 and no name: same text -> same bytes
    partial.replace(out)
    return out


def perplexity(lm_path: Path, sentences: list[str]) -> tuple[float, float]:
    """(per-word perplexity incl. ``</s>``, out-of-vocabulary word rate) on the sentences."""
    import kenlm

    model = kenlm.Model(str(lm_path))
    log10 = sum(model.score(s, bos=True, eos=True) for s in sentences)
    tokens = sum(len(s.split()) + 1 for s in sentences)
    words = [w for s in sentences for w in s.split()]
    oov = sum(w not in model for w in words) / max(1, len(words))
    return math.pow(10.0, -log10 / max(1, tokens)), oov


def main(argv: list[str] | None = None) -> None:
    """Build the LM, report its size and test perplexity, optionally ship it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR)
    parser.add_argument(
        "--package", action="store_true", help=f"also copy it to {PACKAGE_OUT.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    sentences = lm_sentences(args.text_dir)
    out = build_lm(sentences, args.out, args.order)
    words = sum(len(s.split()) for s in sentences)
    print(f"{out}: {args.order}-gram from {len(sentences)} sentences ({words} words), "
          f"{out.stat().st_size / 1e6:.2f} MB")  # fmt: skip
    try:
        test = [s.text for s in load_split("test", args.text_dir)]
        ppl, oov = perplexity(out, test)
        print(f"test sentences: perplexity {ppl:.0f}, OOV words {oov:.1%}")
    except ImportError:
        print("(pip install kenlm to report the test perplexity)")
    if args.package:
        PACKAGE_OUT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, PACKAGE_OUT)
        PACKAGE_OUT.chmod(0o644)
        print(f"copied to {PACKAGE_OUT}")


if __name__ == "__main__":
    main()
