#!/usr/bin/env bash
# Live load on a GPU with the shared inference process (--shared-engine), in one command:
# first benchmarks.shape_cost picks cuDNN on or off (what a new batch shape costs), then
# live load with the default window and with the C320/L960/R160 window (half the model
# audio per stream), each swept over growing stream counts until p95 commit latency
# passes BREAK_MS.
# Both runs go through benchmarks/gpu.sh (wheels from .whl/, see there); everything lands in
# RESULTS (default /tmp/gpu-shared), packed into $OUT/gpu-results.tgz when OUT is set (the
# device tool returns at most 8 files).
#
#   bash benchmarks/gpu_shared.sh                      # ~6 min on an H200
#   M=tiny-en DEV=cpu DT=fp32 W=2 SA=2 SB=2 bash benchmarks/gpu_shared.sh   # a CPU rehearsal
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
R=${RESULTS:-/tmp/gpu-shared}
rm -rf "$R" && mkdir -p "$R"
nvidia-smi -L 2>&1 | head -2
model=${M:-base-random}
common=(SKIP_THROUGHPUT=1 SKIP_SOAK=1 "STEP_TIMEOUT=${ST:-200}" "BREAK_MS=${BREAK_MS:-3000}"
        "WORKERS=${W:-8}" "MAX_BATCH=${MB:-256}" RAMP_S=5 "DEVICE=${DEV:-cuda}" "MODEL=$model"
        "LOAD_DTYPE=${DT:-fp16}")
python3 -m benchmarks.shape_cost --model "$model" --device "${DEV:-cuda}" --dtype "${DT:-fp16}" \
  --results-dir "$R" 2>&1 | grep -v "it/s"
cudnn=$(python3 -c "import glob, json; print(json.load(open(glob.glob('$R/shape_cost-*.json')[0]))['recommended'])" 2>/dev/null || echo off)
echo "== live load with --cudnn $cudnn"
shared="--shared-engine --max-engine-load 1 --batch-deadline-ms ${DEADLINE_MS:-10} --cudnn $cudnn"
env "${common[@]}" LOAD_STREAMS="${SA:-256,512,1024}" LOAD_TAG="shared-$model" \
  SERVER_EXTRA="$shared" bash benchmarks/gpu.sh "$R"
env "${common[@]}" LOAD_STREAMS="${SB:-1024,1536}" LOAD_TAG="shared-C320-L960-R160-$model" \
  SERVER_EXTRA="$shared --chunk-ms 320 --left-context-ms 960 --right-context-ms 160" \
  bash benchmarks/gpu.sh "$R"
gzip -f "$R"/*.log
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-results.tgz" -C "$R" .; fi
ls -la "$R"
