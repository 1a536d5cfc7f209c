#!/usr/bin/env bash
# Install what the tests need, start the virtual microphone, run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The optional LM decoder (extra "lm"), so its tests run rather than skip: kenlm compiles
# from source (~1 min). pyctcdecode 0.5 declares numpy<2 but runs on numpy 2, which the
# rest of the suite (and mypy's numpy stubs) use, so it goes in without its pins.
.venv/bin/python -m pip install -q kenlm pygtrie
.venv/bin/python -m pip install -q --no-deps pyctcdecode
# The Triton tier (extra "triton-server"), so tests/test_triton.py starts a real Triton on the
# CPU: ~100 MB of wheels, ~15 s. PyTriton declares numpy<2; the launcher gives Triton's stub
# its own numpy 1 (streaming/triton_server.py), so PyTriton goes in without its pins.
.venv/bin/python -m pip install -q "tritonclient[grpc,http]" protobuf pyzmq sh wrapt \
  typing_inspect typer importlib_metadata
.venv/bin/python -m pip install -q --no-deps nvidia-pytriton
bash scripts/virtual-mic.sh || echo "warning: virtual microphone unavailable; microphone test will report why"
.venv/bin/ruff check .
# Import contracts of pyproject.toml [tool.importlinter]: layers, independence, no cycles.
.venv/bin/lint-imports --no-cache
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
