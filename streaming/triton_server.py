"""Serve a Wav2Vec2ForCTC checkpoint from NVIDIA Triton Inference Server (PyTriton).

    python -m streaming.triton_server --model tiny-en --grpc-port 8001

Front ends then use ``--engine triton://HOST:8001`` (:mod:`streaming.triton_engine`). The
model is loaded with the project's own :func:`~streaming.model.load_model` and run by the
project's own :class:`~streaming.engine.InferenceEngine` inside this process, so a window
gets exactly the computation it gets in process (same normalisation, dtype, exact-length
groups, batch padding on a GPU); PyTriton ships the Triton binary and hands it each batch.

Two models are served:

* ``wav2vec2`` (``--model-name``): input ``samples`` FP32 [batch, -1], outputs
  ``logprobs`` FP32 [batch, frames, vocab] plus, per window, the size (``batch``) and
  seconds (``model_s``) of the model call and the model's busy fraction (``load``), which
  the front ends report as their engine statistics and load. Dynamic batching: up to
  ``--max-batch`` windows, preferred sizes ``--preferred-batch-sizes``, at most
  ``--max-queue-delay-us`` of waiting, at most ``--max-queue`` windows queued (more are
  refused at once, which a front end reports as an error for that window). The input's
  length is variable (-1): Triton's dynamic batcher batches only requests of the same
  shape, so a batch holds windows of one length and no padding changes an output.
* ``wav2vec2-info``: the model's description as one JSON document (vocabulary, frame
  geometry, device, dtype), which a front end fetches at start instead of reading a copy
  of the checkpoint.

Health: Triton's own ``/v2/health/ready`` (HTTP) and ``ServerReady``/``ModelReady`` (gRPC);
Prometheus metrics on ``--metrics-port``.

PyTriton's Triton binary links against the running Python's shared library; the launcher
adds its folder to ``LD_LIBRARY_PATH`` so users need not. Its Python-backend stub (the
process Triton runs beside the model, which relays each batch to this one) is built
against NumPy 1 and returns empty outputs under NumPy 2. Where this process runs NumPy 2,
the stub therefore runs in a small environment of its own (``--stub-env``, made once):
NumPy 1 and, behind it, this environment's packages. The model itself runs here, with
whatever NumPy is installed; only raw bytes cross between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ENGINE, MODEL, MODEL_SAMPLE_RATE, EngineConfig, ModelConfig, WindowConfig
from .engine import BATCH_BUCKETS, InferenceEngine, warmup_batches
from .errors import ModelLoadError
from .logs import quiet_transformers, setup_logging
from .model import LoadedModel, load_model
from .settings import DeclaredSetting, declared_settings
from .triton_engine import (
    BATCH,
    INFO,
    INFO_SUFFIX,
    LOAD,
    LOGPROBS,
    MODEL_NAME,
    MODEL_S,
    QUERY,
    SAMPLES,
    describe_model,
)
from .windowing import warmup_lengths

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny-en"
DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 5000  # the in-process engine's batch deadline, 5 ms
INNER_DEADLINE_MS = 1.0  # the in-process engine only regroups what Triton hands over


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Triton's preferred batch sizes: the engine's batch buckets from 8 up to
    ``max_batch`` (the shapes a GPU has warmed up; see ``--pad-batches``)."""
    return [b for b in BATCH_BUCKETS if 8 <= b <= max_batch] or [max_batch]


class WindowServer:
    """The PyTriton callables: windows → the in-process engine → log-probabilities."""

    def __init__(self, model: LoadedModel, engine: InferenceEngine) -> None:
        self.model = model
        self.engine = engine
        self.description = describe_model(model)

    def infer(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """One Triton batch: each request's windows, run by the engine (which groups them
        by length) and answered in order; a failing model call fails the batch."""
        futures = [
            [self.engine.submit_timed(np.ascontiguousarray(row, dtype=np.float32)) for row in r]
            for r in (request[SAMPLES] for request in requests)
        ]
        replies = []
        for request_futures in futures:
            served = [f.result() for f in request_futures]
            load = self.engine.load
            replies.append(
                {
                    LOGPROBS: np.stack([s.logprobs for s in served]),
                    BATCH: np.array([[s.batch] for s in served], dtype=np.int32),
                    MODEL_S: np.array([[s.model_s] for s in served], dtype=np.float32),
                    LOAD: np.full((len(served), 1), load, dtype=np.float32),
                }
            )
        return replies

    def describe(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        document = np.frombuffer(self.description, dtype=np.uint8)
        return [{INFO: document} for _ in requests]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.triton_server",
        description="Serve a Wav2Vec2ForCTC model from NVIDIA Triton Inference Server "
        "(PyTriton); front ends reach it with --engine triton://HOST:GRPC_PORT.",
    )
    model = parser.add_argument_group("model")
    threads = [
        s for s in declared_settings(EngineConfig, ("engine",), ENGINE) if s.dest == "threads"
    ]
    for s in [*_model_settings(), *threads]:
        d = s.declared
        if s.kind is bool:
            model.add_argument(s.flag, dest=s.dest, action="store_true", help=d.help)
            continue
        default = DEFAULT_MODEL if s.path == ("model", "name") else s.default
        model.add_argument(
            s.flag,
            dest=s.dest,
            type=s.kind,
            default=default,
            choices=d.choices,
            metavar=d.metavar,
            help=d.help.replace("%", "%%") + (" (default: %(default)s)" if default else ""),
        )
    triton = parser.add_argument_group("Triton")
    triton.add_argument("--model-name", default=MODEL_NAME, help="(default: %(default)s)")
    triton.add_argument("--host", default="0.0.0.0", help="listen address (default: %(default)s)")
    triton.add_argument("--grpc-port", type=int, default=8001, help="(default: %(default)s)")
    triton.add_argument("--http-port", type=int, default=8000, help="(default: %(default)s)")
    triton.add_argument("--metrics-port", type=int, default=8002, help="(default: %(default)s)")
    triton.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="most windows per model call (default: %(default)s)",
    )
    triton.add_argument(
        "--preferred-batch-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="batch sizes the dynamic batcher aims for (default: 8 16 24 32 48 64 up to "
        "--max-batch)",
    )
    triton.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=DEFAULT_QUEUE_DELAY_US,
        help="longest a window waits for a fuller batch (default: %(default)s)",
    )
    triton.add_argument(
        "--max-queue",
        type=int,
        default=EngineConfig().max_queue,
        help="windows queued in Triton at most; more are refused (default: %(default)s)",
    )
    triton.add_argument(
        "--instances",
        type=int,
        default=1,
        help="model instances (concurrent batches); they share one copy of the weights "
        "(default: %(default)s)",
    )
    triton.add_argument(
        "--stub-env",
        type=Path,
        help="Python environment for PyTriton's backend stub, needed (and made if missing) "
        "where this one has NumPy 2 (default: ~/.cache/wav2vec2-streaming/triton-stub-pyX.Y)",
    )
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, help="(default: %(default)s)"
    )
    return parser


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The model to load: as the flags say, keeping the tokenizer's letter case (each
    front end lowercases or not, see :func:`streaming.triton_engine.model_info`)."""
    values = {s.path[-1]: getattr(args, s.dest) for s in _model_settings()}
    values["warmup"] = not values["warmup"]  # the flag is --no-warmup
    values["lowercase"] = False
    config = ModelConfig(**values)
    config.validate()
    return config


def _model_settings() -> list[DeclaredSetting]:
    """The model's declared settings, less letter case (a front end's choice)."""
    declared = declared_settings(ModelConfig, ("model",), MODEL)
    return [s for s in declared if s.path[-1] != "lowercase"]


def python_library_path() -> str:
    """``LD_LIBRARY_PATH`` with the running Python's shared-library folder first (the
    Triton binary's Python backend links against libpython)."""
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if not libdir or libdir in current.split(":"):
        return current
    return f"{libdir}:{current}" if current else libdir


def default_stub_env() -> Path:
    """Where the stub's environment is made when ``--stub-env`` is not given."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    version = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return cache / "wav2vec2-streaming" / f"triton-stub-{version}"


def stub_env(path: Path | None) -> Path | None:
    """The Python environment for PyTriton's backend stub (see the module docstring):
    None (this one) under NumPy 1; else ``path``, made if missing: a virtual environment
    with ``numpy<2`` first on its path and this environment's packages after it."""
    if int(np.__version__.split(".")[0]) < 2:
        return None
    path = path or default_stub_env()
    site = Path(sysconfig.get_paths(vars={"base": str(path), "platbase": str(path)})["purelib"])
    link = site / "zz_streaming_parent_env.pth"  # read after numpy's own folder
    if link.is_file():
        return path
    log.info("making the Triton stub environment %s (numpy<2; once)", path)
    try:
        venv.EnvBuilder(with_pip=False, clear=True).create(path)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "numpy>=1.24,<2"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ModelLoadError(
            f"could not make the Triton stub environment {path} (numpy<2 for PyTriton's "
            f"backend stub): {detail.strip().splitlines()[-1] if detail.strip() else exc}; "
            "make one with `python -m venv DIR && DIR/bin/pip install 'numpy<2' pyzmq` "
            "and pass --stub-env DIR"
        ) from exc
    link.write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path


def serve(args: argparse.Namespace) -> None:
    """Load, warm up, start the engine, bind both models and serve until a signal."""
    try:
        from pytriton.model_config import DynamicBatcher, QueuePolicy, Tensor
        from pytriton.model_config import ModelConfig as TritonModel
        from pytriton.server import triton_server
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise ModelLoadError(
            "serving from Triton needs PyTriton: pip install 'wav2vec2-streaming[triton-server]'"
        ) from exc

    os.environ["LD_LIBRARY_PATH"] = python_library_path()
    stub = stub_env(args.stub_env)
    if stub is not None:  # PyTriton puts this environment's bin/ first on the stub's PATH
        triton_server.get_triton_python_backend_python_env = lambda: stub
    quiet_transformers()
    model = load_model(model_config(args), threads=args.threads)
    engine_config = EngineConfig(
        max_batch=args.max_batch, batch_deadline_ms=INNER_DEADLINE_MS, max_queue=args.max_queue
    )
    if not args.no_warmup:  # the default windows, at every batch size the engine will use
        lengths = warmup_lengths(WindowConfig(), model.geometry, MODEL_SAMPLE_RATE)
        batches = warmup_batches(engine_config, model.device)
        log.info("warm-up done in %.2f s", model.warm_up(lengths, batches))
    engine = InferenceEngine(model, engine_config)
    asyncio.run(engine.start())
    windows = WindowServer(model, engine)
    preferred = args.preferred_batch_sizes or preferred_batch_sizes(args.max_batch)
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=args.max_queue_delay_us,
        preferred_batch_size=preferred,
        default_queue_policy=QueuePolicy(max_queue_size=args.max_queue),
    )
    config = TritonConfig(
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        http_address=args.host,
        http_port=args.http_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        exit_timeout_secs=5,
    )
    began = time.perf_counter()
    try:
        with Triton(config=config) as triton:
            triton.bind(
                model_name=args.model_name,
                infer_func=[windows.infer] * args.instances,
                inputs=[Tensor(name=SAMPLES, dtype=np.float32, shape=(-1,))],
                outputs=[
                    Tensor(name=LOGPROBS, dtype=np.float32, shape=(-1, -1)),
                    Tensor(name=BATCH, dtype=np.int32, shape=(1,)),
                    Tensor(name=MODEL_S, dtype=np.float32, shape=(1,)),
                    Tensor(name=LOAD, dtype=np.float32, shape=(1,)),
                ],
                config=TritonModel(max_batch_size=args.max_batch, batcher=batcher),
                strict=True,
            )
            triton.bind(
                model_name=args.model_name + INFO_SUFFIX,
                infer_func=windows.describe,
                inputs=[Tensor(name=QUERY, dtype=np.int32, shape=(1,))],
                outputs=[Tensor(name=INFO, dtype=np.uint8, shape=(-1,))],
                config=TritonModel(batching=False),
            )
            log.info(
                "Triton serves %s as %r on %s: gRPC :%d, HTTP :%d, metrics :%d (ready in "
                "%.1f s); dynamic batching up to %d, preferred %s, queue delay %d us",
                model.name,
                args.model_name,
                model.device,
                args.grpc_port,
                args.http_port,
                args.metrics_port,
                time.perf_counter() - began,
                args.max_batch,
                preferred,
                args.max_queue_delay_us,
            )
            triton.serve()
    finally:
        asyncio.run(engine.stop())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        serve(args)
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
