#!/usr/bin/env bash
# Run a command with the background model training paused (SIGSTOP), and always resume it
# (SIGCONT) afterwards, even when the command fails or is interrupted.
#   bash benchmarks/paused.sh python -m benchmarks.live_load
# The pattern uses [.] so that it never matches this script's own command line.
set -u
pattern='python -m training[.]train'
resume() { pkill -CONT -f "$pattern" || true; }
trap resume EXIT INT TERM
pkill -STOP -f "$pattern" || echo "[paused.sh] no background training found" >&2
"$@"
