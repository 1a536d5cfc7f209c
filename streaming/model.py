"""Load any Wav2Vec2ForCTC checkpoint (hub id, local path or bundled short name) and run it.

The same code path serves ``facebook/wav2vec2-base-960h`` and the bundled offline model:
``from_pretrained`` on a hub id or a folder.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .config import MODEL_SAMPLE_RATE, ModelConfig
from .cpu import native_bf16
from .decoding import CtcVocab
from .errors import ModelLoadError
from .feature_cache import FeatureCache, FeatureKey
from .geometry import FrameGeometry

log = logging.getLogger(__name__)

BUNDLED_MODELS = ("tiny-en",)


def bundled_model_path(name: str) -> Path | None:
    """Folder of a model shipped inside the package, or None if ``name`` is not one."""
    if name not in BUNDLED_MODELS:
        return None
    path = Path(str(resources.files("streaming") / "models" / name))
    return path if (path / "config.json").is_file() else None


def resolve_model(name: str) -> str:
    """Bundled short name → its folder; anything else is passed to ``from_pretrained``."""
    bundled = bundled_model_path(name)
    if bundled is not None:
        return str(bundled)
    if name in BUNDLED_MODELS:
        raise ModelLoadError(
            f"the bundled model {name!r} is not included in this installation; "
            "pass --model with a hub id or a local checkpoint folder"
        )
    return name


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} requested but CUDA is not available")
    return requested


def pick_dtype(requested: str, device: str, *, cpu_flags: frozenset[str] | None = None) -> str:
    """Resolve ``--dtype auto``: fp16 on CUDA; on the CPU bf16 where it runs natively.

    ``cpu_flags``: the CPU's feature flags (None: this machine's). Native bf16 made
    the 8-layer tiny-en ~25 % cheaper per live stream on an AVX512-BF16 EPYC with no
    accuracy loss (benchmarks/results/*bf16*); emulated bf16 is slower than fp32.
    """
    if requested == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if native_bf16(cpu_flags) else "fp32"
    if requested == "fp16" and not device.startswith("cuda"):
        raise ModelLoadError("fp16 needs a CUDA device; use --dtype fp32 (or bf16) on the CPU")
    return requested


@dataclass(frozen=True)
class ModelInfo:
    """What sessions and the server need to know about a model, without its weights.

    Picklable: a worker of the shared inference process receives it from that process.
    """

    name: str
    vocab: CtcVocab
    geometry: FrameGeometry
    device: str
    dtype: str
    parameters: int


@dataclass
class LoadedModel:
    """A ready-to-run model plus what the streaming logic needs to know about it."""

    name: str
    model: Any
    vocab: CtcVocab
    geometry: FrameGeometry
    device: str
    dtype: str
    normalize: bool
    parameters: int
    # Padding with an attention mask leaves the valid frames' outputs unchanged (checked in
    # tests): true for a layer-norm feature extractor that takes the mask, not for the
    # group-norm one of wav2vec2-base, whose normalisation spans the padded time axis.
    masks_padding: bool = False
    # Every convolution of the feature extractor unpadded and normalised per position
    # (feat_extract_norm "layer"): a frame's features depend on its own 400 samples only,
    # so overlapping windows can share them (infer_reusing).
    framewise_features: bool = False
    # torch.compile of _tail_eager (--compile), used by infer_reusing; None: eager.
    compiled_tail: Any = None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            self.name, self.vocab, self.geometry, self.device, self.dtype, self.parameters
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 → (batch, frames, vocab) float32 log-probabilities.

        Each row is normalised on its own, as the feature extractor does for one input.
        """
        import torch

        # Normalised in fp32 where the model runs: on a GPU this takes the mean/variance
        # off the CPU (about 2.5 ms per call of 77 windows in the H200 profile).
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            if self.normalize:
                mean = x.mean(dim=1, keepdim=True)
                var = x.var(dim=1, keepdim=True, unbiased=False)
                x = (x - mean) / torch.sqrt(var + 1e-7)
            x = x.to(_torch_dtype(self.dtype))
            logits = self.model(x).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        return np.asarray(logprobs.cpu().numpy(), dtype=np.float32)

    def infer_ragged(self, rows: list[np.ndarray], batch_rows: int = 0) -> list[np.ndarray]:
        """Windows of different lengths in ONE call: each row is zero-padded to the longest
        and masked; returns each row's own (frames, vocab) log-probabilities.

        ``batch_rows`` > ``len(rows)`` adds silent rows (batch padding). Only for a model
        with :attr:`masks_padding`; there the outputs match one call per length.
        """
        import torch

        if not self.masks_padding:
            raise ValueError(f"model {self.name!r} cannot take padded windows (no attention mask)")
        lengths = [row.size for row in rows]
        width = max(lengths)
        height = max(batch_rows, len(rows))
        padded = np.zeros((height, width), dtype=np.float32)
        mask = np.zeros((height, width), dtype=np.int64)
        for i, row in enumerate(rows):
            padded[i, : row.size] = row
            mask[i, : row.size] = 1
        mask[len(rows) :] = 1  # silent rows: a full window of zeros, as batch padding uses
        x = torch.from_numpy(padded).to(self.device)
        m = torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            if self.normalize:  # over each row's own samples only
                valid = m.to(torch.float32)
                count = valid.sum(dim=1, keepdim=True)
                mean = x.sum(dim=1, keepdim=True) / count
                var = (((x - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
                x = (x - mean) / torch.sqrt(var + 1e-7) * valid
            x = x.to(_torch_dtype(self.dtype))
            logits = self.model(x, attention_mask=m).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return [
            np.asarray(logprobs[i, : self.geometry.frames(n)], dtype=np.float32)
            for i, n in enumerate(lengths)
        ]

    def infer_reusing(
        self, rows: list[np.ndarray], keys: list[FeatureKey], cache: FeatureCache
    ) -> list[np.ndarray]:
        """Like :meth:`infer` on each row, computing only the front-end features of frames
        that the row's stream has not produced before (``cache``); each row's
        (frames, vocab) log-probabilities. See :mod:`streaming.feature_cache`.

        Rows are grouped by the length of audio still to convolve, then by frame count for
        the transformer, so no row is padded and every group is one call.
        """
        import torch

        if not self.framewise_features:
            raise ValueError(f"model {self.name!r} cannot reuse features across windows")
        stride = self.geometry.stride
        frames = [self.geometry.frames(row.size) for row in rows]
        known = [cache.reusable(key, stride, n) for key, n in zip(keys, frames)]
        with torch.inference_mode():
            dtype = _torch_dtype(self.dtype)
            fresh: list[Any] = [None] * len(rows)
            by_length: dict[int, list[int]] = {}
            for i, (row, (have, _)) in enumerate(zip(rows, known)):
                if have < frames[i]:
                    by_length.setdefault(row.size - have * stride, []).append(i)
            extractor = self.model.wav2vec2.feature_extractor
            for length, members in by_length.items():
                segments = [self._scaled_tail(rows[i], length) for i in members]
                x = torch.from_numpy(np.stack(segments)).to(self.device).to(dtype)
                computed = extractor(x).transpose(1, 2)
                for j, i in enumerate(members):
                    fresh[i] = computed[j]
            features = []
            for (_, old), new in zip(known, fresh):
                parts = [p for p in (old, new) if p is not None]
                features.append(parts[0] if len(parts) == 1 else torch.cat(parts))
            for key, row_features, (reused, _) in zip(keys, features, known):
                # a copy: a slice would keep the whole batch (or older window) it came from
                cache.store(key, stride, row_features.clone())
                cache.count(reused)
            out: list[np.ndarray] = [np.zeros(0)] * len(rows)
            by_frames: dict[int, list[int]] = {}
            for i, n in enumerate(frames):
                by_frames.setdefault(n, []).append(i)
            for members in by_frames.values():
                logits = self._logits_from_features(torch.stack([features[i] for i in members]))
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
                for j, i in enumerate(members):
                    out[i] = np.asarray(logprobs[j], dtype=np.float32)
        return out

    def _scaled_tail(self, row: np.ndarray, length: int) -> np.ndarray:
        """The last ``length`` samples of a window, scaled by the whole window's mean and
        variance as :meth:`infer` scales it."""
        tail = np.asarray(row[row.size - length :], dtype=np.float32)
        if not self.normalize:
            return tail
        mean, var = float(row.mean(dtype=np.float64)), float(row.var(dtype=np.float64))
        scaled: np.ndarray = ((tail - mean) / np.sqrt(var + 1e-7)).astype(np.float32)
        return scaled

    def _logits_from_features(self, features: Any) -> Any:
        """What ``Wav2Vec2ForCTC`` does after its feature extractor (inference only)."""
        if self.compiled_tail is not None:
            return self.compiled_tail(features)
        return self._tail_eager(features)

    def _tail_eager(self, features: Any) -> Any:
        wav2vec2 = self.model.wav2vec2
        hidden, _ = wav2vec2.feature_projection(features)
        hidden = wav2vec2.encoder(hidden)[0]
        if getattr(wav2vec2, "adapter", None) is not None:
            hidden = wav2vec2.adapter(hidden)
        return self.model.lm_head(self.model.dropout(hidden))

    def compile_tail(self, window: int) -> float:
        """Compile the transformer for :meth:`infer_reusing` (``--compile``) and run it at
        one and two windows of ``window`` samples, so that no stream waits for a compile
        later (other batch sizes and window lengths reuse the dynamic-shape graph).
        Returns the seconds it took; a failure is a :class:`ModelLoadError`."""
        import torch
        import torch._inductor.config as inductor

        began = time.perf_counter()
        inductor.freezing = True  # weights as constants: prepacked for the CPU's matmuls
        self.compiled_tail = torch.compile(self._tail_eager, dynamic=True)
        silent = np.zeros(window, dtype=np.float32)
        try:
            with warnings.catch_warnings():
                # transformers' cached "is torch.distributed available" is traced through:
                # a constant, so dynamo's warning about the cache wrapper does not apply
                warnings.filterwarnings("ignore", "Dynamo detected a call to a `functools")
                for rows in (2, 1):  # 2 first: the graph for any batch, then 1's own
                    keys = [FeatureKey(object(), 0, last=True) for _ in range(rows)]
                    self.infer_reusing([silent] * rows, keys, FeatureCache())
        except Exception as exc:
            self.compiled_tail = None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelLoadError(
                f"--compile: torch.compile failed ({type(exc).__name__}: {first[:200]}); "
                "it needs a C++ compiler (apt-get install g++); or run without --compile"
            ) from exc
        return time.perf_counter() - began

    def warm_up(self, lengths: list[int], batches: list[int] | None = None) -> float:
        """Run each window length (at each batch size) once, so that the first users do
        not pay for lazy initialisation or a GPU's per-shape plans."""
        began = time.perf_counter()
        for length in lengths:
            for batch in batches or [1]:
                self.infer(np.zeros((batch, length), dtype=np.float32))
        return time.perf_counter() - began


def _auto_dtype_reason(requested: str, device: str, dtype: str) -> str:
    """Why ``--dtype auto`` chose what it did, for the load log line."""
    if requested != "auto" or device.startswith("cuda"):
        return ""
    if dtype == "bf16":
        return f" (auto: the CPU has {native_bf16()}; --dtype fp32 for full precision)"
    return " (auto: no native bf16 on this CPU)"


def _torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def load_model(config: ModelConfig, *, threads: int | None = None) -> LoadedModel:
    """Load model + processor; every failure becomes one ModelLoadError that says what to do."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    source = resolve_model(config.name)
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    if _looks_like_path(source) and not Path(source).expanduser().is_dir():
        raise ModelLoadError(
            f"model folder {source!r} does not exist; pass --model with a folder that holds "
            "config.json, the weights, vocab.json and preprocessor_config.json, a hub id such "
            "as facebook/wav2vec2-base-960h, or the bundled offline model 'tiny-en'"
        )
    local = Path(source).expanduser().is_dir()
    missing = [f for f in ("config.json", "vocab.json") if not (Path(source) / f).is_file()]
    if local and missing:
        raise ModelLoadError(
            f"folder {source!r} is not a Wav2Vec2 CTC checkpoint: it lacks {', '.join(missing)}; "
            f"{_POINT_AT_LOCAL}"
        )
    try:
        try:
            parts = _load_parts(source, dtype, local_only=True)
        except Exception as exc:
            if local:
                raise
            if not _hub_reachable():
                raise ModelLoadError(_offline_hint(config.name)) from exc
            parts = _load_parts(source, dtype, local_only=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # every loading failure gets one clear message
        raise ModelLoadError(_load_hint(config.name, exc)) from exc
    tokenizer, extractor, model = parts
    if extractor.sampling_rate != MODEL_SAMPLE_RATE:
        raise ModelLoadError(
            f"model {config.name!r} expects {extractor.sampling_rate} Hz audio; "
            f"only {MODEL_SAMPLE_RATE} Hz models are supported"
        )
    model.eval().to(device)
    if device.startswith("cuda") and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        # cuDNN's attention builds a graph for every new (batch, length): 3 ms per layer
        # per new shape on an H200, which a streaming batch mix hits on most calls.
        # Flash / memory-efficient attention have no per-shape cost.
        torch.backends.cuda.enable_cudnn_sdp(False)
    if device.startswith("cuda") and config.cudnn == "off":
        # Process-wide: the model's process is the one that runs it (the server, or the
        # shared inference process).
        torch.backends.cudnn.enabled = False
        log.info("cuDNN off: convolutions use PyTorch's own CUDA kernels")
    vocab = CtcVocab.from_vocab(
        tokenizer.get_vocab(),
        blank=tokenizer.pad_token,
        delimiter=tokenizer.word_delimiter_token,
        specials=[t for t in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) if t],
        lowercase=config.lowercase,
    )
    cfg = model.config
    geometry = FrameGeometry(tuple(cfg.conv_kernel), tuple(cfg.conv_stride))
    parameters = sum(p.numel() for p in model.parameters())
    log.info(
        "loaded model %s: %.1f M parameters on %s/%s%s",
        config.name,
        parameters / 1e6,
        device,
        dtype,
        _auto_dtype_reason(config.dtype, device, dtype),
    )
    loaded = LoadedModel(
        config.name,
        model,
        vocab,
        geometry,
        device,
        dtype,
        bool(extractor.do_normalize),
        parameters,
        masks_padding=bool(getattr(extractor, "return_attention_mask", False))
        and cfg.feat_extract_norm == "layer",
        framewise_features=cfg.feat_extract_norm == "layer",
    )
    return loaded


def _load_parts(source: str, dtype: str, *, local_only: bool) -> tuple[Any, Any, Any]:
    """Tokenizer, feature extractor and model; ``local_only`` never touches the network."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(source, local_files_only=local_only)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=local_only)
    model = _load_weights(Wav2Vec2ForCTC, source, dtype, local_files_only=local_only)
    return tokenizer, extractor, model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine fails in seconds instead of minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True  # the proxy decides; let the real request try
    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_weights(cls: Any, source: str, dtype: str, **kwargs: Any) -> Any:
    """Prefer SDPA attention; fall back where the installed transformers lacks it.

    The dtype is always explicit: transformers 5 defaults to the stored one, and the
    bundled model stores fp16 weights (half the package) that must run as fp32 on a CPU.
    """
    kwargs["dtype" if _accepts_dtype_kwarg() else "torch_dtype"] = _torch_dtype(dtype)
    try:
        return cls.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError, TypeError):
        return cls.from_pretrained(source, **kwargs)


def _accepts_dtype_kwarg() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


_POINT_AT_LOCAL = (
    "pass its folder with --model /path/to/checkpoint (config.json, weights, vocab.json, "
    "preprocessor_config.json; e.g. made by `huggingface-cli download "
    "facebook/wav2vec2-base-960h --local-dir DIR` on a machine with network), or use the "
    "bundled offline model with --model tiny-en"
)


def _offline_hint(name: str) -> str:
    return (
        f"model {name!r} is not in the local Hugging Face cache and the Hugging Face Hub "
        f"cannot be reached (no network?); {_POINT_AT_LOCAL}"
    )


def _load_hint(name: str, exc: BaseException) -> str:
    where = "folder" if Path(name).exists() else "hub id"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"could not load the Wav2Vec2 CTC model {name!r} ({where}): {first_line}; {_POINT_AT_LOCAL}"
    )
