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
#        python -c "from benchmarks import common; common.session_files(8, 3)"
#    and bring benchmarks/out/testset/ along with the repository and .whl/.
#
# 2. On the GPU machine, from the repository root:
#        bash benchmarks/gpu.sh [RESULTS_DIR]
#    It installs the wheels from .whl/ (offline; torch, transformers and numpy are left
#    as they are), then writes every result (JSON, PNG when matplotlib is in the wheels,
#    server logs, nvidia-smi, pip freeze) into RESULTS_DIR (default: $OUT when set, else
#    benchmarks/results/gpu-<gpu name>). About 8 minutes on one H100.
#
# Knobs (environment): LOAD_STREAMS (default 1,4,8,16,32,64,128,192), SOAK_STREAMS (200),
# SOAK_MINUTES (2), DTYPES (fp16,bf16,fp32), SKIP_SOAK=1.
set -uo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(websockets webrtcvad-wheels soxr soundfile prometheus-client psutil matplotlib)

if [ "${1:-}" = "--download-wheels" ]; then
  set -e
  mkdir -p .whl
  for py in ${GPU_PYTHONS:-3.10 3.11 3.12 3.13}; do
    echo "== wheels for CPython $py (manylinux x86_64)"
    python -m pip download -q -d .whl --only-binary=:all: --implementation cp \
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
  python -m pip install -q --no-index --find-links .whl "${PACKAGES[@]}" ||
    echo "warning: some wheels did not install; continuing with what is there"
else
  echo "warning: no .whl/ folder (run 'bash benchmarks/gpu.sh --download-wheels' where PyPI is reachable)"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || true
python -m pip freeze > "$RESULTS/pip-freeze.txt" 2>/dev/null || true
python - <<'EOF' > "$RESULTS/versions.txt" 2>&1 || true
import torch, transformers, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "transformers", transformers.__version__,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
cat "$RESULTS/versions.txt"

failed=()
step() {  # step NAME COMMAND...: run, remember failures, go on
  local name=$1; shift
  echo; echo "== $name: $*"
  local began=$SECONDS
  if ! "$@"; then failed+=("$name"); echo "!! $name failed"; fi
  echo "== $name took $((SECONDS - began)) s"
}

dtypes=${DTYPES:-fp16,bf16,fp32}
step throughput-base python -m benchmarks.engine_throughput --model base-random --device cuda \
  --dtype "$dtypes" --batches 1,2,4,8,16,32,64,128 --windows 800,1760,2880 \
  --tag base-random --results-dir "$RESULTS"
step throughput-tiny-en python -m benchmarks.engine_throughput --model tiny-en --device cuda \
  --dtype fp16,fp32 --batches 1,4,16,64 --windows 1760 --tag tiny-en --results-dir "$RESULTS"
step live-load-base python -m benchmarks.live_load --model base-random --device cuda \
  --dtype fp16 --streams "${LOAD_STREAMS:-1,4,8,16,32,64,128,192}" --break-ms 5000 \
  --server-args "--max-batch 64" --tag base-random-fp16 --results-dir "$RESULTS"
cp benchmarks/out/live_load-server.log "$RESULTS/" 2>/dev/null || true
if [ -z "${SKIP_SOAK:-}" ]; then
  step soak-base python -m benchmarks.soak --model base-random \
    --server-args "--device cuda --dtype fp16 --max-batch 64" \
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
