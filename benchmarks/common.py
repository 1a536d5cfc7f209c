"""Shared helpers for the benchmark scripts.

Machine description, percentiles, JSON/PNG result files, WER/CER, model resolution, a
streaming-server subprocess with CPU/RSS sampling, Prometheus scraping, the held-out test
set (synthesized once, cached under ``benchmarks/out/``) and a simulated-real-time driver
for the pure :class:`streaming.session.Session`.

Nothing heavy happens at import time: torch, transformers, psutil and matplotlib are
imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
OUT_DIR = BENCH_DIR / "out"
RESULTS_DIR = BENCH_DIR / "results"
MODELS_DIR = OUT_DIR / "models"
TESTSET_DIR = OUT_DIR / "testset"
SAMPLE_RATE = 16000

# ---------------------------------------------------------------------------------------
# machine


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, GPU, library versions, load."""
    import torch
    import transformers

    from streaming.cpu import cpu_flags

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": _lscpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": sorted(f for f in ("avx2", "avx512f", "amx_bf16") if f in flags),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "training_paused": _training_paused(),
        "other_busy_processes": _busy_processes(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    with contextlib.suppress(ImportError):
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    return info


def _training_paused() -> bool | None:
    """True when a background ``training.train`` exists and is stopped (SIGSTOP)."""
    try:
        import psutil
    except ImportError:
        return None
    found = False
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "-m training.train" in cmd and "python" in cmd:
            found = True
            if proc.info.get("status") != psutil.STATUS_STOPPED:
                return False
    return True if found else None


def _busy_processes(threshold: float = 10.0, sample_s: float = 0.5) -> list[str] | None:
    """Other processes using more than ``threshold`` % CPU right now (shared machines)."""
    try:
        import psutil
    except ImportError:
        return None
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(sample_s)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            cpu = p.cpu_percent(None)
            if cpu >= threshold:
                cmd = " ".join(p.info.get("cmdline") or [])[:80]
                busy.append(f"{cpu:.0f}% {cmd}")
    return busy


def machine_slug(info: dict[str, Any]) -> str:
    """Short file-name tag: ``cpu-xeon-2c``, ``nvidia-h100-80gb-hbm3``…"""
    if info.get("gpu"):
        name = str(info["gpu"])
    else:
        name = str(info["cpu"])
        for noise in ("(R)", "(TM)", "CPU", "Processor", "Intel", "AMD", "@"):
            name = name.replace(noise, " ")
        name = re.sub(r"\d+\.\d+\s*GHz", " ", name)
        name = f"cpu {name} {info.get('cores')}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def machine_label(info: dict[str, Any]) -> str:
    """For plot titles: the GPU, else ``<cpu model>, <cores> cores``."""
    return str(info["gpu"] or f"{info['cpu']}, {info['cores']} cores")


# ---------------------------------------------------------------------------------------
# statistics and result files


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (an observed value; the same rule as client.latency)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def summarize(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """count, p50, p90, p95, p99, mean, max (None when there are no values)."""
    vals = [float(v) for v in values]
    if not vals:
        return {
            "count": 0,
            "p50": None,
            "p90": None,
            "p95": None,
            "p99": None,
            "mean": None,
            "max": None,
        }
    out: dict[str, Any] = {"count": len(vals)}
    for p in (50, 90, 95, 99):
        out[f"p{p}"] = round(percentile(vals, p), digits)
    out["mean"] = round(sum(vals) / len(vals), digits)
    out["max"] = round(max(vals), digits)
    return out


def latency_summary(trackers: Iterable[Any], final: bool = True) -> dict[str, Any]:
    """``partial_ms``, ``commit_ms`` (and ``final_ms``): :func:`summarize` over every word
    (utterance) of some ``client.latency.LatencyTracker`` s, in their order."""
    trackers = list(trackers)
    out = {
        "partial_ms": summarize([v for t in trackers for v in t.partial_latencies()]),
        "commit_ms": summarize([v for t in trackers for v in t.commit_latencies()]),
    }
    if final:
        out["final_ms"] = summarize([v for t in trackers for v in t.final_latencies()])
    return out


def word_counts(trackers: Iterable[Any]) -> dict[str, int]:
    """``words_shown`` and ``words_retracted`` (shown, never committed) of some trackers."""
    words = [w for t in trackers for w in t.words]
    return {"words_shown": len(words), "words_retracted": sum(1 for w in words if w.retracted)}


def result_path(name: str, slug: str, suffix: str, results_dir: Path | None = None) -> Path:
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{slug}{suffix}"


def write_json(name: str, slug: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    path = result_path(name, slug, ".json", results_dir)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: object) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def result_header(
    args: argparse.Namespace,
    info: dict[str, Any],
    bench: BenchModel,
    *,
    model_source: bool = True,
) -> dict[str, Any]:
    """The first keys of every result file: benchmark, command, machine and model
    (label, source unless ``model_source=False``, note, fingerprint)."""
    head: dict[str, Any] = {
        "benchmark": args.benchmark,
        "command": args.command_line,
        "machine": info,
        "model": bench.label,
    }
    if model_source:
        head["model_source"] = bench.source
    head["model_note"] = bench.note
    head["model_fingerprint"] = model_fingerprint(bench.source)
    return head


def save_results(
    data: dict[str, Any],
    args: argparse.Namespace,
    plot: Callable[..., Any] | None = None,
    lead: str = "",
) -> tuple[str, str]:
    """Write ``<benchmark>[-<tag>]-<machine>.json`` to ``args.results_dir`` and say so
    (after ``lead``), then its PNG when ``plot`` is given; returns (name, machine slug)."""
    slug = machine_slug(data["machine"])
    name = str(data["benchmark"]) + (f"-{args.tag}" if args.tag else "")
    print(f"{lead}wrote {write_json(name, slug, data, args.results_dir)}")
    if plot is not None:
        maybe_plot(plot, data, name, slug, args.results_dir)
    return name, slug


def save_figure(fig: Any, name: str, slug: str, results_dir: Path | None = None) -> Path:
    path = result_path(name, slug, ".png", results_dir)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def maybe_plot(
    plot: Any, data: dict[str, Any], name: str, slug: str, results_dir: Path | None
) -> Path | None:
    """Draw the PNG when matplotlib is installed (else say so: ``python -m
    benchmarks.plots FOLDER`` draws it later from the JSON)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no PNG (python -m benchmarks.plots draws it later)")
        return None
    path: Path = plot(data, name, slug, results_dir)
    print(f"wrote {path}")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot with a non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arg_parser(description: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring, kept as written, is the ``--help`` text."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_result_options(
    p: argparse.ArgumentParser, tag_help: str | None = None, dir_help: str | None = None
) -> None:
    """``--tag`` (added to the result file names) and ``--results-dir``."""
    p.add_argument("--tag", default="", help=tag_help)
    p.add_argument("--results-dir", type=Path, default=None, help=dir_help)


def parse_benchmark_args(
    p: argparse.ArgumentParser, benchmark: str, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``p.parse_args(argv)`` plus ``benchmark`` and ``command_line`` (how it was started,
    for the result file)."""
    args = p.parse_args(argv)
    args.benchmark = benchmark
    args.command_line = f"python -m benchmarks.{benchmark} " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    return args


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """A plain aligned text table (None prints as '-')."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# error rates


def normalize_text(text: str) -> str:
    """Lowercase a-z, apostrophe and single spaces (what the CTC vocabulary can write)."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def edit_distance(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCounts:
    """Corpus-level edit counts (WER/CER = errors / reference length)."""

    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0

    def add(self, reference: str, hypothesis: str) -> None:
        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        self.word_errors += edit_distance(ref.split(), hyp.split())
        self.words += len(ref.split())
        self.char_errors += edit_distance(ref, hyp)
        self.chars += len(ref)

    @property
    def wer(self) -> float:
        return self.word_errors / max(1, self.words)

    @property
    def cer(self) -> float:
        return self.char_errors / max(1, self.chars)

    def to_json(self) -> dict[str, Any]:
        return {"wer": round(self.wer, 4), "cer": round(self.cer, 4), "words": self.words}


def error_rates(pairs: Sequence[tuple[str, str]]) -> ErrorCounts:
    counts = ErrorCounts()
    for ref, hyp in pairs:
        counts.add(ref, hyp)
    return counts


# ---------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class BenchModel:
    """What ``--model`` resolved to: something ``from_pretrained`` loads, and a label."""

    source: str
    label: str
    note: str = ""

    @property
    def described(self) -> str:
        """The label, and the note in brackets when there is one."""
        return self.label + (f" ({self.note})" if self.note else "")


def resolve_model(name: str) -> BenchModel:
    """Resolve a benchmark model name.

    * ``tiny-en``: the bundled model; while it is not exported yet, a snapshot of the
      training checkpoint (``benchmarks/out/models/tiny-en-snapshot``, made by
      ``python -m training.export --out …``) or, failing that, random weights in its shape
      (speed only);
    * ``tiny-en-random``: random weights in the bundled model's exact shape (speed only);
    * ``base-random`` / ``tiny-random``: random weights in wav2vec2-base's shape / the test
      suite's toy shape (speed only);
    * anything else: a folder or hub id, passed to ``from_pretrained`` unchanged.
    """
    if name == "tiny-en":
        from streaming.model import bundled_model_path

        bundled = bundled_model_path("tiny-en")
        if bundled is not None:
            return BenchModel(str(bundled), "tiny-en")
        snapshot = MODELS_DIR / "tiny-en-snapshot"
        if (snapshot / "config.json").is_file():
            return BenchModel(
                str(snapshot),
                "tiny-en-snapshot",
                "bundled model not exported yet: a snapshot of the training checkpoint",
            )
        return _random_model("tiny-en-random")
    if name in ("tiny-en-random", "base-random", "tiny-random"):
        return _random_model(name)
    return BenchModel(name, Path(name).name if Path(name).exists() else name)


def model_fingerprint(source: str) -> dict[str, Any]:
    """Which weights a result was measured with (the bundled model is re-exported as it
    trains): training step from MODEL_CARD.md and a hash of the weights file."""
    import hashlib

    folder = Path(source)
    out: dict[str, Any] = {"source": source}
    card = folder / "MODEL_CARD.md"
    if card.is_file():
        m = re.search(r"This checkpoint: step (\d+)", card.read_text(encoding="utf-8"))
        out["training_step"] = int(m.group(1)) if m else None
        m = re.search(r"validation CER ([0-9]+\.[0-9]+)", card.read_text(encoding="utf-8"))
        out["validation_cer"] = float(m.group(1)) if m else None
    for weights in ("model.safetensors", "pytorch_model.bin"):
        if (folder / weights).is_file():
            digest = hashlib.sha256((folder / weights).read_bytes()).hexdigest()
            out["weights_sha256"] = digest[:16]
            break
    return out


def freeze_model(bench: BenchModel) -> BenchModel:
    """Copy a local model folder under benchmarks/out/models/ so that every part of a long
    run (in-process model, HF pipeline, server subprocess) reads the same weights even if
    training re-exports the bundled model meanwhile."""
    import shutil

    folder = Path(bench.source)
    if not folder.is_dir() or folder.is_relative_to(MODELS_DIR):
        return bench
    frozen = MODELS_DIR / f"{bench.label}-frozen"
    tmp = MODELS_DIR / f".{bench.label}-frozen.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    shutil.rmtree(frozen, ignore_errors=True)
    tmp.rename(frozen)
    return BenchModel(str(frozen), bench.label, bench.note)


def _random_model(name: str) -> BenchModel:
    path = MODELS_DIR / name
    if not (path / "config.json").is_file():
        if name == "tiny-en-random":
            _make_tiny_en_random(path)
        else:
            from streaming.random_model import make_random_model

            make_random_model(path, "base" if name == "base-random" else "tiny")
    return BenchModel(str(path), name, "random weights: speed only, its text is meaningless")


def _make_tiny_en_random(path: Path) -> None:
    """The bundled model's architecture (training/model.py) with random weights."""
    import torch
    from transformers import Wav2Vec2ForCTC

    from streaming.random_model import save_processor
    from training.model import ModelSize, build_config

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(build_config(ModelSize()))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    save_processor(path)
    # the trained model's feature extractor asks for an attention mask (layer-norm front end)
    cfg = path / "preprocessor_config.json"
    data = json.loads(cfg.read_text())
    data["return_attention_mask"] = True
    cfg.write_text(json.dumps(data, indent=2))


def load_bench_model(
    name: str, device: str = "cpu", dtype: str = "auto", threads: int | None = None
) -> tuple[Any, BenchModel]:
    """(streaming.model.LoadedModel, BenchModel) for ``name``; dtype as the server picks it."""
    from streaming.config import ModelConfig
    from streaming.model import load_model

    bench = resolve_model(name)
    loaded = load_model(ModelConfig(name=bench.source, device=device, dtype=dtype), threads=threads)
    return loaded, bench


# ---------------------------------------------------------------------------------------
# the server in its own process


READY_LINE = re.compile(r"streaming server ready on (\S+)")


@dataclass
class ResourceSample:
    t: float
    cpu_percent: float  # 100 = one core busy
    rss_mb: float


class ServerProcess:
    """``python -m streaming … --port 0`` in a subprocess; parses the ready line for the URL.

    Samples the server's CPU use (all threads) and RSS with psutil every ``interval`` s.
    Use as a context manager; output goes to ``log_path``.
    """

    def __init__(
        self,
        model: str,
        args: Sequence[str] = (),
        *,
        log_path: Path | None = None,
        interval: float = 0.5,
        ready_timeout: float = 180.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.args = list(args)
        self.log_path = log_path or (OUT_DIR / "server.log")
        self.interval = interval
        self.ready_timeout = ready_timeout
        self.env = env
        self.url = ""
        self.http = ""
        self.samples: list[ResourceSample] = []
        self._proc: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streaming",
            "--model",
            self.model,
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            *self.args,
        ]

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(self.ready_timeout) or not self.url:
            tail = "".join(self._lines[-20:])
            self.stop()
            raise RuntimeError(f"server did not become ready:\n{tail}")
        self.http = self.url.replace("ws://", "http://").rstrip("/")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _read(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                self._lines.append(line)
                del self._lines[:-200]
                if not self.url and (m := READY_LINE.search(line)):
                    self.url = m.group(1)
                    ready.set()
        ready.set()

    def _sample(self) -> None:
        t0 = last_t = time.monotonic()
        last_cpu = _proc_cpu_seconds(self.pid)
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            cpu_s = _proc_cpu_seconds(self.pid)
            rss = _proc_rss_mb(self.pid)
            if cpu_s is None or rss is None or last_cpu is None:
                return
            cpu = 100.0 * (cpu_s - last_cpu) / max(1e-6, now - last_t)
            last_t, last_cpu = now, cpu_s
            self.samples.append(ResourceSample(now - t0, round(cpu, 1), rss))

    def window(self, since: float, until: float | None = None) -> list[ResourceSample]:
        """Resource samples taken between two sampler times (seconds since start)."""
        end = math.inf if until is None else until
        return [s for s in self.samples if since <= s.t <= end]

    @property
    def clock(self) -> float:
        """The sampler's clock (seconds since the server became ready)."""
        return self.samples[-1].t if self.samples else 0.0

    def get(self, path: str, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.http + path, timeout=timeout) as resp:
            return str(resp.read().decode())

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.get("/health"))
        return data

    @property
    def workers(self) -> int:
        """``--workers`` of the server command (1 when not given)."""
        args = self.args
        for i, arg in enumerate(args):
            if arg == "--workers" and i + 1 < len(args):
                return int(args[i + 1])
            if arg.startswith("--workers="):
                return int(arg.split("=", 1)[1])
        return 1

    def metrics(self, max_tries: int = 200) -> dict[str, float]:
        """The server's Prometheus samples; under ``--workers`` the sum over all workers.

        Each request lands on whichever worker the kernel picks, so pages are fetched
        until every worker (``streaming_worker``) has answered once.
        """
        if self.workers == 1:
            return parse_prometheus(self.get("/metrics"))
        pages: dict[int, dict[str, float]] = {}
        for _ in range(max_tries):
            page = parse_prometheus(self.get("/metrics"))
            pages.setdefault(int(page.get("streaming_worker", 0)), page)
            if len(pages) == self.workers:
                break
        else:
            print(f"[bench] /metrics: {len(pages)} of {self.workers} workers answered")
        total: dict[str, float] = {}
        for page in pages.values():
            for name, value in page.items():
                total[name] = total.get(name, 0.0) + value
        total.pop("streaming_worker", None)
        return total

    def stop(self, timeout: float = 30.0) -> int | None:
        self._stop.set()
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return proc.returncode


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its children (``--workers``), all threads
    (psutil, else /proc for the process alone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
            except psutil.Error:  # a child that just exited
                continue
            total += times.user + times.system
        return total
    except ImportError:
        pass
    except Exception:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _proc_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its children (``--workers``), in MiB."""
    try:
        import psutil

        proc = psutil.Process(pid)
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return float(total) / 2**20
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def parse_prometheus(text: str) -> dict[str, float]:
    """``name{labels}`` → value, for every sample line of a Prometheus text page."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def metric_delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def engine_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches, windows, mean batch size and model-busy seconds between two scrapes."""
    batches = metric_delta(before, after, "streaming_engine_batches_total")
    # The counters are exact under --shared-engine too (the histograms then count windows);
    # the histogram sums serve servers older than the counters.
    if "streaming_engine_windows_total" in after:
        windows = metric_delta(before, after, "streaming_engine_windows_total")
        busy = metric_delta(before, after, "streaming_engine_busy_seconds_total")
    else:
        windows = metric_delta(before, after, "streaming_engine_batch_size_sum")
        busy = metric_delta(before, after, "streaming_engine_batch_seconds_sum")
    waits = metric_delta(before, after, "streaming_window_latency_seconds_sum")
    return {
        "batches": round(batches),
        "windows": int(windows),
        "mean_batch": round(windows / batches, 2) if batches else None,
        "model_busy_s": round(busy, 2),
        "mean_window_latency_ms": round(1000 * waits / windows, 1) if windows else None,
    }


# ---------------------------------------------------------------------------------------
# test set: held-out sentences, training voices


#: Fixed renderings of training voices (engines the model was trained on; test sentences
#: never were). ``training.samples.render`` does the synthesis.
TEST_VOICES = ("espeak:en-us+m3", "kal16", "espeak:en-gb-x-rp+f3", "awb", "joe", "kal")


@dataclass
class HeldOutUtterance:
    id: str
    text: str
    voice: str
    path: Path

    def audio(self) -> np.ndarray:
        import soundfile as sf

        data, rate = sf.read(str(self.path), dtype="float32")
        assert rate == SAMPLE_RATE
        return np.asarray(data, dtype=np.float32)


def _test_sentences() -> list[Any]:
    from training.text import DEFAULT_OUT, build_sentences, load_split, read_fortunes

    if (DEFAULT_OUT / "test.jsonl").is_file():
        return load_split("test", DEFAULT_OUT)
    return build_sentences(read_fortunes())["test"]


def held_out_utterances(
    count: int, voices: Sequence[str] = TEST_VOICES, min_words: int = 4, max_words: int = 14
) -> list[HeldOutUtterance]:
    """``count`` held-out sentences, voices round-robin; synthesized once, then cached."""
    manifest_path = TESTSET_DIR / "manifest.json"
    manifest: dict[str, dict[str, str]] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    sentences = [s for s in _test_sentences() if min_words <= len(s.text.split()) <= max_words]
    if len(sentences) < count:
        raise ValueError(f"only {len(sentences)} test sentences available, {count} asked")
    out: list[HeldOutUtterance] = []
    changed = False
    for i, sentence in enumerate(sentences[:count]):
        voice = voices[i % len(voices)]
        key = f"{sentence.id}-{re.sub(r'[^a-z0-9]+', '_', voice.lower())}"
        path = TESTSET_DIR / "wav" / f"{key}.wav"
        if not path.is_file():
            _render_to(path, voice, sentence.tts)
            manifest[key] = {"text": sentence.text, "voice": voice}
            changed = True
        out.append(HeldOutUtterance(key, sentence.text, voice, path))
    if changed:
        manifest_path.write_text(json.dumps(manifest, indent=1))
    return out


def _render_to(path: Path, voice: str, tts_text: str) -> None:
    import soundfile as sf

    from training.samples import render

    audio = render(voice, tts_text)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


@dataclass
class ComposedFile:
    """Several utterances separated by silence, written as one WAV."""

    path: Path
    duration_s: float
    segments: list[dict[str, Any]] = field(default_factory=list)  # text, voice, start, end (s)

    @property
    def reference(self) -> str:
        return " ".join(s["text"] for s in self.segments)


def compose_file(
    name: str,
    utterances: Sequence[HeldOutUtterance],
    gaps_s: Sequence[float] = (1.2,),
    lead_s: float = 0.5,
    tail_s: float = 1.0,
) -> ComposedFile:
    """Write ``benchmarks/out/testset/sessions/<name>.wav``: lead, utt, gap, utt, …, tail."""
    import soundfile as sf

    pieces = [np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)]
    cursor = len(pieces[0])
    segments = []
    for i, utt in enumerate(utterances):
        audio = utt.audio()
        segments.append(
            {
                "text": utt.text,
                "voice": utt.voice,
                "start": cursor / SAMPLE_RATE,
                "end": (cursor + len(audio)) / SAMPLE_RATE,
            }
        )
        gap = tail_s if i == len(utterances) - 1 else gaps_s[i % len(gaps_s)]
        silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
        pieces += [audio, silence]
        cursor += len(audio) + len(silence)
    path = TESTSET_DIR / "sessions" / f"{name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.concatenate(pieces), SAMPLE_RATE, subtype="PCM_16")
    return ComposedFile(path, cursor / SAMPLE_RATE, segments)


def session_files(count: int, per_file: int = 3, offset: int = 0) -> list[ComposedFile]:
    """``count`` multi-utterance files from the test set (gaps 1.0–1.5 s).

    Where the test set cannot be synthesized (no ``training`` text or no TTS engines, e.g.
    on a GPU box), falls back to the committed ``training/samples/*.wav``.
    """
    try:
        utts = held_out_utterances(offset + count * per_file)[offset:]
    except (ImportError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"[bench] test set unavailable ({exc}); using training/samples/", file=sys.stderr)
        return sample_files()
    files = []
    for i in range(count):
        chunk = utts[i * per_file : (i + 1) * per_file]
        files.append(compose_file(f"s{offset}-{i}-{per_file}", chunk, gaps_s=(1.2, 1.5, 1.0)))
    return files


def sample_files() -> list[ComposedFile]:
    """The committed demo WAVs with their transcripts (``training/samples/samples.json``)."""
    folder = REPO / "training" / "samples"
    manifest = json.loads((folder / "samples.json").read_text())
    return [
        ComposedFile(folder / name, float(entry["duration"]), list(entry["sentences"]))
        for name, entry in manifest.items()
        if not name.startswith("_")
    ]


# ---------------------------------------------------------------------------------------
# simulated real time through the pure Session (no network)


@dataclass
class SimulatedRun:
    """One stream through a Session in simulated real time.

    ``clock`` = audio fed so far, pushed later by the measured model time of every window
    (one stream alone on the machine, windows run as soon as they are due).
    """

    finals: list[dict[str, Any]]
    messages: list[tuple[float, dict[str, Any]]]  # (simulated arrival s, message)
    tracker: Any  # client.latency.LatencyTracker
    model_seconds: float
    windows: int
    audio_s: float

    @property
    def transcript(self) -> str:
        return " ".join(t for f in self.finals if (t := str(f.get("text", ""))))


def simulate_session(
    model: Any,
    audio: np.ndarray,
    window: Any,
    vad: Any | None = None,
    *,
    chunk_ms: int = 100,
    compute: str = "measured",
    tolerance_ms: float = 100.0,
    rescore: Callable[[np.ndarray], list[tuple[str, int, int]]] | None = None,
) -> SimulatedRun:
    """Feed ``audio`` (float32, 16 kHz) to a Session in ``chunk_ms`` pieces, run each due
    window at once with ``model.infer`` and time-stamp every event in simulated time.

    ``compute="measured"`` adds each window's measured model time to the clock;
    ``"zero"`` gives the algorithmic latency alone. ``rescore`` (an LM decoder's
    ``decode_words``) decodes the finals as the server's ``--lm`` does.
    """
    from client.latency import LatencyTracker, SendLog
    from streaming.config import VadConfig
    from streaming.protocol import event_message
    from streaming.session import PendingFinal, Session

    session = Session(
        model.vocab, model.geometry, vad or VadConfig(), window, rescore_finals=rescore is not None
    )
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    step = SAMPLE_RATE * chunk_ms // 1000
    send_log = SendLog()
    tracker = LatencyTracker(send_log, tolerance_ms)
    messages: list[tuple[float, dict[str, Any]]] = []
    finals: list[dict[str, Any]] = []
    clock = 0.0
    model_s = 0.0
    windows = 0

    def emit(events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event, PendingFinal):
                assert rescore is not None
                event = event.resolve(rescore(event.scores))
            msg = event_message(event)
            messages.append((clock, msg))
            tracker.on_message(msg, clock)
            if msg["type"] == "final":
                finals.append(msg)

    def drain() -> None:
        nonlocal clock, model_s, windows
        while (request := session.next_request()) is not None:
            began = time.perf_counter()
            logprobs = model.infer(request.samples[None, :])[0]
            spent = time.perf_counter() - began
            model_s += spent
            windows += 1
            if compute == "measured":
                clock += spent
            emit(session.complete(request, logprobs))

    for pos in range(0, len(pcm), step):
        piece = pcm[pos : pos + step]
        end = pos + len(piece)
        clock = max(clock, end / SAMPLE_RATE)
        send_log.record(end / SAMPLE_RATE, end * 1000.0 / SAMPLE_RATE)
        emit(session.feed(piece.tobytes()))
        drain()
    emit(session.end())
    drain()
    return SimulatedRun(finals, messages, tracker, model_s, windows, len(pcm) / SAMPLE_RATE)


# ---------------------------------------------------------------------------------------
# misc


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: …`` → ``t[0]`` = elapsed seconds."""
    holder = [0.0]
    began = time.perf_counter()
    try:
        yield holder
    finally:
        holder[0] = time.perf_counter() - began


def header(title: str, info: dict[str, Any]) -> None:
    paused = info.get("training_paused")
    note = {True: "paused", False: "RUNNING (numbers disturbed)", None: "none found"}[paused]
    print(f"# {title}")
    print(
        f"# machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"transformers {info['transformers']}, device {info['device']}"
        + (f" ({info['gpu']})" if info.get("gpu") else "")
    )
    print(f"# background training: {note}; load average {info['loadavg_at_start']}")
    if info.get("other_busy_processes"):
        print(f"# other busy processes: {'; '.join(info['other_busy_processes'])}")
    sys.stdout.flush()
