"""An engine whose model runs in NVIDIA Triton Inference Server, reached over gRPC.

:class:`TritonEngine` is the :class:`~streaming.engine.Engine` of a front end that keeps
VAD, windows and stable text (cheap, CPU) while Triton holds the model (``python -m
streaming.triton_server``, usually on GPUs): each window is one asynchronous gRPC request,
and Triton's dynamic batcher batches windows across streams and front ends. Everything
after the log-probabilities (stitching, stable text, finals, LM) stays in the front end.

The model's description (vocabulary, frame geometry, device) comes from the Triton server
itself, from a small companion model ``<model>-info`` that answers one JSON document
(:func:`describe_model`), so a front end needs no copy of the checkpoint and cannot pair
one model's vocabulary with another's outputs. Letter case stays a front-end choice
(``--keep-case``): the server sends the tokens as the tokenizer spells them.

Failures: :meth:`TritonEngine.start` raises a one-line :class:`ModelLoadError` when Triton
cannot be reached or the model is not ready. Once started, a window that Triton cannot
serve (connection lost, server stopping, queue full, deadline passed) fails with an
:class:`InferenceError` that says so; the gRPC channel reconnects by itself (backoff at
most :data:`RECONNECT_BACKOFF_MS`), so later windows succeed when Triton is back.

``tritonclient[grpc]`` is the optional extra ``triton``; it is imported only when an
engine starts, so nothing else needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .config import EngineConfig
from .decoding import CtcVocab
from .engine import EngineClosed, InferenceError
from .errors import ModelLoadError
from .geometry import FrameGeometry
from .model import LoadedModel, ModelInfo
from .remote_engine import RemoteEngine, WindowObserver

log = logging.getLogger(__name__)

SCHEME = "triton"
DEFAULT_PORT = 8001  # Triton's gRPC port
MODEL_NAME = "wav2vec2"
INFO_SUFFIX = "-info"  # the companion model that describes MODEL_NAME

# Tensor names shared by the server (streaming.triton_server) and this client.
SAMPLES = "samples"  # FP32 [batch, samples]: one window per row, 16 kHz
LOGPROBS = "logprobs"  # FP32 [batch, frames, vocab]
BATCH = "batch"  # INT32 [batch, 1]: windows in the model call that served the row
MODEL_S = "model_s"  # FP32 [batch, 1]: that call's seconds
LOAD = "load"  # FP32 [batch, 1]: the model's busy fraction, as the server measures it
QUERY = "query"  # INT32 [1]: the info model's (unused) input
INFO = "info"  # UINT8 [-1]: the info model's JSON document, UTF-8
INFO_FORMAT = 1

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
RECONNECT_BACKOFF_MS = 1000
_MAX_MESSAGE = 2**31 - 1

_INSTALL_HINT = "the Triton engine needs tritonclient: pip install 'wav2vec2-streaming[triton]'"


def triton_address(url: str) -> tuple[str, str]:
    """``triton://host[:port][/model]`` → (``host:port``, model name)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or not parts.hostname:
        raise ValueError(f"not a Triton engine URL: {url!r} (expected triton://HOST:PORT)")
    model = parts.path.strip("/") or MODEL_NAME
    return f"{parts.hostname}:{parts.port or DEFAULT_PORT}", model


# -- the model description, as the server sends it -------------------------------------


def describe_model(model: LoadedModel) -> bytes:
    """The JSON document the ``<model>-info`` companion answers (see the module docstring).

    ``model`` must be loaded with ``lowercase=False``: the tokens go as the tokenizer
    spells them and each front end applies its own case setting.
    """
    vocab = model.vocab
    return json.dumps(
        {
            "format": INFO_FORMAT,
            "name": model.name,
            "tokens": list(vocab.tokens),
            "blank_id": vocab.blank_id,
            "delimiter_id": vocab.delimiter_id,
            "ignore_ids": sorted(vocab.ignore_ids),
            "conv_kernel": list(model.geometry.kernels),
            "conv_stride": list(model.geometry.strides),
            "device": model.device,
            "dtype": model.dtype,
            "parameters": model.parameters,
        }
    ).encode()


def model_info(document: bytes, *, lowercase: bool = True) -> ModelInfo:
    """The :class:`ModelInfo` a :func:`describe_model` document describes; tokens are
    lowercased as :meth:`CtcVocab.from_vocab` would when ``lowercase``."""
    d = json.loads(document)
    if d.get("format") != INFO_FORMAT:
        raise ValueError(f"unknown model description format {d.get('format')!r}")
    tokens = tuple(str(t).lower() if lowercase else str(t) for t in d["tokens"])
    vocab = CtcVocab(tokens, int(d["blank_id"]), int(d["delimiter_id"]), frozenset(d["ignore_ids"]))
    geometry = FrameGeometry(tuple(d["conv_kernel"]), tuple(d["conv_stride"]))
    return ModelInfo(
        str(d["name"]), vocab, geometry, str(d["device"]), str(d["dtype"]), int(d["parameters"])
    )


# -- the engine --------------------------------------------------------------------------


class TritonEngine(RemoteEngine):
    """The :class:`~streaming.engine.Engine` interface over Triton's gRPC API.

    At most ``config.max_queue`` windows of this front end are in flight; more wait
    their turn (``queue_depth`` counts both). ``load`` is the server's busy fraction as of
    its last reply; ``stats`` count this front end's windows, ``batches`` its share of each
    model call (as the shared engine's client does). Use it from the event loop it was
    started on; ``submit`` from another thread hands the window to that loop.
    """

    def __init__(
        self,
        address: str,
        config: EngineConfig | None = None,
        *,
        model_name: str = MODEL_NAME,
        lowercase: bool = True,
        observer: WindowObserver | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        super().__init__(config, observer=observer)
        self.address = address
        self.model_name = model_name
        self._lowercase = lowercase
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._client: Any = None
        self._lost = False  # the last window failed to reach Triton (logged once per outage)

    @classmethod
    def from_url(cls, url: str, config: EngineConfig | None = None, **kwargs: Any) -> TritonEngine:
        """The engine ``triton://host:port[/model]`` names."""
        address, model = triton_address(url)
        return cls(address, config, model_name=model, **kwargs)

    @property
    def queue_depth(self) -> int:
        """This front end's windows sent to Triton or waiting to be, not yet answered."""
        return self._in_flight

    async def start(self) -> None:
        """Connect, check that the server and the model are ready, and learn the model
        (:attr:`info`); a one-line :class:`ModelLoadError` says why not."""
        if self._client is not None:
            return
        try:
            from tritonclient.grpc import aio
        except ImportError as exc:
            raise ModelLoadError(_INSTALL_HINT) from exc
        client = aio.InferenceServerClient(self.address, channel_args=_channel_args())
        try:
            self.info = await self._describe(client)
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._bind()
        log.info(
            "Triton at %s serves %s (%s on %s/%s)",
            self.address,
            self.model_name,
            self.info.name,
            self.info.device,
            self.info.dtype,
        )

    async def stop(self) -> None:
        """Refuse new windows, fail those in flight with :class:`EngineClosed`, disconnect."""
        await self._cancel_in_flight()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _infer(self, samples: np.ndarray) -> np.ndarray:
        from tritonclient.grpc import InferInput, InferRequestedOutput
        from tritonclient.utils import InferenceServerException

        client = self._client
        if client is None:
            raise EngineClosed("inference engine is stopping")
        loop = asyncio.get_running_loop()
        data = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        window = InferInput(SAMPLES, list(data.shape), "FP32")
        window.set_data_from_numpy(data)
        wanted = [InferRequestedOutput(name) for name in (LOGPROBS, BATCH, MODEL_S, LOAD)]
        began = loop.time()
        try:
            result = await client.infer(
                self.model_name,
                [window],
                outputs=wanted,
                client_timeout=self._request_timeout_s,
            )
        except InferenceServerException as exc:
            self._stats.failed_requests += 1
            raise self._failure(exc) from None
        wait_s = loop.time() - began
        if self._lost:
            self._lost = False
            log.warning("Triton at %s answers again", self.address)
        logprobs = np.array(result.as_numpy(LOGPROBS)[0], dtype=np.float32)
        self._load = float(result.as_numpy(LOAD)[0, 0])
        batch = int(result.as_numpy(BATCH)[0, 0])
        model_s = float(result.as_numpy(MODEL_S)[0, 0])
        self._account(batch, model_s, wait_s, data.size)
        return logprobs

    def _failure(self, exc: Any) -> InferenceError:
        """One clear line for a window Triton did not serve."""
        status = str(exc.status() or "")
        detail = _first_line(exc.message() or str(exc))
        if "UNAVAILABLE" in status:
            if not self._lost:
                self._lost = True
                log.error("lost Triton at %s: %s", self.address, detail)
            return InferenceError(
                f"lost the Triton inference server at {self.address} ({detail}); "
                "later windows retry"
            )
        if "DEADLINE_EXCEEDED" in status:
            return InferenceError(
                f"the Triton inference server at {self.address} did not answer within "
                f"{self._request_timeout_s:g} s"
            )
        return InferenceError(f"the Triton inference server at {self.address} failed: {detail}")

    async def _describe(self, client: Any) -> ModelInfo:
        """Wait (up to ``connect_timeout_s``) for the server and both models to be ready,
        then fetch the model description."""
        from tritonclient.grpc import InferInput
        from tritonclient.utils import InferenceServerException

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        info_model = self.model_name + INFO_SUFFIX
        while True:
            left = max(deadline - loop.time(), 0.1)
            try:
                if not await client.is_server_ready(client_timeout=left):
                    problem = "the server is not ready"
                elif not await client.is_model_ready(self.model_name, client_timeout=left):
                    problem = f"model {self.model_name!r} is not ready"
                elif not await client.is_model_ready(info_model, client_timeout=left):
                    problem = (
                        f"model {info_model!r} is not ready (start Triton with "
                        "python -m streaming.triton_server)"
                    )
                else:
                    query = InferInput(QUERY, [1], "INT32")
                    query.set_data_from_numpy(np.zeros(1, dtype=np.int32))
                    result = await client.infer(info_model, [query], client_timeout=left)
                    document = result.as_numpy(INFO).tobytes()
                    try:
                        return model_info(document, lowercase=self._lowercase)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ModelLoadError(
                            f"Triton at {self.address}: bad description of model "
                            f"{self.model_name!r}: {exc}"
                        ) from exc
            except InferenceServerException as exc:
                problem = _first_line(exc.message() or str(exc))
            if loop.time() >= deadline:
                raise ModelLoadError(f"cannot reach Triton at {self.address}: {problem}")
            await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0.0)))


def _channel_args() -> list[tuple[str, Any]]:
    """gRPC channel options: no message size limit (tritonclient's own defaults) and a
    reconnect backoff of at most a second, so a Triton that comes back is used soon."""
    return [
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ]


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "no detail"
