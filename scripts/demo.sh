#!/usr/bin/env bash
# Install, then run the demo: a server with the bundled offline model, a bundled speech
# sample streamed at real-time pace, live captions and a latency summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streaming.demo "$@"
