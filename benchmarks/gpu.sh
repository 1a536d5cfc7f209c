#!/usr/bin/env bash
# GPU benchmarks in one command, on a machine that has torch + transformers (and a CUDA GPU)
# but reaches no package registry.
#
# 1. On a machine WITH PyPI access (this repository's root), fetch the other dependencies as
#    wheels into .whl/ (git-ignored), for the GPU machine's Python version(s):
#        bash benchmarks/gpu.sh --download-wheels            # Python 3.10 3.11 3.12 3.13
#        GPU_PYTHONS="3.12" bash benchmarks/gpu.sh --download-wheels
#    Optional: synthesize the held-out test set here too (the GPU box has no TTS engines),
#    so live load streams held-out sentences instead of the two committed sample files:
#        python -c "from benchmarks import testset; testset.session_files(8, 3)"
#    and bring benchmarks/out/testset/ along with the repository and .whl/.
#
# 2. On the GPU machine, from the repository root:
#        bash benchmarks/gpu.sh [RESULTS_DIR]
#    It installs the wheels from .whl/ (offline; torch, transformers and numpy are left
#    as they are), then writes every result (JSON, PNG when matplotlib is in the wheels,
#    server logs, nvidia-smi, pip freeze) into RESULTS_DIR (default: $OUT when set, else
#    benchmarks/results/gpu-<gpu name>). With the defaults about 8 minutes (estimate);
#    the reduced sweep of benchmarks/README.md#gpu took 4.5 minutes on an H200.
#
# Knobs (environment): LOAD_STREAMS (default 1,64,256,512,768,1024,1280), WORKERS (8 server
# processes), MAX_BATCH (64), RAMP_S (5), SERVER_EXTRA, STEP_TIMEOUT (900 s), SOAK_STREAMS (200),
# SOAK_MINUTES (2), DTYPES (fp16,bf16,fp32), BATCHES, WINDOWS, TINY_DTYPES, TINY_BATCHES,
# LOAD_DTYPE (fp16), MODEL (base-random), DEVICE (cuda), SKIP_SOAK=1, SKIP_THROUGHPUT=1,
# BREAK_MS (5000: stop the live-load sweep once p95 commit latency passes it), LOAD_TAG
# (names the live-load result files; default MODEL-LOAD_DTYPE). For the shared inference
# process add "--shared-engine" to SERVER_EXTRA.
set -uo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(websockets webrtcvad-wheels soxr soundfile cffi pycparser prometheus-client psutil
          matplotlib)
# The GPU image names its interpreter python3 (there may be no plain "python").
PY=${PYTHON:-$(command -v python3 || command -v python)}

if [ "${1:-}" = "--download-wheels" ]; then
  set -e
  mkdir -p .whl
  for py in ${GPU_PYTHONS:-3.10 3.11 3.12 3.13}; do
    echo "== wheels for CPython $py (manylinux x86_64)"
    "$PY" -m pip download -q -d .whl --only-binary=:all: --implementation cp \
      --python-version "$py" --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      "${PACKAGES[@]}" "numpy>=1.24"
  done
  du -sh .whl
  exit 0
fi

RESULTS="${1:-${OUT:-}}"
if [ -z "$RESULTS" ]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 |
        tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-$//')
  RESULTS="benchmarks/results/gpu-${gpu:-unknown}"
fi
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
LOG="$RESULTS/gpu-run.log"
exec > >(tee -a "$LOG") 2>&1
echo "== results go to $RESULTS"

echo "== installing dependencies from .whl/ (offline)"
if [ -d .whl ]; then
  # numpy/torch/transformers are preinstalled: never let pip replace them.
  "$PY" -m pip install -q --no-index --find-links .whl "${PACKAGES[@]}" ||
    echo "warning: some wheels did not install; continuing with what is there"
  if ! "$PY" -c "import websockets, webrtcvad, soxr, soundfile" 2>/dev/null; then
    echo "== retrying: the wheels alone, into /tmp/site (no dependency resolution)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
      .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
else
  echo "warning: no .whl/ folder (run 'bash benchmarks/gpu.sh --download-wheels' where PyPI is reachable)"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || true
"$PY" -m pip freeze > "$RESULTS/pip-freeze.txt" 2>/dev/null || true
"$PY" - <<'EOF' > "$RESULTS/versions.txt" 2>&1 || true
import torch, transformers, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "transformers", transformers.__version__,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
cat "$RESULTS/versions.txt"

failed=()
step() {  # step NAME COMMAND...: run (at most STEP_TIMEOUT s), remember failures, go on
  local name=$1; shift
  echo; echo "== $name: $*"
  local began=$SECONDS
  if ! timeout "${STEP_TIMEOUT:-900}" "$@"; then failed+=("$name"); echo "!! $name failed"; fi
  echo "== $name took $((SECONDS - began)) s"
}

dtypes=${DTYPES:-fp16,bf16,fp32}
device=${DEVICE:-cuda}
model=${MODEL:-base-random}
if [ -z "${SKIP_THROUGHPUT:-}" ]; then
step throughput-base "$PY" -m benchmarks.engine_throughput --model "$model" --device "$device" \
  --dtype "$dtypes" --batches "${BATCHES:-1,2,4,8,16,32,64,128}" \
  --windows "${WINDOWS:-800,1760,2880}" --tag "$model" --results-dir "$RESULTS"
step throughput-tiny-en "$PY" -m benchmarks.engine_throughput --model tiny-en --device "$device" \
  --dtype "${TINY_DTYPES:-fp16,fp32}" --batches "${TINY_BATCHES:-1,4,16,64}" --windows 1760 \
  --tag tiny-en --results-dir "$RESULTS"
fi
load_tag=${LOAD_TAG:-$model-${LOAD_DTYPE:-fp16}}
step "live-load-$load_tag" "$PY" -m benchmarks.live_load --model "$model" --device "$device" \
  --dtype "${LOAD_DTYPE:-fp16}" --streams "${LOAD_STREAMS:-1,64,256,512,768,1024,1280}" --break-ms "${BREAK_MS:-5000}" \
  --client-procs auto --ramp-s "${RAMP_S:-5}" \
  --server-args "--max-batch ${MAX_BATCH:-64} --workers ${WORKERS:-8} --threads 2 ${SERVER_EXTRA:-}" \
  --tag "$load_tag" --results-dir "$RESULTS"
cp benchmarks/out/live_load-server.log "$RESULTS/live_load-server-$load_tag.log" 2>/dev/null || true
if [ -z "${SKIP_SOAK:-}" ]; then
  step soak-base "$PY" -m benchmarks.soak --model "$model" \
    --server-args "--device $device --dtype ${LOAD_DTYPE:-fp16} --max-batch ${MAX_BATCH:-64}" \
    --streams "${SOAK_STREAMS:-200}" --minutes "${SOAK_MINUTES:-2}" \
    --tag base-random-gpu --results-dir "$RESULTS"
  cp benchmarks/out/soak-server.log "$RESULTS/" 2>/dev/null || true
fi

echo
echo "== done; results in $RESULTS:"
ls -1 "$RESULTS"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "!! failed steps: ${failed[*]}"
  exit 1
fi
