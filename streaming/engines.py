"""The one way to build an engine: load the model if needed, warm it up, start the engine.

The server, the shared inference process and the workers all build engines here, so
warm-up and start-up are written once. An engine is named by a URL-like string:

* ``local``: this process loads the model and batches windows on a thread
  (:class:`~streaming.engine.InferenceEngine`);
* ``unix:///path/engine.sock``: the shared inference process of ``--shared-engine``
  (:class:`~streaming.shared_engine.SharedEngineClient`), which :func:`host_engine` runs;
* ``triton://host[:port][/model]``: a model served by Triton
  (:class:`~streaming.triton_engine.TritonEngine`, ``python -m streaming.triton_server``).

Another kind is one more entry in :data:`BUILDERS`: a coroutine that returns a started
:class:`~streaming.engine.Engine` and the model's :class:`~streaming.model.ModelInfo`
(:class:`BuiltEngine`). An engine whose model runs in another process describes the model
itself: its builder makes one and hands it to :func:`_start_remote`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import MODEL_SAMPLE_RATE, ServerConfig
from .engine import BatchObserver, Engine, InferenceEngine, reuses_features, warmup_batches
from .errors import ModelLoadError
from .metrics import Metrics
from .model import LoadedModel, ModelInfo, load_model
from .remote_engine import RemoteEngine
from .shared_engine import EngineHost, SharedEngineClient
from .triton_engine import TritonEngine
from .windowing import warmup_lengths

log = logging.getLogger(__name__)

LOCAL = "local"


@dataclass(frozen=True)
class BuiltEngine:
    """A started engine and what sessions need to know about its model."""

    engine: Engine
    info: ModelInfo
    model: LoadedModel | None  # the weights, when they live in this process


@dataclass(frozen=True)
class LocalEngine:
    """A started in-process engine and the model it runs."""

    engine: InferenceEngine
    model: LoadedModel


# (config, engine URL, loaded model or None, metrics or None) → a started engine.
Builder = Callable[[ServerConfig, str, LoadedModel | None, Metrics | None], Awaitable[BuiltEngine]]


async def build_engine(
    config: ServerConfig,
    url: str = LOCAL,
    *,
    model: LoadedModel | None = None,
    metrics: Metrics | None = None,
) -> BuiltEngine:
    """Build, warm up and start the engine ``url`` names (see the module docstring).

    ``model``: an already loaded model for a local engine (tests, the demo), which is
    then not loaded again. ``metrics`` observe every batch or window the engine serves.
    """
    return await BUILDERS[engine_kind(url)](config, url, model, metrics)


def engine_kind(url: str) -> str:
    """The kind of engine ``url`` names ("local", "unix", ...); raises ValueError for
    one nobody builds."""
    kind = LOCAL if url == LOCAL else urlsplit(url).scheme
    if kind not in BUILDERS:
        known = ", ".join(k if k == LOCAL else f"{k}://..." for k in BUILDERS)
        raise ValueError(f"unknown engine {url!r}: expected {known}")
    return kind


def shared_engine_url(address: str) -> str:
    """The engine URL of the shared inference process listening on socket ``address``."""
    return f"unix://{address}"


async def build_local_engine(
    config: ServerConfig,
    *,
    model: LoadedModel | None = None,
    observer: BatchObserver | None = None,
) -> LocalEngine:
    """Load the model (unless given), warm it up (unless ``--no-warmup``) and start the
    batching thread."""
    if model is None:
        model = await asyncio.to_thread(load_model, config.model, threads=config.engine.threads)
    if config.model.compile:
        await compile_model(model, config)
    if config.model.warmup:
        await warm_up(model, config)
    engine = InferenceEngine(model, config.engine, observer=observer)
    if engine.reuses_features:
        log.info(
            "feature reuse on: each window convolves only the audio its stream's "
            "previous window did not read (--reuse-features off to compute windows whole)"
        )
    await engine.start()
    return LocalEngine(engine, model)


async def compile_model(model: LoadedModel, config: ServerConfig) -> None:
    """``--compile``: torch.compile the transformer that windows with reused features run
    through, at start, so that no stream waits for it."""
    if not reuses_features(config.engine, model.device, model.framewise_features):
        raise ModelLoadError(
            "--compile speeds up the windows that reuse features, and this engine reuses "
            "none (--reuse-features off, a GPU with auto, or a model whose feature "
            "extractor normalises across time)"
        )
    steady = warmup_lengths(config.window, model.geometry, MODEL_SAMPLE_RATE)[-1]
    log.info("compiling the transformer with torch.compile (about 30 s on 2 cores)")
    seconds = await asyncio.to_thread(model.compile_tail, steady)
    log.info("compiled in %.0f s", seconds)


async def warm_up(model: LoadedModel, config: ServerConfig) -> None:
    """Run every window length the sessions will send, at every batch size the engine
    will use, so that the first users do not pay for lazy initialisation or a GPU's
    per-shape plans."""
    lengths = warmup_lengths(config.window, model.geometry, MODEL_SAMPLE_RATE)
    batches = warmup_batches(config.engine, model.device)
    seconds = await asyncio.to_thread(model.warm_up, lengths, batches)
    log.info("warm-up done in %.2f s (%d shapes)", seconds, len(lengths) * len(batches))


async def host_engine(
    config: ServerConfig, address: str, *, model: LoadedModel | None = None
) -> EngineHost:
    """The shared inference process: a local engine, serving workers on socket ``address``."""
    local = await build_local_engine(config, model=model)
    host = EngineHost(local.engine, local.model.info, address)
    try:
        await host.start()
    except BaseException:
        await local.engine.stop()
        raise
    return host


async def _local(
    config: ServerConfig, url: str, model: LoadedModel | None, metrics: Metrics | None
) -> BuiltEngine:
    observer = metrics.observe_batch if metrics else None
    local = await build_local_engine(config, model=model, observer=observer)
    return BuiltEngine(local.engine, local.model.info, local.model)


async def _shared(
    config: ServerConfig, url: str, model: LoadedModel | None, metrics: Metrics | None
) -> BuiltEngine:
    observer = metrics.observe_shared if metrics else None
    client = SharedEngineClient(urlsplit(url).path, config.engine, observer=observer)
    return await _start_remote(client, url, model)


async def _triton(
    config: ServerConfig, url: str, model: LoadedModel | None, metrics: Metrics | None
) -> BuiltEngine:
    observer = metrics.observe_shared if metrics else None
    engine = TritonEngine.from_url(
        url, config.engine, lowercase=config.model.lowercase, observer=observer
    )
    return await _start_remote(engine, url, model)


async def _start_remote(engine: RemoteEngine, url: str, model: LoadedModel | None) -> BuiltEngine:
    """Start an engine whose model runs in another process; it describes the model."""
    if model is not None:
        raise ValueError(f"a loaded model runs only in a local engine, not in {url!r}")
    await engine.start()
    assert engine.info is not None
    return BuiltEngine(engine, engine.info, None)


BUILDERS: dict[str, Builder] = {LOCAL: _local, "unix": _shared, "triton": _triton}
