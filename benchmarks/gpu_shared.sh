#!/usr/bin/env bash
# GPU live load with the shared inference process (--shared-engine), in one command:
#   1. benchmarks.shape_cost: what a new (batch, length) shape costs, cuDNN on and off,
#      with a profile of one new shape (the 2026-11-30 H200 run found cuDNN attention and
#      cuDNN convolution plans built per shape; the server now turns cuDNN attention off
#      and pads batches to a few sizes on a GPU);
#      (since run 3 the server also warms every batch bucket up, normalises audio on the
#      GPU, cuts final windows to ~18 lengths and gives utterance-start windows the steady
#      length, --stream-context auto: this run measures them against run 3);
#   2. live load, C320/L960/R160 window (half the model audio of the default per stream);
#   3. live load, the default window.
# Each sweep grows the stream count until p95 commit latency passes BREAK_MS. Both go
# through benchmarks/gpu.sh (wheels from .whl/, see there); everything lands in RESULTS
# (default /tmp/gpu-shared), packed into $OUT/gpu-results.tgz when OUT is set (the device
# tool returns at most 8 files).
#
#   bash benchmarks/gpu_shared.sh                      # ~7 min on an H200
#   M=tiny-en DEV=cpu DT=fp32 W=2 SA=2 SB=2 bash benchmarks/gpu_shared.sh   # a CPU rehearsal
#
# Knobs: M (model, base-random), DEV (cuda), DT (fp16), W (workers, 8), MB (max batch, 256),
# SA / SB (stream counts of sweeps 2 / 3), ST (seconds per step, 200), BREAK_MS (3000),
# DEADLINE_MS (batch deadline, 10), SKIP_SHAPES=1 (no step 1).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
R=${RESULTS:-/tmp/gpu-shared}
rm -rf "$R" && mkdir -p "$R"
nvidia-smi -L 2>&1 | head -2
model=${M:-base-random}
if [ -z "${SKIP_SHAPES:-}" ]; then
  python3 -m benchmarks.shape_cost --model "$model" --device "${DEV:-cuda}" --dtype "${DT:-fp16}" \
    --shapes 16 --budget-s 20 --split 6 --profile 25 --results-dir "$R" 2>&1 |
    grep -v "it/s\|USDT" | tee "$R/shape_cost.log"
fi
common=(SKIP_THROUGHPUT=1 SKIP_SOAK=1 "STEP_TIMEOUT=${ST:-200}" "BREAK_MS=${BREAK_MS:-3000}"
        "WORKERS=${W:-8}" "MAX_BATCH=${MB:-256}" RAMP_S=5 "DEVICE=${DEV:-cuda}" "MODEL=$model"
        "LOAD_DTYPE=${DT:-fp16}")
shared="--shared-engine --max-engine-load 1 --batch-deadline-ms ${DEADLINE_MS:-10}"
env "${common[@]}" LOAD_STREAMS="${SA:-512,768,1024}" LOAD_TAG="shared-C320-L960-R160-$model" \
  SERVER_EXTRA="$shared --chunk-ms 320 --left-context-ms 960 --right-context-ms 160" \
  bash benchmarks/gpu.sh "$R"
env "${common[@]}" LOAD_STREAMS="${SB:-256,512,768}" LOAD_TAG="shared-$model" \
  SERVER_EXTRA="$shared" bash benchmarks/gpu.sh "$R"
gzip -f "$R"/*.log
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-results.tgz" -C "$R" .; fi
ls -la "$R"
