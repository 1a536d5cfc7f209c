#!/usr/bin/env bash
# Install what the tests need, start the virtual microphone, run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/virtual-mic.sh || echo "warning: virtual microphone unavailable; microphone test will report why"
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
