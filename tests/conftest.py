"""Shared fixtures: a real (tiny, random) checkpoint on disk and a real server on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streaming.config import ModelConfig, ServerConfig
from streaming.model import LoadedModel, load_model
from streaming.random_model import make_random_model
from streaming.server import Server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random Wav2Vec2ForCTC saved with save_pretrained: output is not words."""
    return make_random_model(tmp_path_factory.mktemp("models") / "tiny-random")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(name=str(tiny_model_dir)), threads=1)


def server_config(model_dir: Path, **changes: object) -> ServerConfig:
    base = ServerConfig(host="127.0.0.1", port=0, model=ModelConfig(name=str(model_dir)))
    return base.replace(**changes)


@pytest.fixture
async def server(tiny_model_dir: Path, tiny_model: LoadedModel) -> AsyncIterator[Server]:
    async with Server(server_config(tiny_model_dir), model=tiny_model) as running:
        yield running
